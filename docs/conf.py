"""Sphinx configuration of fastlog's documentation site.

Build (what CI runs, and what the README says):

    pip install ".[docs]" && python -m sphinx -W --keep-going -b html docs docs/_build/html

The API pages are generated from the docstrings (autosummary + numpydoc), the gallery from
examples/ (sphinx-gallery runs every ``plot_*.py`` at build time), and the Markdown pages are
read by MyST.  Nothing is fetched from the network: the links to NumPy, SciPy, PyTorch and
scikit-learn go through local inventory stubs written by ``_ext/fastlog_docs.py``.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))

try:
    import torch  # noqa: F401  (fastlog.torch's pages and two gallery examples need it)
except ImportError:  # pragma: no cover - a clear message instead of a page of autodoc warnings
    raise SystemExit('the documentation needs PyTorch: pip install torch==2.13.0 (the CPU wheel), '
                     'then pip install ".[docs]"') from None

import fastlog  # noqa: E402
import fastlog_docs  # noqa: E402

project = "fastlog"
author = "fastlog developers"
copyright = "2026, fastlog developers"
version = release = fastlog.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
    "fastlog_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# Generated Markdown that other pages include: REPORT.md (the benchmark report, into
# guide/benchmarks.md) and guide/accuracy_table.md (scripts/accuracy_table.py, into guide/accuracy.md).
exclude_patterns = ["_build", "REPORT.md", "guide/accuracy_table.md", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "_screenshots"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["fastlog.css"]

# -- API pages ---------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": False}
autodoc_typehints = "none"               # the numpydoc Parameters sections say the types
numpydoc_show_class_members = False      # methods are documented on the class page (template)
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

# -- Markdown ----------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- links to other projects' docs, through local inventories (no network) ----------------------
intersphinx_mapping = fastlog_docs.intersphinx_mapping(os.path.join(HERE, "_build", "inventories"))
intersphinx_timeout = 1

# -- gallery -----------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",          # run at build time; the others are shown, not run
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "fastlog_docs.gallery_order",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "doc_module": ("fastlog",),
    "backreferences_dir": os.path.join("api", "generated", "backreferences"),
    "reference_url": {"fastlog": None},
    "min_reported_time": 0,
    "show_memory": False,
    "show_signature": False,
    "write_computation_times": False,       # its page loads scripts from CDNs; the site is offline
    "reset_modules": ("matplotlib", "seaborn", "fastlog_docs.reset_threads"),
    "capture_repr": ("_repr_html_", "__repr__"),
}

# The benchmark's operation groups, for the command-line page (from the code, not copied).
from fastlog.bench.groups import ALIASES, GROUPS  # noqa: E402

rst_epilog = ".. |bench_groups| replace:: " + ", ".join(f"``{g}``" for g in GROUPS) + "; aliases " + ", ".join(
    f"``{a}`` ({' + '.join(v)})" for a, v in ALIASES.items()) + " and ``all``\n"

# -- HTML --------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"fastlog {version}"
html_theme_options = {
    "logo": {"text": "fastlog"},
    "navbar_end": ["theme-switcher"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "show_prev_next": True,
    "header_links_before_dropdown": 8,
}
# Pages reached from the top bar have no section to navigate; the benchmark page's wide report
# gets the width.
html_sidebars = {"index": [], "changelog": [], "quickstart": [], "install": [], "guide/benchmarks": []}
html_show_sourcelink = False
html_copy_source = False
