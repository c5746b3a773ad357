"""The documentation site in a real browser: `make docs` builds it, headless Chromium loads it.

Every page is served from localhost and must load (HTTP 200), with every image decoded, its math
typeset by the site's own KaTeX (no raw TeX left, no KaTeX error, KaTeX's fonts in use), no
console error, no failed request and no request for any other host (all are recorded, and
blocked). Screenshots of a few key pages go to build/test-artifacts/docs-site/ (or
$SUBLIM_TOY_TEST_ARTIFACTS).

Chromium is Debian's (`apt-get install chromium`; .ci/run installs it), driven by Playwright,
never a browser Playwright downloads. Where it is missing the test fails, unless
SUBLIM_TOY_SKIP_BROWSER=1 asks to skip it (ignored under CI).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("SUBLIM_TOY_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(
    os.environ.get("SUBLIM_TOY_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts" / "docs-site")
)
# Without the background-networking flags Chromium tries to reach Google's hosts at start.
# Playwright adds --headless and a fresh temporary --user-data-dir itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Pages that must hold typeset math, with the least number of KaTeX formulas each shows.
MATH_PAGES = {
    "proofs/theorem1.html": 100,
    "notebooks/02_theorem_check.html": 20,
    "docs/pitfalls.html": 5,
}
SCREENSHOTS = {
    "index": "docs/index.html",
    "theorem": "proofs/theorem1.html",
    "study-layers": "docs/studies/layers.html",
    "notebook-02": "notebooks/02_theorem_check.html",
}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# A $ followed, before any other $, by a TeX command: inline math that was not typeset.
RAW_INLINE_MATH = re.compile(r"\$[^$\n]{0,80}?\\[A-Za-z]+")
# One worker builds the site once for all of them under pytest-xdist (`make test`).
pytestmark = pytest.mark.xdist_group("docs-site")


def _expected_pages() -> list[str]:
    """One page per source the site is built from (docs/conf.py include_patterns), and Sphinx's."""
    sources = [
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("proofs/*.md"),
        *ROOT.glob("notebooks/*.ipynb"),
    ]
    pages = [str(path.relative_to(ROOT).with_suffix(".html")) for path in sources]
    return sorted(pages) + ["index.html", "genindex.html", "py-modindex.html", "search.html"]


PAGES = _expected_pages()

# Run in the page: wait for every image, then report what the checks need.
INSPECT = """async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map((img) => img.complete ? null :
      new Promise((done) => { img.onload = done; img.onerror = done; })));
  await document.fonts.ready;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => node.parentElement.closest("pre, code, script, style, .katex")
        ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode.nodeValue);
  return {
    broken_images: images.filter((img) => !(img.complete && img.naturalWidth > 0))
        .map((img) => img.getAttribute("src")),
    image_count: images.length,
    katex: document.querySelectorAll(".katex").length,
    katex_errors: Array.from(document.querySelectorAll(".katex-error"))
        .map((node) => node.getAttribute("title") || node.textContent),
    katex_fonts: Array.from(document.fonts)
        .filter((font) => font.family.includes("KaTeX") && font.status === "loaded").length,
    text: texts.join(" "),
  };
}"""


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"{CHROMIUM} not found: apt-get install chromium (Debian's package)"
    if os.environ.get("SUBLIM_TOY_SKIP_BROWSER") == "1" and not os.environ.get("CI"):
        pytest.skip(reason + "; skipped because SUBLIM_TOY_SKIP_BROWSER=1")
    pytest.fail(reason + ", or set SUBLIM_TOY_SKIP_BROWSER=1 to skip this test outside CI")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `make docs` builds it (strict, offline), in a fresh directory."""
    out = tmp_path_factory.mktemp("docs-site") / "site"
    if shutil.which("make") is None:
        pytest.fail("make not found")
    done = subprocess.run(
        ["make", "--no-print-directory", "docs", f"DOCS_OUT={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"make docs failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    """The site over HTTP on a free localhost port."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(chromium_path):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def visit(browser, server):
    """Open one page in a fresh context; return what happened on the way."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    log = {"external": [], "failed": [], "console_errors": [], "bad_status": []}

    def route(route):
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            log["external"].append(route.request.url)
            route.abort()

    context.route("**/*", route)

    def open_page(path: str):
        page = context.new_page()

        def on_console(message):
            if message.type == "error":
                log["console_errors"].append(message.text)

        def on_request_failed(request):
            if urlsplit(request.url).hostname in LOCAL_HOSTS:  # others are aborted by route
                log["failed"].append(f"{request.url} {request.failure}")

        def on_response(response):
            if response.status >= 400:
                log["bad_status"].append(f"{response.status} {response.url}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: log["console_errors"].append(str(error)))
        page.on("requestfailed", on_request_failed)
        page.on("response", on_response)
        response = page.goto(server + path, wait_until="load")
        return page, response, log

    yield open_page
    context.close()


def test_every_built_page_is_checked(site):
    built = {str(path.relative_to(site)) for path in site.rglob("*.html")}
    built = {page for page in built if not page.startswith(".")}
    assert built == set(PAGES), "pages built but not checked, or expected but not built"


def test_no_file_of_the_site_loads_from_another_host(site):
    """No script, stylesheet, font or image address of another host anywhere in the output."""
    remote_html = re.compile(
        r"<(?:script|link|img|iframe|source|video|audio|embed)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//"
    )
    remote_css = re.compile(r"(?:url\(\s*[\"']?|@import\s+[\"'])(?:https?:)?//")
    offenders = [
        str(path.relative_to(site))
        for path in site.rglob("*")
        if (path.suffix == ".html" and remote_html.search(path.read_text()))
        or (path.suffix == ".css" and remote_css.search(path.read_text()))
    ]
    assert not offenders, f"remote assets referenced by {offenders}"


@pytest.mark.parametrize("path", PAGES)
def test_page_in_chromium(visit, path):
    page, response, log = visit(path)
    assert response is not None and response.status == 200, path
    if path == "index.html":  # the root only redirects to docs/index.html
        page.wait_for_url("**/docs/index.html")
        page.wait_for_load_state("load")
    seen = page.evaluate(INSPECT)

    assert not log["external"], f"requests left the machine: {log['external']}"
    assert not log["failed"], f"failed requests: {log['failed']}"
    assert not log["bad_status"], f"HTTP errors: {log['bad_status']}"
    assert not log["console_errors"], f"console errors: {log['console_errors']}"
    assert not seen["broken_images"], f"images that did not load: {seen['broken_images']}"
    assert not seen["katex_errors"], f"KaTeX could not typeset: {seen['katex_errors'][:5]}"
    for raw in ("$$", "\\(", "\\["):
        assert raw not in seen["text"], f"untypeset math ({raw!r}) left on {path}"
    leftover = RAW_INLINE_MATH.search(seen["text"])
    assert leftover is None, f"untypeset math left on {path}: {leftover.group(0)!r}"
    if path in MATH_PAGES:
        assert seen["katex"] >= MATH_PAGES[path], f"only {seen['katex']} formulas on {path}"
    if seen["katex"]:
        assert seen["katex_fonts"] > 0, "KaTeX's fonts did not load from the site"

    for name, shot in SCREENSHOTS.items():
        if path == shot:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / f"{name}.png")
