"""fastlog's own Sphinx extension: "See Also" links to SciPy / PyTorch counterparts, local link
inventories for the projects they live in, and a check that every public name has a page.

* ``COUNTERPARTS`` says, for each public fastlog name, which SciPy / PyTorch / NumPy /
  scikit-learn object it stands in for.  The build appends them to the docstring's numpydoc
  "See Also" section (``autodoc-process-docstring``), so the docstrings in the source stay as they
  are and ``help()`` is unchanged.
* The links resolve through intersphinx, but this machine (and CI) cannot fetch other projects'
  ``objects.inv``: :func:`intersphinx_mapping` writes small local inventories that hold exactly
  the objects named here, with their real online addresses.
* ``PUBLIC`` lists the modules whose ``__all__`` is the public API; at the end of the build every
  name in them must have been documented (under its own name or under the name it is re-exported
  as, see ``ALIASES``), or the build warns (an error under ``-W``).
"""
import os
import zlib

# Where each external object's page lives: project -> (base URL, {object: (role, path)}).
_TORCH_GEN = "generated/{}.html"
EXTERNAL = {
    "scipy": ("https://docs.scipy.org/doc/scipy/", {
        n: ("function", f"reference/generated/{n}.html") for n in (
            "scipy.special.log_softmax", "scipy.special.softmax", "scipy.special.logsumexp",
            "scipy.special.rel_entr", "scipy.special.xlogy", "scipy.special.expit",
            "scipy.linalg.blas.sgemm")}),
    "torch": ("https://docs.pytorch.org/docs/stable/", {
        **{n: ("function", _TORCH_GEN.format(n)) for n in (
            "torch.nn.functional.log_softmax", "torch.nn.functional.softmax", "torch.logsumexp",
            "torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss",
            "torch.nn.functional.binary_cross_entropy_with_logits", "torch.nn.functional.kl_div",
            "torch.nn.functional.linear_cross_entropy", "torch.nn.functional.linear",
            "torch.nn.functional.relu", "torch.set_num_threads", "torch.get_num_threads", "torch.save",
            "torch.load", "torch.compile")},
        **{n: ("class", _TORCH_GEN.format(n)) for n in (
            "torch.nn.CrossEntropyLoss", "torch.nn.NLLLoss", "torch.nn.BCEWithLogitsLoss",
            "torch.nn.KLDivLoss", "torch.nn.LinearCrossEntropyLoss", "torch.nn.Linear",
            "torch.nn.Sequential", "torch.optim.SGD", "torch.utils.data.random_split")},
        "torch.distributed.all_reduce": ("function", "distributed.html#torch.distributed.all_reduce"),
        "torch.autocast": ("class", "amp.html#torch.autocast"),
        "torch.__config__.show": ("function", "config_mod.html#torch.__config__.show"),
    }),
    "numpy": ("https://numpy.org/doc/stable/", {
        n: ("function", f"reference/generated/{n}.html") for n in (
            "numpy.show_config", "numpy.exp", "numpy.log")}),
    "sklearn": ("https://scikit-learn.org/stable/", {
        "sklearn.linear_model.LogisticRegression":
            ("class", "modules/generated/sklearn.linear_model.LogisticRegression.html"),
        "sklearn.model_selection.train_test_split":
            ("function", "modules/generated/sklearn.model_selection.train_test_split.html"),
    }),
    "dask": ("https://docs.dask.org/en/stable/", {
        "dask.array.Array": ("class", "generated/dask.array.Array.html"),
    }),
}

_F = "torch.nn.functional."
_SP = "scipy.special."
# fastlog name -> [(counterpart, what it says)].  Every public name of the modules in PUBLIC that
# has a SciPy / PyTorch counterpart is here; test_docs_site.py checks the names exist.
COUNTERPARTS = {
    "fastlog.log_softmax": [(_SP + "log_softmax", "SciPy's function: same signature and results"),
                            (_F + "log_softmax", "PyTorch's")],
    "fastlog.softmax": [(_SP + "softmax", "SciPy's function: same signature and results"), (_F + "softmax", "PyTorch's")],
    "fastlog.logsumexp": [(_SP + "logsumexp", "SciPy's function: same signature and results"),
                          ("torch.logsumexp", "PyTorch's")],
    "fastlog.log_softmax_backward": [(_F + "log_softmax", "PyTorch's log-softmax, whose backward this is")],
    "fastlog.softmax_backward": [(_F + "softmax", "PyTorch's softmax, whose backward this is")],
    "fastlog.cross_entropy": [(_F + "cross_entropy", "PyTorch's function: same parameters and results")],
    "fastlog.cross_entropy_and_grad": [(_F + "cross_entropy", "PyTorch's loss; its gradient is what "
                                        "``loss.backward()`` puts in ``input.grad``")],
    "fastlog.nll_loss": [(_F + "nll_loss", "PyTorch's function: same parameters and results")],
    "fastlog.nll_loss_and_grad": [(_F + "nll_loss", "PyTorch's loss (gradient through autograd)")],
    "fastlog.binary_cross_entropy_with_logits": [(_F + "binary_cross_entropy_with_logits",
                                                  "PyTorch's function: same parameters and results")],
    "fastlog.binary_cross_entropy_with_logits_and_grad": [(_F + "binary_cross_entropy_with_logits",
                                                           "PyTorch's loss (gradient through autograd)")],
    "fastlog.kl_div": [(_F + "kl_div", "PyTorch's function: same parameters and results"),
                       (_SP + "rel_entr", "SciPy's pointwise ``t * log(t / p)``")],
    "fastlog.show_config": [("numpy.show_config", "NumPy's"), ("torch.__config__.show", "PyTorch's")],
    "fastlog.config": [("numpy.show_config", "NumPy's build and CPU report")],
    "fastlog.set_num_threads": [("torch.set_num_threads", "PyTorch's")],
    "fastlog.get_num_threads": [("torch.get_num_threads", "PyTorch's")],
    "fastlog.num_threads": [("torch.set_num_threads", "PyTorch's (not scoped)")],
    "fastlog.MLP": [("torch.nn.Sequential", "the same network in PyTorch (``MLP.to_torch()`` builds it)"),
                    ("torch.optim.SGD", "the update rule of ``train_step``")],
    "fastlog.LogisticRegression": [("sklearn.linear_model.LogisticRegression", "scikit-learn's"),
                                   (_F + "binary_cross_entropy_with_logits", "the loss it minimises")],
    "fastlog.linear_forward": [(_F + "linear", "PyTorch's (plus an optional ReLU)")],
    "fastlog.linear_backward": [(_F + "linear", "PyTorch's linear layer, whose backward this is")],
    "fastlog.relu": [(_F + "relu", "PyTorch's")],
    "fastlog.relu_backward": [(_F + "relu", "PyTorch's ReLU, whose backward this is")],
    "fastlog.mlp_gemms_only": [("scipy.linalg.blas.sgemm", "the BLAS call it times")],
    "fastlog.linear_cross_entropy": [(_F + "linear_cross_entropy", "PyTorch's fused function")],
    "fastlog.linear_cross_entropy_and_grad": [(_F + "linear_cross_entropy",
                                               "PyTorch's fused function (gradients through autograd)")],
    "fastlog.lr_find": [("torch.optim.SGD", "the optimizer of the sweep")],
    # fastlog.torch: drop-in replacements
    **{f"fastlog.torch.{n}": [(_F + n, "what this replaces: same parameters, values and gradients")]
       for n in ("cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div", "log_softmax",
                 "softmax", "linear_cross_entropy")},
    **{f"fastlog.torch.{n}": [(f"torch.nn.{n}", "what this subclasses and replaces")]
       for n in ("CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "KLDivLoss", "LinearCrossEntropyLoss")},
    **{f"fastlog.torch.{n}": [(_F + "cross_entropy", "one of the functions patching replaces"),
                              ("torch.nn.CrossEntropyLoss", "one of the modules whose forward it replaces")]
       for n in ("patch", "unpatch", "patched", "is_patched")},
    "fastlog.torch.fast_path_available": [("torch.compile", "under which fastlog steps aside")],
    "fastlog.torch.distributed.vocab_parallel_cross_entropy": [
        (_F + "cross_entropy", "the same loss of the gathered logits"),
        ("torch.distributed.all_reduce", "the collective it uses (per-row scalars only)")],
    "fastlog.torch.distributed.vocab_parallel_linear_cross_entropy": [
        (_F + "linear_cross_entropy", "the same loss with the whole output layer on one process")],
    # fastlog.dask: lazy versions
    **{f"fastlog.dask.{n}": [(_F + n, "PyTorch's, in memory"), ("dask.array.Array", "what it takes")]
       for n in ("cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div")},
    **{f"fastlog.dask.{n}": [(_SP + n, "SciPy's, in memory"), ("dask.array.Array", "what it takes")]
       for n in ("log_softmax", "softmax", "logsumexp")},
    # fastlog.nn and fastlog.data
    "fastlog.nn.fit_mlp": [("torch.optim.SGD", "the update rule")],
    "fastlog.nn.save_mlp": [("torch.save", "PyTorch's (pickle based; the JSON file here never unpickles)")],
    "fastlog.nn.load_mlp": [("torch.load", "PyTorch's")],
    "fastlog.data.train_test_split": [("sklearn.model_selection.train_test_split", "scikit-learn's")],
    "fastlog.data.mnist_train_test": [("sklearn.model_selection.train_test_split", "scikit-learn's split")],
}

# Public modules (their __all__ is the API) and the page module each is documented under.
PUBLIC = ("fastlog", "fastlog.torch", "fastlog.torch.distributed", "fastlog.dask", "fastlog.nn",
          "fastlog.nn.plot", "fastlog.nn.io", "fastlog.data")
# Names re-exported by a second public module are documented once, under the first name here.
ALIASES = {f"fastlog.nn.{n}": f"fastlog.{n}" for n in (
    "MLP", "LogisticRegression", "linear_forward", "linear_backward", "relu", "relu_backward",
    "mlp_gemms_only", "lr_find")}
ALIASES.update({f"fastlog.nn.io.{n}": f"fastlog.nn.{n}" for n in (
    "save_mlp", "save_logreg", "weight_evolution", "WeightEvolution")})
# Module constants in __all__ (documented in their module's text, not as callables).
CONSTANTS = {"fastlog.nn.plot.MATPLOTLIB_HINT"}


def intersphinx_mapping(folder):
    """Write one objects.inv per project of EXTERNAL into `folder`; the mapping for conf.py."""
    os.makedirs(folder, exist_ok=True)
    out = {}
    for project, (base, objects) in sorted(EXTERNAL.items()):
        lines = "".join(f"{name} py:{role} 1 {path} -\n" for name, (role, path) in sorted(objects.items()))
        head = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
                f"# The remainder of this file is compressed using zlib.\n").encode()
        path = os.path.join(folder, f"{project}.inv")
        data = head + zlib.compress(lines.encode())
        if not os.path.exists(path) or open(path, "rb").read() != data:
            with open(path, "wb") as f:
                f.write(data)
        out[project] = (base, path)
    return out


def _see_also(app, what, name, obj, options, lines):
    """Append the counterparts of `name` to its docstring's numpydoc See Also section."""
    links = COUNTERPARTS.get(name)
    if not links:
        return
    entries = [f"{target} : {text}." for target, text in links]
    for i, line in enumerate(lines):
        if line.strip() == "See Also" and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            lines[i + 2:i + 2] = entries          # an existing section: the counterparts first
            return
    # numpydoc's order: See Also goes before Notes / References / Examples
    at = len(lines)
    for i, line in enumerate(lines):
        if line.strip() in ("Notes", "References", "Examples") and i + 1 < len(lines) \
                and set(lines[i + 1].strip()) == {"-"}:
            at = i
            break
    lines[at:at] = ["See Also", "--------", *entries, ""]


# The gallery's order: the log-domain story first, then training, then large vocabularies and
# scaling out (sphinx-gallery's within_subsection_order; a file not listed goes last).
GALLERY_ORDER = (
    "plot_likelihood_vs_log_likelihood.py", "plot_logsumexp_stability.py", "plot_cross_entropy_entropy_kl.py",
    "plot_softmax_gradient_check.py", "plot_mlp_digits.py", "plot_perceptron_3_vs_7.py", "plot_lr_finder.py",
    "plot_mlp_torch.py", "plot_linear_ce_memory.py", "ddp_mlp.py", "dask_cross_entropy.py",
)


def gallery_order(filename):
    """Sort key of an example file name (sphinx-gallery's ``within_subsection_order``)."""
    name = os.path.basename(filename)
    return (GALLERY_ORDER.index(name) if name in GALLERY_ORDER else len(GALLERY_ORDER), name)


def reset_threads(gallery_conf, fname):
    """sphinx-gallery: every example starts with fastlog's default thread policy."""
    import fastlog
    fastlog.set_num_threads(None)


def _documented(env):
    return set(env.get_domain("py").objects)


def _check_coverage(app, env):
    """Every public name is documented (under its own name or its alias), or warn."""
    import importlib
    documented = _documented(env)
    missing = []
    for mod in PUBLIC:
        for name in importlib.import_module(mod).__all__:
            full = f"{mod}.{name}"
            if full in CONSTANTS:
                continue
            if full not in documented and ALIASES.get(full) not in documented:
                missing.append(full)
    for name in COUNTERPARTS:
        if name not in documented:
            missing.append(f"{name} (named in COUNTERPARTS)")
    if missing:
        # (imported here: the test suite reads this module's tables without Sphinx installed)
        from sphinx.util import logging
        logging.getLogger(__name__).warning("public names without an API page: %s", ", ".join(missing))


PLATFORMS_MARK = "<!-- platforms:"


def _platforms(app, docname, source):
    """install.md: link docs/platforms.md (the per-platform table, written separately) when it exists."""
    if docname != "install" or PLATFORMS_MARK not in source[0]:
        return
    have = os.path.exists(os.path.join(app.srcdir, "platforms.md"))
    text = ("The table of platforms, builds and what is tested on each: {doc}`platforms`.\n\n"
            "```{toctree}\n:hidden:\n\nplatforms\n```\n") if have else ""
    lines = source[0].splitlines(keepends=True)
    source[0] = "".join(text if ln.startswith(PLATFORMS_MARK) else ln for ln in lines)


def setup(app):
    app.connect("autodoc-process-docstring", _see_also, priority=400)   # before numpydoc (500)
    app.connect("source-read", _platforms)
    app.connect("env-check-consistency", _check_coverage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
