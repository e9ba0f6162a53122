"""Sphinx configuration of gaussmix's documentation.

Build: ``pip install -e ".[docs]" && python -m sphinx -W --keep-going -b html docs
docs/_build/html``. Everything is offline: no inventories, fonts or scripts are fetched.
"""

import os
import sys
import warnings

os.environ.setdefault("GAUSSMIX_COMPILE", "foreground")  # the gallery's fits take the kernels

import gaussmix

project = "gaussmix"
author = "gaussmix developers"
copyright = "2026, the gaussmix developers"
release = version = gaussmix.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "gallery.py", "sg_execution_times.rst", "benchmarks/*.md",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.json",
                    "auto_examples/*.md5"]
root_doc = "index"

autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "write_computation_times": False,  # its page loads scripts from the network
}

html_theme = "pydata_sphinx_theme"
html_title = "gaussmix"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "use_edit_page_button": False,
    "header_links_before_dropdown": 6,
}
html_sidebars = {"index": []}

warnings.filterwarnings("ignore", category=UserWarning,
                        message="Matplotlib is currently using agg")
