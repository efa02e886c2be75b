"""A small multi-layer perceptron trained with SGD, every step in compiled code.

The package, one module per role:

* :mod:`fastlog.nn.functional` -- building blocks on NumPy arrays:
  :func:`linear_forward`, :func:`linear_backward`, :func:`relu`,
  :func:`relu_backward`.
* :mod:`fastlog.nn.mlp` -- the model, :class:`MLP` (default 784-128-64-10,
  Linear -> ReLU -> ... -> Linear on mean cross-entropy), and
  :func:`mlp_gemms_only` for benchmarks.
* :mod:`fastlog.nn.fit` -- the training loop (progress, history, per-epoch
  checkpoints).
* :mod:`fastlog.nn.io` -- model files: npz and the JSON format with keys
  ``param_0`` ... that plain NumPy programs read; the 3-vs-7 perceptron JSON;
  weight evolution across checkpoints.
* :mod:`fastlog.nn.logistic` -- :class:`LogisticRegression` (binary, BCE with
  logits).
* :mod:`fastlog.nn.lr_find` -- the learning-rate finder, :func:`lr_find`.
* :mod:`fastlog.nn.plot` -- pictures (matplotlib, optional).

Threads: :func:`fastlog.set_num_threads` governs everything; results are
bit-identical for any thread count.  SciPy's OpenBLAS pool is held at 1
thread (through ``threadpoolctl``) only while fastlog's calls run, and the
user's setting is restored afterwards (:func:`fastlog._threads.blas_pinned`).
Thread safety: MLP inference and the building blocks may be used from many
threads at once; training one model from two threads raises RuntimeError.
"""
from .fit import fit_mlp
from .functional import linear_backward, linear_forward, relu, relu_backward
from .io import save_logreg, save_mlp, weight_evolution, WeightEvolution
from .logistic import LogisticRegression, load_logreg
from .lr_find import LRFinderResult, lr_find
from .mlp import INFER_BLOCK, MLP, load_mlp, mlp_gemms_only  # noqa: F401

__all__ = ["MLP", "LogisticRegression", "linear_forward", "linear_backward", "relu", "relu_backward",
           "mlp_gemms_only", "fit_mlp", "lr_find", "LRFinderResult", "save_mlp", "load_mlp", "save_logreg",
           "load_logreg", "weight_evolution", "WeightEvolution"]
