"""Model files (fastlog.nn.io): JSON param_0.. format read by plain NumPy, npz, bit-exact round trips,
hostile files, the 3-vs-7 perceptron format, checkpoints and their weight evolution."""
import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

from fastlog.data import mnist_train_test
from fastlog.nn import MLP, LogisticRegression
from fastlog.nn import load_logreg, load_mlp
from fastlog.nn.io import _float_strings, checkpoint_files, save_logreg, weight_evolution


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _consumer(params, x):
    """The plain NumPy consumer of the JSON format (the module docstring's), verbatim (x: a flattened 28x28 image in [0, 1])."""
    softmax = _softmax
    z1 = params['param_0'] @ x + params['param_1']; a1 = np.maximum(0, z1)  # noqa: E702
    z2 = params['param_2'] @ a1 + params['param_3']; a2 = np.maximum(0, z2)  # noqa: E702
    z3 = params['param_4'] @ a2 + params['param_5']; digit = np.argmax(softmax(z3))  # noqa: E702
    return digit, z3


@pytest.fixture(scope="module")
def digits():
    return mnist_train_test()


@pytest.fixture(scope="module")
def trained(digits):
    Xtr, Xte, ytr, yte = digits
    model = MLP(seed=0)
    model.fit(Xtr, ytr, epochs=2, progress=False)
    return model


# ------------------------------------------------------------------- JSON --
def test_plain_numpy_consumer_reads_the_json_file(trained, digits, tmp_path):
    _, Xte, _, yte = digits
    path = tmp_path / "relu_model_final.json"
    trained.save(path)
    with open(path) as f:
        params = json.load(f)          # what a program without fastlog does
    assert sorted(params) == [f"param_{i}" for i in range(6)]
    assert np.shape(params["param_0"]) == (128, 784) and np.shape(params["param_5"]) == (10,)
    logits = trained.forward(Xte[:300])
    pred = trained.predict(Xte[:300])
    digits = []
    for i in range(300):
        digit, z3 = _consumer(params, Xte[i].astype(np.float64))
        np.testing.assert_allclose(z3, logits[i], rtol=1e-4, atol=1e-4)
        if np.sort(logits[i])[-1] - np.sort(logits[i])[-2] > 1e-3:   # no near-tie
            assert digit == pred[i]
        digits.append(digit)
    assert np.mean(np.array(digits) == yte[:300]) >= 0.85


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", [(784, 128, 64, 10), (5, 3), (7, 9, 2, 8, 3)])
def test_round_trip_is_bit_exact(tmp_path, dtype, sizes):
    model = MLP(sizes, dtype=dtype, seed=2)
    rng = np.random.default_rng(0)
    for p in model.parameters():   # awkward values: tiny, huge, negative zero, subnormal
        p[...] = rng.standard_normal(p.shape) * 10.0 ** rng.integers(-30, 30, p.shape)
    model.biases[0][0] = -0.0
    model.weights[0][0, 0] = np.finfo(dtype).smallest_subnormal
    model.weights[0].flat[-1] = np.finfo(dtype).max
    for suffix in (".json", ".npz"):
        model.save(tmp_path / f"m{suffix}")
        back = MLP.load(tmp_path / f"m{suffix}", dtype=dtype)
        assert back.sizes == tuple(sizes) and back.dtype == dtype
        for p, q in zip(model.parameters(), back.parameters()):
            assert p.tobytes() == q.tobytes()


def test_float32_strings_round_trip_through_a_double_for_any_bit_pattern():
    """The JSON reader's path is decimal -> double -> float32; check it on random bit patterns of
    every exponent (the oracle is the bit pattern itself)."""
    bits = np.random.default_rng(5).integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32)
    a = bits.view(np.float32)
    a = a[np.isfinite(a)]
    back = np.array([float(s) for s in _float_strings(a)], np.float64).astype(np.float32)
    np.testing.assert_array_equal(back.view(np.uint32), a.view(np.uint32))
    assert max(len(s) for s in _float_strings(a[:1000])) <= 16   # the short form, not 17 digits


def test_json_defaults_to_float32_and_suffix_chooses_the_format(tmp_path):
    model = MLP((4, 3, 2), dtype=np.float64, seed=0)
    model.save(tmp_path / "a.JSON")
    model.save(tmp_path / "a.bin")
    assert MLP.load(tmp_path / "a.JSON").dtype == np.float32
    assert MLP.load(tmp_path / "a.bin").dtype == np.float64     # npz by default
    assert zipfile.is_zipfile(tmp_path / "a.bin")
    model.save(tmp_path / "b.dat", format="json")
    json.loads((tmp_path / "b.dat").read_text())
    buf = io.BytesIO()
    model.save(buf, format="json")
    buf.seek(0)
    np.testing.assert_array_equal(MLP.load(buf, format="json", dtype=np.float64).weights[1], model.weights[1])


def test_saving_non_finite_parameters_is_refused(tmp_path):
    model = MLP((4, 3, 2))
    model.weights[1][0, 0] = np.nan
    for name in ("m.json", "m.npz"):
        with pytest.raises(ValueError, match="NaN"):
            model.save(tmp_path / name)
        assert not (tmp_path / name).exists()


def _write(tmp_path, obj, raw=None):
    path = tmp_path / "bad.json"
    path.write_text(raw if raw is not None else json.dumps(obj))
    return path


def _good():
    m = MLP((3, 2, 2), seed=0)
    return {f"param_{i}": p.tolist() for i, p in enumerate(m.parameters())}


@pytest.mark.parametrize("mutate, exc, match", [
    (lambda d: d.pop("param_3"), ValueError, "3 parameters|param_3"),
    (lambda d: d.pop("param_1"), ValueError, "param_1 is missing"),
    (lambda d: d.update(extra=[1.0]), ValueError, "unexpected key 'extra'"),
    (lambda d: d.update(param_01=[1.0]), ValueError, "unexpected key 'param_01'"),
    (lambda d: d["param_0"][1].append(0.5), ValueError, "ragged"),
    (lambda d: d["param_0"][0].__setitem__(1, "0.5"), TypeError, r"param_0\[0\]\[1\] is str"),
    (lambda d: d["param_0"][0].__setitem__(1, True), TypeError, r"param_0\[0\]\[1\] is bool"),
    (lambda d: d["param_1"].__setitem__(0, None), TypeError, r"param_1\[0\] is NoneType"),
    (lambda d: d["param_0"][0].__setitem__(0, [1.0]), TypeError, r"param_0\[0\]\[0\] is list"),
    (lambda d: d.update(param_1=[[0.0, 0.0]]), TypeError, r"param_1\[0\] is list"),
    (lambda d: d.update(param_0=5.0), TypeError, "param_0 must be a nested list"),
    (lambda d: d.update(param_0=[]), ValueError, "param_0 has no rows"),
    (lambda d: d.update(param_0=[[]] * 2), ValueError, "width >= 1|previous layer"),
    (lambda d: d.update(param_2=[[1.0, 2.0, 3.0]] * 2), ValueError, "param_2 has shape"),
    (lambda d: d.update(param_3=[1.0]), ValueError, "param_3 has 1 values"),
    (lambda d: d["param_2"][0].__setitem__(0, 10 ** 400), ValueError, "too large"),
], ids=["odd-count", "missing", "extra-key", "leading-zero", "ragged", "string", "bool", "null", "too-deep",
        "bias-2d", "scalar", "empty", "zero-width", "shape-chain", "bias-length", "huge-int"])
def test_hostile_json_files_raise_naming_the_key(tmp_path, mutate, exc, match):
    d = _good()
    mutate(d)
    with pytest.raises(exc, match=match):
        MLP.load(_write(tmp_path, d))


@pytest.mark.parametrize("raw, match", [
    ('{"param_0": [[NaN, 1.0, 2.0], [1, 2, 3]], "param_1": [0, 0]}', "non-finite number 'NaN'"),
    ('{"param_0": [[Infinity, 1.0, 2.0], [1, 2, 3]], "param_1": [0, 0]}', "non-finite"),
    ('{"param_0": [[1e400, 1.0, 2.0], [1, 2, 3]], "param_1": [0, 0]}', r"param_0\[0, 0\]|param_0\[0\]"),
    ('{"param_0": [[1e39, 1.0, 2.0], [1, 2, 3]], "param_1": [0, 0]}', "out of float32 range"),
    ('{"param_0": [[1, 2, 3]], "param_0": [[1, 2, 3]], "param_1": [0]}', "appears twice"),
    ('[1, 2, 3]', "JSON object"),
    ('{"param_0": [[1, 2, 3]], ', "not a valid model file"),
    ('[' * 100000 + ']' * 100000, "nested too deeply|not a valid"),
    ('\xff\xfe garbage', "not a valid model file|not UTF-8"),
])
def test_malformed_json_files_raise_value_error(tmp_path, raw, match):
    with pytest.raises(ValueError, match=match):
        MLP.load(_write(tmp_path, None, raw))


# -------------------------------------------------------------------- npz --
def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def _good_npz():
    m = MLP((3, 2, 2), seed=0)
    d = m.state_dict()
    d["__sizes__"] = np.array(m.sizes)
    d["__format__"] = np.array([1])
    return d


def test_npz_naming_huge_sizes_fails_before_allocating(tmp_path):
    """A 1.6 KB file naming huge layer sizes made MLP.load allocate 1.2 GB."""
    d = _good_npz()
    d["__sizes__"] = np.array([3, 100_000, 100_000, 2])
    path = _npz(tmp_path, **d)
    assert os.path.getsize(path) < 3000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="__sizes__"):
            MLP.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5e6


def test_npz_header_claiming_a_huge_array_fails_before_reading(tmp_path):
    d = _good_npz()
    path = _npz(tmp_path, **d)
    with zipfile.ZipFile(path) as zf:   # rewrite 0.weight's header: shape (100000, 100000)
        members = {n: zf.read(n) for n in zf.namelist()}
    fake = io.BytesIO()   # a valid header for a (100000, 100000) float32 array, followed by 24 bytes
    np.lib.format.write_array_header_1_0(fake, {"descr": "<f4", "fortran_order": False,
                                                "shape": (100_000, 100_000)})
    members["0.weight.npy"] = fake.getvalue() + bytes(24)
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"0.weight declares shape \(100000, 100000\)"):
            MLP.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5e6


@pytest.mark.parametrize("change, exc, match", [
    (lambda d: d.update(__sizes__=np.array([3.0, 2.5, 2.0])), TypeError, "__sizes__ must hold integers"),
    (lambda d: d.update(__sizes__=np.array([3, 2, 2, 2])), ValueError, "missing"),
    (lambda d: d.update(__sizes__=np.array([3, 0, 2])), ValueError, "width < 1"),
    (lambda d: d.update(__format__=np.array([2])), ValueError, "format"),
    (lambda d: d.pop("__sizes__"), ValueError, "not a fastlog MLP file"),
    (lambda d: d.update({"2.weight": np.zeros((2, 3), np.float32)}), ValueError, "2.weight has shape"),
    (lambda d: d.update({"0.bias": np.zeros(2, np.int64)}), TypeError, "0.bias must be float32"),
    (lambda d: d.update({"0.bias": np.array(["a", "b"])}), TypeError, "0.bias must be float32"),
    (lambda d: d.update({"4.weight": np.zeros((2, 2))}), ValueError, "unexpected"),
    (lambda d: d["0.weight"].__setitem__((1, 2), np.nan), ValueError, r"0.weight\[1, 2\] is NaN"),
    (lambda d: d["2.bias"].__setitem__(0, -np.inf), ValueError, r"2.bias\[0\] is NaN or infinity"),
], ids=["float-sizes", "sizes-mismatch", "zero-width", "format", "no-sizes", "shape", "int-weights",
        "strings", "extra-key", "nan", "inf"])
def test_hostile_npz_files_raise_naming_the_key(tmp_path, change, exc, match):
    d = _good_npz()
    change(d)
    with pytest.raises(exc, match=match):
        MLP.load(_npz(tmp_path, **d))


def test_npz_with_pickled_objects_is_refused(tmp_path):
    d = _good_npz()
    d["0.bias"] = np.array([{"a": 1}, None], dtype=object)
    path = tmp_path / "obj.npz"
    np.savez(path, **d)            # np.savez pickles object arrays
    with pytest.raises(TypeError, match="Python objects"):
        MLP.load(path)
    (tmp_path / "notzip.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="not an npz archive"):
        MLP.load(tmp_path / "notzip.npz")


def test_loaded_nan_cannot_reach_predict(tmp_path):
    """NaN weights made predict return -1; they are now refused at load time, and a NaN
    written into a model's parameters by hand gives an error instead of -1."""
    model = MLP((4, 3, 2))
    model.weights[0][0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="parameters hold NaN"):
        model.predict(np.ones((2, 4)))


# ------------------------------------------------------ 3-vs-7 classifier --
def test_perceptron_file_consumer_rule_gives_the_model_predictions(digits, tmp_path):
    Xtr, Xte, ytr, yte = digits
    keep_tr, keep_te = np.isin(ytr, (3, 7)), np.isin(yte, (3, 7))
    Xb, yb = Xtr[keep_tr], (ytr[keep_tr] == 7).astype(np.int64)
    model = LogisticRegression(784, init="zeros")
    model.fit(Xb, yb, epochs=3, lr=0.1, progress=False)
    _, acc = model.evaluate(Xte[keep_te], (yte[keep_te] == 7).astype(np.int64))
    path = tmp_path / "perceptron.json"
    model.save(path, final_accuracy=acc, training_samples=len(yb), learning_rate=0.1)
    with open(path) as f:
        d = json.load(f)
    assert set(d) == {"weights", "bias", "final_accuracy", "training_samples", "data_type", "learning_rate"}
    assert np.shape(d["weights"]) == (28, 28)
    assert d["final_accuracy"] == pytest.approx(100 * acc) and d["training_samples"] == len(yb)
    assert d["learning_rate"] == 0.1 and d["data_type"] == "real_mnist"
    weights, bias = np.array(d["weights"]), d["bias"]
    images = Xte[keep_te].astype(np.float64).reshape(-1, 28, 28)
    rule = np.array([7 if np.sum(weights * x) + bias > 0 else 3 for x in images])
    np.testing.assert_array_equal(rule, np.where(model.predict(Xte[keep_te]) == 1, 7, 3))
    assert np.mean(rule == yte[keep_te]) >= 0.95
    back = LogisticRegression.load(path)
    assert back.weight.tobytes() == model.weight.tobytes() and back.bias.tobytes() == model.bias.tobytes()
    assert back.info["training_samples"] == len(yb)


@pytest.mark.parametrize("mutate, exc, match", [
    (lambda d: d.pop("bias"), ValueError, "missing"),
    (lambda d: d.update(owner="x"), ValueError, "unexpected"),
    (lambda d: d.update(bias="0.1"), TypeError, "bias must be a number"),
    (lambda d: d.update(training_samples=1.5), TypeError, "training_samples"),
    (lambda d: d["weights"][3].pop(), ValueError, "ragged"),
    (lambda d: d["weights"][0].__setitem__(0, False), TypeError, "bool"),
])
def test_hostile_perceptron_files(tmp_path, mutate, exc, match):
    d = {"weights": np.zeros((28, 28)).tolist(), "bias": 0.0, "final_accuracy": 99.0, "training_samples": 10,
         "data_type": "real_mnist", "learning_rate": 0.1}
    mutate(d)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    with pytest.raises(exc, match=match):
        load_logreg(path)


def test_save_logreg_checks_its_arguments(tmp_path):
    model = LogisticRegression(784)
    with pytest.raises(ValueError, match="percent"):
        save_logreg(model, tmp_path / "p.json", final_accuracy=99.0, training_samples=1, learning_rate=0.1)
    with pytest.raises(ValueError, match="image_shape"):
        save_logreg(model, tmp_path / "p.json", final_accuracy=0.9, training_samples=1, learning_rate=0.1,
                    image_shape=(27, 28))


# ------------------------------------------------------------ checkpoints --
@pytest.mark.parametrize("fmt", ["json", "npz"])
def test_fit_writes_checkpoints_and_weight_evolution_reads_them(tmp_path, fmt):
    rng = np.random.default_rng(0)
    X = rng.random((256, 12)).astype(np.float32)
    y = (X[:, :6].sum(1) > X[:, 6:].sum(1)).astype(np.int64)
    model = MLP((12, 8, 6, 2), seed=0)
    snapshots = []

    class Spy:   # the progress line is printed after each epoch's checkpoint: capture the weights there
        def write(self, s):
            if s.startswith("epoch"):
                snapshots.append([p.copy() for p in model.parameters()])

        def flush(self):
            pass

    model.fit(X, y, epochs=3, batch_size=32, progress="plain", file=Spy(), checkpoint_dir=tmp_path / "ck",
              checkpoint_format=fmt)
    names = sorted(os.listdir(tmp_path / "ck"))
    assert names == sorted([f"relu_model_epoch_{e}.{fmt}" for e in (1, 2, 3)] + [f"relu_model_final.{fmt}"])
    for e in (1, 2, 3):
        m = MLP.load(tmp_path / "ck" / f"relu_model_epoch_{e}.{fmt}")
        for p, q in zip(m.parameters(), snapshots[e - 1]):
            np.testing.assert_array_equal(p, q)
    final = MLP.load(tmp_path / "ck" / f"relu_model_final.{fmt}")
    for p, q in zip(final.parameters(), model.parameters()):
        np.testing.assert_array_equal(p, q)
    evo = weight_evolution(tmp_path / "ck")
    assert evo.epochs == [1, 2, 3] and len(evo.names) == 6
    for e in (1, 2):   # an independent float64 computation of the change norms
        for j in range(6):
            d = snapshots[e][j].astype(np.float64) - snapshots[e - 1][j]
            assert evo.changes[e, j] == pytest.approx(np.linalg.norm(d), rel=1e-12)
            assert evo.relative[e, j] == pytest.approx(np.linalg.norm(d) / np.linalg.norm(
                snapshots[e - 1][j].astype(np.float64)), rel=1e-12)
    assert np.isnan(evo.changes[0]).all()
    assert "layer3.bias" in str(evo)
    assert [e for e, _ in checkpoint_files(tmp_path / "ck")] == [1, 2, 3]
    same = weight_evolution([p for _, p in checkpoint_files(tmp_path / "ck")])
    np.testing.assert_array_equal(same.norms, evo.norms)


def test_checkpoint_arguments_are_checked(tmp_path):
    model = MLP((4, 3, 2))
    x, y = np.ones((4, 4)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="checkpoint_format"):
        model.fit(x, y, epochs=1, progress=False, checkpoint_dir=tmp_path, checkpoint_format="pkl")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        model.fit(x, y, epochs=1, progress=False, checkpoint_dir=tmp_path / "file")
    with pytest.raises(ValueError, match="no relu_model_epoch"):
        weight_evolution(tmp_path)
    with pytest.raises(ValueError, match="other layer sizes"):
        MLP((4, 3, 2)).save(tmp_path / "a.json")
        MLP((4, 5, 2)).save(tmp_path / "b.json")
        weight_evolution([tmp_path / "a.json", tmp_path / "b.json"])
    assert load_mlp(tmp_path / "a.json").sizes == (4, 3, 2)


# ------------------------------------------------------------------ fuzz --
def test_random_json_never_crashes_the_loader(tmp_path):
    """Any JSON value: a model, a ValueError or a TypeError, never anything else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3))
    values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=3), max_leaves=20)
    keys = st.sampled_from(["param_0", "param_1", "param_2", "param_3", "param_4", "x"])
    files = st.one_of(values, st.dictionaries(keys, values, max_size=5))

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(files)
    def check(obj):
        try:
            model = load_mlp(io.BytesIO(json.dumps(obj).encode()), format="json")
        except (ValueError, TypeError):
            return
        assert np.isfinite(np.concatenate([p.ravel() for p in model.parameters()])).all()

    check()
