"""Model files: the MLP as npz or JSON, the 3-vs-7 classifier as JSON, checkpoint summaries.

Formats
-------
MLP, JSON (``.json``)
    ``{"param_0": [[...], ...], "param_1": [...], "param_2": ..., ...}``: for
    each Linear layer in order its weight, shaped (out_features, in_features)
    as in ``torch.nn.Linear``, then its bias, as nested lists of numbers.
    The layer sizes follow from the shapes (any sizes).  A plain NumPy
    program reads it without fastlog (``x``: a flattened 28x28 image in
    [0, 1])::

        params = json.load(open("relu_model_final.json"))
        z1 = params['param_0'] @ x + params['param_1']; a1 = np.maximum(0, z1)
        z2 = params['param_2'] @ a1 + params['param_3']; a2 = np.maximum(0, z2)
        z3 = params['param_4'] @ a2 + params['param_5']; digit = np.argmax(softmax(z3))

    float32 values are written as the shortest decimal that reads back (as a
    double, then rounded to float32) to the same float32, float64 values as
    Python's ``repr``: loading gives the parameters back bit for bit.  The
    file holds no dtype: :func:`load_mlp` gives float32 unless asked.
MLP, npz (any other suffix)
    ``np.savez`` of the state_dict arrays ("0.weight", "0.bias", "2.weight",
    ...) plus ``__sizes__`` (int64 layer widths) and ``__format__`` ([1]).
3-vs-7 classifier, JSON (:func:`save_logreg`)
    ``weights`` (28 x 28 nested list: pixel (r, c) of the image), ``bias``,
    ``final_accuracy`` (percent), ``training_samples``, ``data_type``,
    ``learning_rate``.  The prediction rule is
    ``7 if sum(weights * x) + bias > 0 else 3`` with x the 28 x 28 image in [0, 1].

Loading is for untrusted files: no pickle (``np.load(allow_pickle=False)``),
no eval; keys, types, shapes and values (finite numbers only: NaN and
infinity are rejected) are checked before anything the size of the model is
allocated, and every error is a ValueError or TypeError naming the key.
"""
import json
import math
import os
import zipfile
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._validation import float_param, int_param, positive_int
from .._typing import DTypeLike

__all__ = ["save_mlp", "read_mlp_params", "mlp_to_json", "save_logreg", "read_logreg_params",
           "weight_evolution", "WeightEvolution", "checkpoint_files"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_LAYERS = 64


# ------------------------------------------------------------ format choice --
def _format(path, format):
    if format is not None:
        if format not in ("json", "npz"):
            raise ValueError(f"format must be 'json' or 'npz', got {format!r}")
        return format
    if hasattr(path, "read") or hasattr(path, "write"):
        return "npz"
    return "json" if os.fspath(path).lower().endswith(".json") else "npz"


def _name(path):
    return repr(os.fspath(path)) if not (hasattr(path, "read") or hasattr(path, "write")) else "<file>"


# ------------------------------------------------------------- JSON writing --
def _float_strings(a):
    """Decimal strings for the values of a 1-D float array that read back exactly.

    float32: the shortest string that rounds to the value as float32
    (NumPy's ``str``), kept only where reading it as a double and rounding to
    float32 gives the value back (the path every JSON reader takes);
    otherwise, and for float64, ``repr`` of the exact double.
    """
    if a.dtype == np.float64:
        return [repr(v) for v in a.tolist()]
    short = [str(v) for v in a]
    back = np.array([float(s) for s in short], np.float64).astype(np.float32)
    bad = np.flatnonzero(back.view(np.uint32) != a.view(np.uint32))
    for i in bad:                                       # exact double repr of the float32
        short[i] = repr(float(a[i]))
    return short


def _json_array(a):
    if a.ndim == 1:
        return "[" + ", ".join(_float_strings(a)) + "]"
    rows = [_json_array(r) for r in a]
    return "[\n  " + ",\n  ".join(rows) + "]"


def _check_finite_params(params):
    for k, a in params.items():
        if not np.isfinite(a).all():
            raise ValueError(f"cannot write {k}: it holds NaN or infinity (model files hold finite numbers)")


def mlp_to_json(model: Any) -> str:
    """The model's parameters as the text of a JSON model file (keys ``param_0`` ...).

    Parameters
    ----------
    model : MLP
        Its parameters must be finite.

    Returns
    -------
    str
        The JSON text (keys ``param_0`` ...), as :meth:`MLP.save` writes it.

    Examples
    --------
    >>> import json
    >>> from fastlog.nn import MLP
    >>> params = json.loads(mlp_to_json(MLP((3, 2), seed=0)))
    >>> sorted(params), len(params["param_0"]), len(params["param_0"][0])
    (['param_0', 'param_1'], 2, 3)
    """
    params = {}
    for i, p in enumerate(model.parameters()):
        params[f"param_{i}"] = p
    _check_finite_params(params)
    body = ",\n".join(f'"{k}": {_json_array(np.ascontiguousarray(v))}' for k, v in params.items())
    return "{\n" + body + "\n}\n"


def save_mlp(model: Any, path: Union[str, "os.PathLike[str]", BinaryIO],
format: Optional[str] = None) -> None:
    """Write an :class:`~fastlog.nn.MLP` as JSON or npz (see the module docstring).

    Parameters
    ----------
    model : MLP
    path : str, os.PathLike or binary file object
    format : {None, 'json', 'npz'}
        None: JSON if the path ends in ``.json``, otherwise npz.

    Raises
    ------
    ValueError
        If the parameters hold NaN or infinity (they would not load back).

    Examples
    --------
    >>> import os, tempfile
    >>> from fastlog.nn import MLP
    >>> from fastlog.nn.io import save_mlp
    >>> d = tempfile.mkdtemp()
    >>> save_mlp(MLP((4, 3, 2)), os.path.join(d, "m.json"))
    >>> save_mlp(MLP((4, 3, 2)), os.path.join(d, "m.npz"))
    >>> sorted(os.listdir(d))
    ['m.json', 'm.npz']
    """
    fmt = _format(path, format)
    if fmt == "json":
        text = mlp_to_json(model)
        if hasattr(path, "write"):
            f: Any = path   # a binary file object, or a text one (it has an encoding)
            f.write(text if hasattr(f, "encoding") else text.encode("utf-8"))
            return
        tmp = os.fspath(path) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        return
    arrays = model.state_dict()
    _check_finite_params(arrays)
    arrays["__sizes__"] = np.asarray(model.sizes, np.int64)
    arrays["__format__"] = np.asarray([1], np.int64)
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "wb") as f:      # a file object: np.savez would append ".npz" to other names
        np.savez(f, **arrays)
    os.replace(tmp, path)


# ------------------------------------------------------------- JSON reading --
def _reject_constant(name):
    raise ValueError(f"non-finite number {name!r} in the file (model files hold finite numbers only)")


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice")
        out[k] = v
    return out


def _read_json(path):
    """The parsed top-level object of a JSON file; ValueError for malformed JSON."""
    name = _name(path)
    try:
        if hasattr(path, "read"):
            text = path.read()
        else:
            with open(path, "rb") as f:
                text = f.read()
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError(f"{name}: the JSON is nested too deeply to be a model file") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not a JSON file (not UTF-8 text: {e.reason})") from None
    except ValueError as e:   # json.JSONDecodeError, our hooks, too many integer digits
        raise ValueError(f"{name}: not a valid model file: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{name}: a model file holds a JSON object, got {type(obj).__name__}")
    return obj


def _numbers(row, where):
    """Check that a list holds only JSON numbers (int/float, not bool/str/list/None)."""
    kinds = set(map(type, row))
    if not kinds <= {int, float}:
        for j, v in enumerate(row):
            if type(v) not in (int, float):
                raise TypeError(f"{where}[{j}] is {type(v).__name__} {v!r:.40}, expected a number")
    if int in kinds:
        for j, v in enumerate(row):
            if type(v) is int and abs(v) > 1e300:
                raise ValueError(f"{where}[{j}] is an integer too large for a float")


def _list_shape(v, key, ndim):
    """The shape of a rectangular nested list of numbers of `ndim` levels (1 or 2), checked."""
    if type(v) is not list:
        what = "a nested list (rows of numbers)" if ndim == 2 else "a list of numbers"
        raise TypeError(f"{key} must be {what}, got {type(v).__name__}")
    if ndim == 1:
        _numbers(v, key)
        return (len(v),)
    if not v:
        raise ValueError(f"{key} has no rows")
    width = None
    for i, row in enumerate(v):
        if type(row) is not list:
            raise TypeError(f"{key}[{i}] is {type(row).__name__}, expected a list of numbers")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ValueError(f"{key} is ragged: row 0 has {width} numbers, row {i} has {len(row)}")
        _numbers(row, f"{key}[{i}]")
    return (len(v), width)


def _param_keys(obj, name):
    keys = list(obj)
    bad = [k for k in keys if not (isinstance(k, str) and k.startswith("param_") and k[6:].isdigit()
                                   and str(int(k[6:])) == k[6:])]
    if bad:
        raise ValueError(f"{name}: unexpected key {bad[0]!r} (a model file holds param_0, param_1, ...)")
    idx = sorted(int(k[6:]) for k in keys)
    if not idx:
        raise ValueError(f"{name}: no parameters (expected keys param_0, param_1, ...)")
    if idx != list(range(len(idx))):
        missing = min(set(range(idx[-1] + 1)) - set(idx))
        raise ValueError(f"{name}: param_{missing} is missing (keys must be param_0 ... param_{idx[-1]})")
    if len(idx) % 2:
        raise ValueError(f"{name}: {len(idx)} parameters; expected a weight and a bias per layer "
                         "(an even count)")
    if len(idx) > 2 * _MAX_LAYERS:
        raise ValueError(f"{name}: {len(idx) // 2} layers; at most {_MAX_LAYERS} are supported")
    return [f"param_{i}" for i in idx]


def _sizes_from_shapes(shapes, keys, name):
    sizes = [shapes[0][1]]
    for l in range(0, len(keys), 2):
        (o, i), (b,) = shapes[l], shapes[l + 1]
        if i != sizes[-1]:
            raise ValueError(f"{name}: {keys[l]} has shape {(o, i)}, but the previous layer has "
                             f"{sizes[-1]} outputs (weights are (out_features, in_features))")
        if b != o:
            raise ValueError(f"{name}: {keys[l + 1]} has {b} values, but {keys[l]} has {o} outputs")
        if o == 0 or i == 0:
            raise ValueError(f"{name}: {keys[l]} has shape {(o, i)}; every layer needs a width >= 1")
        sizes.append(o)
    return sizes


def _finite_as(a, dtype, key, name):
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(dtype)
    bad = ~np.isfinite(out)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        v = a[where]
        why = "NaN or infinity" if not np.isfinite(v) else f"{v!r} (out of {np.dtype(dtype).name} range)"
        raise ValueError(f"{name}: {key}{list(where)} is {why}; model files hold finite numbers only")
    return out


def _load_json_params(path, dtype):
    name = _name(path)
    obj = _read_json(path)
    keys = _param_keys(obj, name)
    shapes = [_list_shape(obj[k], k, 2 if j % 2 == 0 else 1) for j, k in enumerate(keys)]
    sizes = _sizes_from_shapes(shapes, keys, name)
    arrays = [_finite_as(np.array(obj[k], np.float64), dtype, k, name) for k in keys]
    return sizes, arrays


# -------------------------------------------------------------- npz reading --
def _npz_header(zf, member, key, name):
    with zf.open(member) as fp:
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dt = np.lib.format.read_array_header_1_0(fp)
            else:
                shape, fortran, dt = np.lib.format.read_array_header_2_0(fp)
        except (ValueError, SyntaxError, TypeError) as e:
            raise ValueError(f"{name}: {key} is not a valid .npy array ({e})") from None
    return tuple(shape), dt


def _npz_headers(path, name):
    """{key: (shape, dtype)} read from the .npy headers only (no array data)."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{name} is not a fastlog MLP file (not an npz archive: {e})") from None
    with zf:
        heads = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"{name}: unexpected member {info.filename!r} in the archive")
            key = info.filename[:-4]
            shape, dt = _npz_header(zf, info, key, name)
            if dt.hasobject:
                raise TypeError(f"{name}: {key} holds Python objects; model files hold numbers only")
            need = int(np.prod(shape, dtype=object)) * dt.itemsize
            if need > info.file_size:
                raise ValueError(f"{name}: {key} declares shape {shape} but the archive holds fewer bytes")
            heads[key] = (shape, dt)
    if hasattr(path, "seek"):
        path.seek(0)
    return heads


def _check_npz_meta(heads, name):
    if "__sizes__" not in heads or "__format__" not in heads:
        raise ValueError(f"{name} is not a fastlog MLP file (no __sizes__/__format__)")
    for key in ("__sizes__", "__format__"):
        shape, dt = heads[key]
        if dt.kind not in "iu":
            raise TypeError(f"{name}: {key} must hold integers, got {dt}")
        if len(shape) != 1 or not 1 <= shape[0] <= _MAX_LAYERS + 1:
            raise ValueError(f"{name}: {key} has shape {shape}")


def _npz_sizes(f, heads, name):
    fmt = f["__format__"]
    if fmt.shape != (1,) or int(fmt[0]) != 1:
        raise ValueError(f"{name}: unsupported fastlog MLP file format {fmt.tolist()}")
    sizes = [int(s) for s in f["__sizes__"]]
    if len(sizes) < 2:
        raise ValueError(f"{name}: __sizes__ needs at least 2 layer widths, got {sizes}")
    if min(sizes) < 1:
        raise ValueError(f"{name}: __sizes__ holds a width < 1: {sizes}")
    want = {}
    for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        want[f"{2 * l}.weight"], want[f"{2 * l}.bias"] = (o, i), (o,)
    got = set(heads) - {"__sizes__", "__format__"}
    if got != set(want):
        extra, missing = sorted(got - set(want)), sorted(set(want) - got)
        raise ValueError(f"{name}: keys do not match __sizes__ {sizes}: "
                         + (f"missing {missing}" if missing else f"unexpected {extra}"))
    for k, shape in want.items():
        if heads[k][0] != shape:
            raise ValueError(f"{name}: {k} has shape {heads[k][0]}, but __sizes__ {sizes} needs {shape}")
        if heads[k][1] not in _FLOATS:
            raise TypeError(f"{name}: {k} must be float32 or float64, got {heads[k][1]}")
    return sizes, list(want)


def _load_npz_params(path, dtype):
    name = _name(path)
    heads = _npz_headers(path, name)
    _check_npz_meta(heads, name)
    with np.load(path, allow_pickle=False) as f:
        sizes, keys = _npz_sizes(f, heads, name)
        if dtype is None:
            dtype = np.float64 if heads["0.weight"][1] == np.float64 else np.float32
        arrays = [_finite_as(f[k], dtype, k, name) for k in keys]
    return sizes, arrays, dtype


def read_mlp_params(path: Union[str, "os.PathLike[str]", BinaryIO], format: Optional[str] = None,
                    dtype: Optional[DTypeLike] = None) -> Tuple[Tuple[int, ...], List[np.ndarray], np.dtype]:
    """Read an MLP file (JSON or npz, see the module docstring), validating it fully.

    The layer sizes and parameters, with no model built: :func:`fastlog.nn.load_mlp`
    (and :meth:`fastlog.nn.MLP.load`) make the model from them.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
    format : {None, 'json', 'npz'}
        None: JSON if the path ends in ``.json``, otherwise npz.
    dtype : float32 or float64, optional
        Default: float32 for JSON, the file's for npz.

    Returns
    -------
    sizes : tuple of int
        The layer widths, inputs first.
    arrays : list of ndarray
        Each layer's weight (out, in) and bias (out,), in order.
    dtype : numpy dtype

    Raises
    ------
    ValueError
        Malformed file, wrong or missing keys, shapes that do not chain,
        NaN/infinity or values out of the dtype's range.
    TypeError
        Values that are not numbers (strings, booleans, null, objects),
        layer sizes that are not integers.

    Examples
    --------
    >>> import io, json
    >>> from fastlog.nn.io import read_mlp_params
    >>> text = json.dumps({"param_0": [[1.0, 2.0]], "param_1": [0.5]})
    >>> sizes, arrays, dtype = read_mlp_params(io.BytesIO(text.encode()), format="json")
    >>> sizes, arrays[0], dtype
    ((2, 1), array([[1., 2.]], dtype=float32), dtype('float32'))
    >>> read_mlp_params(io.BytesIO(b'{"param_0": [[1.0, "2"]], "param_1": [0.5]}'), format="json")
    Traceback (most recent call last):
    ...
    TypeError: param_0[0][1] is str '2', expected a number
    """
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in _FLOATS:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if _format(path, format) == "json":
        dtype = np.dtype(np.float32) if dtype is None else dtype
        sizes, arrays = _load_json_params(path, dtype)
    else:
        sizes, arrays, dtype = _load_npz_params(path, dtype)
    return tuple(int(n) for n in sizes), arrays, dtype


# ------------------------------------------------- the 3-vs-7 classifier --
_LOGREG_KEYS = ("weights", "bias", "final_accuracy", "training_samples", "data_type", "learning_rate")


def save_logreg(model: Any, path: Union[str, "os.PathLike[str]"], *, final_accuracy: float,
                training_samples: int, learning_rate: float, data_type: str = "real_mnist",
                image_shape: Tuple[int, int] = (28, 28)) -> None:
    """Write a binary :class:`~fastlog.nn.LogisticRegression` in the perceptron JSON format.

    Parameters
    ----------
    model : LogisticRegression
        Trained with label 1 for the digit 7 and 0 for the digit 3.
    path : str or os.PathLike
    final_accuracy : float
        Accuracy in [0, 1]; written in percent.
    training_samples : int
    learning_rate : float
    data_type : str
        Where the images came from ("real_mnist" for MNIST digits).
    image_shape : (int, int)
        The weights are written as this grid of pixels (rows of the image).

    Raises
    ------
    ValueError
        A `final_accuracy` outside [0, 1], or an `image_shape` that does not hold
        the model's weights.
    OSError
        If the file cannot be written.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from fastlog.nn import LogisticRegression
    >>> from fastlog.nn.io import save_logreg
    >>> path = os.path.join(tempfile.mkdtemp(), "p.json")
    >>> save_logreg(LogisticRegression(784), path, final_accuracy=0.5, training_samples=10,
    ...             learning_rate=0.1)
    >>> with open(path) as f:
    ...     d = json.load(f)
    >>> sorted(d), len(d["weights"]), len(d["weights"][0]), d["final_accuracy"]
    (['bias', 'data_type', 'final_accuracy', 'learning_rate', 'training_samples', 'weights'], 28, 28, 50.0)
    """
    acc = float_param(final_accuracy, "final_accuracy")
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"final_accuracy must be in [0, 1] (it is written in percent), got {final_accuracy!r}")
    samples = int_param(training_samples, "training_samples", lo=0)
    rate = float_param(learning_rate, "learning_rate")
    rows, cols = (positive_int(s, "image_shape") for s in image_shape)
    w = np.asarray(model.weight).reshape(-1)
    if rows * cols != w.size:
        raise ValueError(f"image_shape {image_shape} does not hold the model's {w.size} weights")
    if not (np.isfinite(w).all() and np.isfinite(model.bias).all()):
        raise ValueError("cannot write the model: its parameters hold NaN or infinity")
    grid = w.reshape(rows, cols)
    text = ("{\n" + f'"weights": {_json_array(np.ascontiguousarray(grid))},\n'
            + f'"bias": {_float_strings(np.asarray(model.bias).reshape(1))[0]},\n'
            + f'"final_accuracy": {json.dumps(round(100.0 * acc, 4))},\n'
            + f'"training_samples": {json.dumps(samples)},\n'
            + f'"data_type": {json.dumps(str(data_type))},\n'
            + f'"learning_rate": {json.dumps(rate)}\n' + "}\n")
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_logreg_params(path: Union[str, "os.PathLike[str]", BinaryIO],
                       dtype: DTypeLike = np.float32) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """Read a perceptron JSON file (see the module docstring), validating it fully.

    The parameters, with no model built: :func:`fastlog.nn.load_logreg` (and
    :meth:`fastlog.nn.LogisticRegression.load`) make the model from them.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
    dtype : float32 or float64

    Returns
    -------
    weight : ndarray, shape (1, rows * cols)
        The weight grid, row by row.
    bias : ndarray, shape (1,)
    info : dict
        final_accuracy (percent), training_samples, data_type, learning_rate.

    Raises
    ------
    ValueError, TypeError
        For anything but a well-formed perceptron file, naming the key at fault.

    Examples
    --------
    >>> import io, json
    >>> from fastlog.nn.io import read_logreg_params
    >>> d = {"weights": [[1.0, -1.0]], "bias": 0.25, "final_accuracy": 90.0,
    ...      "training_samples": 2, "data_type": "real_mnist", "learning_rate": 0.1}
    >>> w, b, info = read_logreg_params(io.BytesIO(json.dumps(d).encode()))
    >>> w, b, info["final_accuracy"]
    (array([[ 1., -1.]], dtype=float32), array([0.25], dtype=float32), 90.0)
    """
    name = _name(path)
    obj = _read_json(path)
    missing = [k for k in _LOGREG_KEYS if k not in obj]
    extra = sorted(set(obj) - set(_LOGREG_KEYS))
    if missing or extra:
        raise ValueError(f"{name}: not a perceptron file: " + (f"missing {missing}" if missing
                                                               else f"unexpected keys {extra}"))
    _list_shape(obj["weights"], "weights", 2)   # (checked: a 2-D grid of numbers)
    for key in ("bias", "final_accuracy", "learning_rate"):
        if type(obj[key]) not in (int, float):
            raise TypeError(f"{name}: {key} must be a number, got {type(obj[key]).__name__}")
    if type(obj["training_samples"]) is not int or obj["training_samples"] < 0:
        raise TypeError(f"{name}: training_samples must be a non-negative integer")
    if type(obj["data_type"]) is not str:
        raise TypeError(f"{name}: data_type must be a string")
    dtype = np.dtype(dtype)
    w = _finite_as(np.array(obj["weights"], np.float64), dtype, "weights", name)
    b = _finite_as(np.array([obj["bias"]], np.float64), dtype, "bias", name)
    info = {k: obj[k] for k in _LOGREG_KEYS[2:]}
    return w.reshape(1, -1), b, info


# ------------------------------------------------------- weight evolution --
def checkpoint_files(directory: Union[str, "os.PathLike[str]"],
format: Optional[str] = None) -> List[Tuple[int, str]]:
    """The per-epoch checkpoints ``relu_model_epoch_<k>.<json|npz>`` in a directory, by epoch.

    Parameters
    ----------
    directory : str or os.PathLike
        Where :func:`fastlog.nn.fit.fit_mlp` wrote its checkpoints.
    format : {None, 'json', 'npz'}
        Only files of this format (None: both).

    Returns
    -------
    list of (int, str)
        (epoch, path), sorted by epoch; ``relu_model_final`` is not included.

    Raises
    ------
    ValueError
        A `directory` that is not a directory.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for n in ("relu_model_epoch_10.json", "relu_model_epoch_2.json", "relu_model_final.json"):
    ...     open(os.path.join(d, n), "w").close()
    >>> [(e, os.path.basename(p)) for e, p in checkpoint_files(d)]
    [(2, 'relu_model_epoch_2.json'), (10, 'relu_model_epoch_10.json')]
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"{directory!r} is not a directory")
    found: Dict[int, str] = {}
    for fn in os.listdir(directory):
        stem, dot, ext = fn.rpartition(".")
        if not stem.startswith("relu_model_epoch_") or ext not in ("json", "npz"):
            continue
        if format is not None and ext != format:
            continue
        num = stem[len("relu_model_epoch_"):]
        if num.isdigit():
            if int(num) in found:
                raise ValueError(f"{directory!r} holds epoch {int(num)} twice ({fn} and "
                                 f"{os.path.basename(found[int(num)])}); pass format='json' or 'npz'")
            found[int(num)] = os.path.join(directory, fn)
    return sorted(found.items())


class WeightEvolution:
    """Per-layer parameter norms and their changes across training checkpoints.

    Parameters
    ----------
    epochs, names, norms, changes
        The attributes below, in this order (:func:`weight_evolution` builds
        it; ``relative`` is computed).

    Attributes
    ----------
    epochs : list of int
        The checkpoints' epochs, in order.
    names : list of str
        ``layer1.weight``, ``layer1.bias``, ``layer2.weight``, ...
    norms : ndarray (n_epochs, n_params)
        Frobenius norm of each parameter at each checkpoint.
    changes : ndarray (n_epochs, n_params)
        ``||p(epoch) - p(previous checkpoint)||``; the first row is NaN.
    relative : ndarray (n_epochs, n_params)
        ``changes`` divided by the previous norm.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import WeightEvolution
    >>> ev = WeightEvolution([1, 2], ["layer1.weight"], [[2.0], [3.0]], [[np.nan], [1.0]])
    >>> ev.relative
    array([[nan],
           [0.5]])
    """

    def __init__(self, epochs: Sequence[int], names: Sequence[str], norms: Sequence[Sequence[float]],
                 changes: Sequence[Sequence[float]]) -> None:
        self.epochs = list(epochs)
        self.names = list(names)
        self.norms = np.asarray(norms, np.float64)
        self.changes = np.asarray(changes, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            prev = np.vstack([np.full((1, self.norms.shape[1]), np.nan), self.norms[:-1]])
            self.relative = self.changes / prev

    def __str__(self):
        wid = [max(len(n), 17) for n in self.names]
        head = "epoch  " + "  ".join(f"{n:>{w}}" for n, w in zip(self.names, wid))
        lines = [f"weight evolution over {len(self.epochs)} checkpoints: ||p(e) - p(e-1)|| "
                 "(in % of ||p(e-1)||); first row: ||p||", head]
        for k, (e, ch, rel) in enumerate(zip(self.epochs, self.changes, self.relative)):
            if k == 0:
                cells = [f"{v:.4g}" for v in self.norms[0]]
            else:
                cells = [f"{c:.4g} ({100 * r:.2f}%)" for c, r in zip(ch, rel)]
            lines.append(f"{e:>5}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, wid)))
        return "\n".join(lines)


def weight_evolution(checkpoints: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
                     format: Optional[str] = None) -> "WeightEvolution":
    """Summarise how each layer's parameters moved across checkpoint files.

    Parameters
    ----------
    checkpoints : str, os.PathLike, or sequence of paths
        A directory written by ``fit(checkpoint_dir=...)`` (its
        ``relu_model_epoch_<k>`` files, in epoch order), or model files in
        order (epochs numbered 1, 2, ...).
    format : {None, 'json', 'npz'}
        With a directory: only files of this format.

    Returns
    -------
    WeightEvolution

    Raises
    ------
    ValueError
        A directory without ``relu_model_epoch_<k>`` checkpoint files, or
        checkpoints whose layer sizes differ.
    OSError
        If a file cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from fastlog.nn import MLP
    >>> from fastlog.nn.io import weight_evolution
    >>> d = tempfile.mkdtemp()
    >>> X, y = np.eye(4, dtype=np.float32), np.arange(4)
    >>> _ = MLP((4, 3, 4)).fit(X, y, epochs=3, batch_size=2, progress=False, checkpoint_dir=d)
    >>> evo = weight_evolution(d)
    >>> evo.epochs, evo.names[:2], evo.changes.shape
    ([1, 2, 3], ['layer1.weight', 'layer1.bias'], (3, 4))
    >>> bool(np.isnan(evo.changes[0]).all() and (evo.changes[1:] > 0).all())
    True
    """
    if isinstance(checkpoints, (str, os.PathLike)):
        if not os.path.isdir(checkpoints):
            raise ValueError(f"checkpoints: {os.fspath(checkpoints)!r} is not a directory (pass a directory "
                             f"written by fit(checkpoint_dir=...) or a sequence of model files)")
        items = checkpoint_files(checkpoints, format)
        if not items:
            raise ValueError(f"no relu_model_epoch_<k> checkpoint files in {os.fspath(checkpoints)!r}")
    else:
        items = list(enumerate(checkpoints, 1))
        if not items:
            raise ValueError("no checkpoint files given")
    norms, changes, prev, names = [], [], None, None
    for epoch, path in items:
        # JSON files hold no dtype: read as float32 (what fit writes), npz as stored; then float64 math
        params = [p.astype(np.float64) for p in read_mlp_params(path)[1]]
        if prev is not None and [p.shape for p in params] != [p.shape for p in prev]:
            raise ValueError(f"{os.fspath(path)!r} has other layer sizes than the previous checkpoint")
        if names is None:
            names = [f"layer{i // 2 + 1}.{'weight' if i % 2 == 0 else 'bias'}" for i in range(len(params))]
        norms.append([math.sqrt(float(np.sum(p * p))) for p in params])
        changes.append([math.nan] * len(params) if prev is None
                       else [math.sqrt(float(np.sum((p - q) ** 2))) for p, q in zip(params, prev)])
        prev = params
    return WeightEvolution([e for e, _ in items], names or [], norms, changes)
