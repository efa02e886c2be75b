"""Old import path of the benchmark's definitions, kept so that existing scripts keep working.

The definitions now live by role: :mod:`.groups` (operations, floors),
:mod:`.impls` (each library's version), :mod:`.oracle` (the check against
``fastlog._reference``), :mod:`.data` (inputs), :mod:`.presets` (cases, plan).
"""
from .data import clear_data
from .data import data_for as _data_for
from .groups import ALIASES, GROUPS, Group, expand_groups
from .impls import LIBRARIES, Unavailable
from .oracle import Oracle, agreement
from .oracle import reference_for as _reference_for
from .presets import PRESETS, ROW_SHAPES, Case, parse_shape, plan, shape_label

__all__ = ["Case", "Group", "Unavailable", "GROUPS", "ALIASES", "LIBRARIES", "ROW_SHAPES", "PRESETS",
           "data_for", "clear_data", "reference_for", "Oracle", "agreement", "plan", "parse_shape",
           "shape_label", "expand_groups"]


def data_for(group, shape, dtype):
    """The cached inputs of (group name, shape, dtype name).

    Parameters
    ----------
    group : str
        A group name (a key of ``GROUPS``).
    shape, dtype
        As in :func:`fastlog.bench.data.data_for`.

    Examples
    --------
    >>> from fastlog.bench.cases import data_for
    >>> data_for("softmax", (8, 5), "float64")["x"].shape
    (8, 5)
    """
    return _data_for(GROUPS[group], shape, dtype)


def reference_for(group, d):
    """The float64 oracle of (group name or Group) on the inputs `d`.

    Parameters
    ----------
    group : str or Group
        The operation.
    d : dict
        Its inputs (from :func:`data_for`).

    Returns
    -------
    Oracle
        See :func:`fastlog.bench.oracle.reference_for`.

    Examples
    --------
    >>> from fastlog.bench.cases import data_for, reference_for
    >>> ref = reference_for("logsumexp", data_for("logsumexp", (8, 5), "float32"))
    >>> ref.values[0].shape, ref.values[0].dtype
    ((8,), dtype('float64'))
    """
    return _reference_for(GROUPS[group] if isinstance(group, str) else group, d)
