"""Sphinx configuration of the documentation site (`make docs` builds it into build/site).

`make docs` runs `sphinx-build -W --keep-going -c docs . build/site`: the source directory is
the repository root, so every relative link in the repository's markdown (proofs/, notebooks/,
the pages under docs/) resolves on the site exactly as it does in the repository, and a file
such as proofs/theorem1.md is a page itself, not a copy. Only the files matched by
`include_patterns` become pages; a link to any other file of the repository becomes a download,
and a link to a file that does not exist fails the build (-W turns every warning into an error).

Math is typeset by KaTeX in the browser, from files the site serves itself: docs/vendor_katex.py
(run by `make docs`) fetches the pinned KaTeX from the npm registry into build/vendor/katex, and
docs/_ext/katex_math.py puts it on the pages that have math. Nothing on a page is loaded from
another host (tests/test_docs_site.py checks that in Chromium).
"""

from __future__ import annotations

import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
sys.path.insert(0, str(ROOT / "docs"))

import vendor_katex  # noqa: E402

# The Python API page (docs/api.md) documents these modules of sublim_toy, in this order. This
# list is the only place that names them: the page is filled from it at build time.
API_MODULES = [
    "config",
    "data",
    "keys",
    "inputs",
    "model",
    "losses",
    "train",
    "updates",
    "projection",
    "probes",
    "first_order",
    "experiment",
    "results",
    "theorem",
    "theorem_report",
    "boundary",
    "linear_toy",
    "sweep",
    "stats",
    "plots",
    "bench",
    "bench_runs",
    "bench_report",
]
# Modules deliberately left off the API page. A module of sublim_toy in neither list fails the
# build, so a new or renamed module cannot drop out of the API page unnoticed.
API_LEFT_OUT = {
    "__main__": "runs the command line when imported",
    "bench_child": "the child process of one benchmark run, started by bench_runs",
    "distributed": "joining a run across processes, documented on docs/distributed.md",
    "cli": "documented on the command-line page, generated from its parser",
    "errors": "UserError only, raised for bad input",
    "files": "atomic file writes, an implementation detail",
    "host_memory": "freed host memory back to the OS between epochs, called by train.run_phase",
    "sharding": "the seed axis over local devices, used by experiment",
}

project = "sublim-toy"
author = "the sublim-toy authors"
copyright = "the sublim-toy authors, MIT licence"
release = "0.1.0"

root_doc = "docs/index"
include_patterns = ["docs/**.md", "proofs/*.md", "notebooks/*.ipynb"]
exclude_patterns = [".venv", "build", "results", ".git", "**/.ipynb_checkpoints"]

extensions = [
    "myst_nb",  # markdown (MyST) and notebooks; includes myst_parser
    "sphinx.ext.autodoc",
    "sphinxarg.ext",
    "katex_math",  # docs/_ext/katex_math.py
]
html_math_renderer = "katex"

# MyST: $...$ and $$...$$ math as in the repository's markdown; anchors for ## and ### headings.
myst_enable_extensions = ["dollarmath", "colon_fence"]
# $$ ... $$ inside a paragraph is display math too, as GitHub reads the same files.
myst_dmath_double_inline = True
myst_heading_anchors = 3
# Notebooks are shown with the outputs they are committed with, never executed here.
nb_execution_mode = "off"

# Docstrings use `name` for code: make it a cross-reference where it resolves, code anyway.
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}

# Output blocks without a language stay plain text.
highlight_language = "text"
# Curly quotes and ellipses, but "--flag" in help texts stays two hyphens.
smartquotes_action = "qe"

html_theme = "furo"
html_title = "sublim-toy"
html_static_path = [str(vendor_katex.DEST.parent)]  # katex/ -> _static/katex/
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None

_katex_stamp = vendor_katex.DEST / "VERSION"
if not _katex_stamp.exists() or _katex_stamp.read_text().strip() != vendor_katex.VERSION:
    raise RuntimeError(
        f"KaTeX {vendor_katex.VERSION} missing from {vendor_katex.DEST}: run `make docs`"
    )


def _api_page_source() -> str:
    """The module sections of docs/api.md, one automodule per entry of API_MODULES."""
    found = {name for _, name, _ in pkgutil.iter_modules([str(ROOT / "sublim_toy")])}
    unlisted = sorted(found - set(API_MODULES) - set(API_LEFT_OUT))
    missing = sorted(set(API_MODULES) - found)
    if unlisted or missing:
        raise RuntimeError(
            f"docs/conf.py API_MODULES is out of date: modules not listed {unlisted},"
            f" listed but absent {missing}; add them to API_MODULES or API_LEFT_OUT"
        )
    sections = []
    for name in API_MODULES:
        # eval-rst: autodoc's output, docstrings included, is reStructuredText, not MyST.
        sections.append(
            f"\n## `sublim_toy.{name}`\n\n```{{eval-rst}}\n.. automodule:: sublim_toy.{name}\n```\n"
        )
    return "".join(sections)


# The docstrings are plain text, not reStructuredText: `name` for code (made a cross-reference by
# default_role where it resolves), |x| for norms, * for products, aligned tables indented under
# a paragraph. Escape what reStructuredText would read as markup and show indented blocks as
# they are written.
_CODE_SPAN = re.compile(r"(`[^`]*`)")
_RST_MARKUP = re.compile(r"([\\*|_])")


def _escape_plain(text: str) -> str:
    parts = _CODE_SPAN.split(text)
    parts[::2] = [_RST_MARKUP.sub(r"\\\1", part) for part in parts[::2]]
    return "".join(parts)


def _plain_docstring_to_rst(app, what, name, obj, options, lines: list[str]) -> None:
    paragraphs, current = [], []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    out = []
    for para in paragraphs:
        indents = [len(line) - len(line.lstrip()) for line in para]
        text_end = next((i for i, ind in enumerate(indents) if ind > indents[0]), len(para))
        if indents[0] > 0:
            text_end = 0
        if text_end:
            out += _escape_plain("\n".join(para[:text_end])).split("\n")
        if text_end < len(para):
            out += ["", "::", ""] + ["    " + line for line in para[text_end:]]
        out.append("")
    lines[:] = out


API_MARKER = re.compile(r"^<!-- api-modules -->$", re.MULTILINE)


def _fill_api_page(app, docname: str, source: list[str]) -> None:
    if docname == "docs/api":
        source[0], count = API_MARKER.subn(lambda _: _api_page_source(), source[0])
        if count != 1:
            raise RuntimeError("docs/api.md must hold the line <!-- api-modules --> once")


# The pages live under docs/ (the source directory is the repository root); the site's root
# index only points there.
ROOT_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sublim-toy</title>
<meta http-equiv="refresh" content="0; url=docs/index.html"></head>
<body><p><a href="docs/index.html">sublim-toy documentation</a></p></body></html>
"""


def _write_root_index(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        (Path(app.outdir) / "index.html").write_text(ROOT_INDEX)


def setup(app):
    app.connect("source-read", _fill_api_page)
    app.connect("autodoc-process-docstring", _plain_docstring_to_rst)
    app.connect("build-finished", _write_root_index)
