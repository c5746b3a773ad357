"""Sphinx math typeset in the browser by KaTeX, served by the site itself.

The HTML is Sphinx's own (the visitors of sphinx.ext.mathjax: `\\(...\\)` in `span.math`,
`\\[...\\]` in `div.math`, HTML-escaped); KaTeX's auto-render then typesets only those elements,
so a backslash-parenthesis in prose is never taken for math. KaTeX's files are the ones
docs/vendor_katex.py fetched into the static path, under katex/; pages without math load none
of them.
"""

from __future__ import annotations

from sphinx.ext import mathjax

RENDER = r"""document.addEventListener("DOMContentLoaded", () => {
  const options = {
    delimiters: [
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  };
  for (const element of document.querySelectorAll(".math")) {
    renderMathInElement(element, options);
  }
});"""


def add_katex(app, pagename, templatename, context, doctree) -> None:
    if app.builder.format != "html" or app.builder.math_renderer_name != "katex":
        return
    if context.get("has_maths_elements") or app.registry.html_assets_policy == "always":
        app.builder.add_css_file("katex/katex.min.css")
        app.builder.add_js_file("katex/katex.min.js", defer="defer")
        app.builder.add_js_file("katex/contrib/auto-render.min.js", defer="defer")
        app.builder.add_js_file(None, body=RENDER)


def setup(app):
    app.setup_extension("sphinx.ext.mathjax")  # its visitors read mathjax_inline/mathjax_display
    app.add_html_math_renderer(
        "katex",
        inline_renderers=(mathjax.html_visit_math, None),
        block_renderers=(mathjax.html_visit_displaymath, None),
    )
    app.connect("html-page-context", add_katex)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
