"""The documentation site builds in strict mode, loads nothing from the network, and
its state machine page really draws the diagram.

The site is built once per session with ``mkdocs build --strict`` (a broken link,
a missing page or a failing hook fails it). The state machine page is then served
on 127.0.0.1 and opened in headless Chromium, from a probe page that holds it in
an iframe and measures it: the diagram must be an SVG element in the page, laid
out at a real size, with the five states drawn where a reader would see them. A
broken image, an ``<img>`` whose file is missing, or SVG source shown as text all
fail that.

Every page is then laid out at 1280 px (a laptop) and 390 px (a phone) and
measured: nothing may stick out of the content column unless it sits in a
container that scrolls sideways (wide code blocks and tables), and the nine
columns of the benchmark table must fit the column at 1280 px. The performance
page is also photographed at both widths, scrolled to that table (PNGs in the
test's temporary directory, to look at).
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aio_websocket_pool import (
    REQUEST_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    TRANSITIONS,
    Edge,
    State,
    WebsocketConnectionPool,
)

ROOT = Path(__file__).resolve().parent.parent
#: Seconds the docs build and the browser may take (each takes a few).
BUILD_TIMEOUT = 120.0
BROWSER_TIMEOUT = 60.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",  # let the probe's load handler run before the DOM is dumped
)
#: A tag that would make a reader's browser fetch something from another host.
REMOTE_RESOURCE = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*\"", re.IGNORECASE
)
PROBE = """<!doctype html>
<html><body>
<iframe src="/state-machine/" width="1280" height="4000"></iframe>
<pre id="result">not measured</pre>
<script>
window.addEventListener("load", () => {
  const page = document.querySelector("iframe").contentDocument;
  const svg = page.querySelector(".state-diagram svg");
  const result = {svg: svg !== null, nodes: []};
  if (svg !== null) {
    svg.scrollIntoView({block: "center"});  // not under the sticky header
    const box = svg.getBoundingClientRect();
    result.width = box.width;
    result.height = box.height;
    for (const node of svg.querySelectorAll("g.node")) {
      const area = node.getBoundingClientRect();
      const hit = page.elementFromPoint(area.x + area.width / 2, area.y + area.height / 2);
      result.nodes.push({
        name: node.querySelector("title").textContent,
        text: node.querySelector("text") ? node.querySelector("text").textContent : "",
        width: area.width,
        height: area.height,
        visible: hit !== null && svg.contains(hit),
      });
    }
  }
  document.getElementById("result").textContent = JSON.stringify(result);
});
</script>
</body></html>
"""

#: Widths the pages are laid out at: a laptop's screen and a phone's.
WIDTHS = (1280, 390)
#: Lays out each page of __PAGES__ at each of __WIDTHS__ in an iframe and measures it.
LAYOUT_PROBE = """<!doctype html>
<html><body>
<pre id="result">not measured</pre>
<script>
const pages = __PAGES__, widths = __WIDTHS__;
const scrolls = (element) =>
  ["auto", "scroll"].includes(getComputedStyle(element).overflowX);
// An element may be wider than the content column if a container inside the
// column scrolls it into view; an element that hides what it cannot show cuts it.
function stickingOut(page, column) {
  const right = column.getBoundingClientRect().right + 1;
  const found = [];
  for (const element of column.querySelectorAll("*")) {
    const view = page.defaultView;
    const style = view.getComputedStyle(element);
    const what = `${element.tagName.toLowerCase()} "${element.textContent.trim().slice(0, 40)}"`;
    if (element.clientWidth > 0 && element.scrollWidth > element.clientWidth + 1
        && !["auto", "scroll", "visible"].includes(style.overflowX)) {
      found.push(`cut: ${what}`);
    }
    if (element.getBoundingClientRect().right <= right) continue;
    let scroller = element.parentElement;
    while (scroller !== column
           && !(["auto", "scroll"].includes(view.getComputedStyle(scroller).overflowX)
                && scroller.getBoundingClientRect().right <= right)) {
      scroller = scroller.parentElement;
    }
    if (scroller === column) found.push(`sticks out: ${what}`);
  }
  return found;
}
function benchmarkTable(page, column) {
  const table = page.querySelector(".benchmark-table table");
  if (table === null) return null;
  const article = page.querySelector("article");
  const style = page.defaultView.getComputedStyle(article);
  const wrapper = table.closest(".md-typeset__scrollwrap");
  const result = {
    columns: table.rows[0].cells.length,
    width: table.getBoundingClientRect().width,
    room: article.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
    scrolls: wrapper !== null && page.defaultView.getComputedStyle(wrapper).overflowX === "auto",
  };
  if (wrapper !== null) {
    wrapper.scrollLeft = wrapper.scrollWidth;  // the verdicts in view: is the workload too?
    const first = table.rows[1].cells[0].getBoundingClientRect();
    const box = wrapper.getBoundingClientRect();
    result.first_column_in_view = first.left >= box.left - 1 && first.right <= box.right + 1;
    result.scrolled = wrapper.scrollLeft;
  }
  return result;
}
async function measure() {
  const result = {};
  for (const width of widths) {
    for (const path of pages) {
      const frame = document.createElement("iframe");
      frame.width = width;
      frame.height = 900;
      await new Promise((loaded) => {
        frame.onload = loaded;
        frame.src = path;
        document.body.append(frame);
      });
      await new Promise((laidOut) => setTimeout(laidOut, 100));  // Material's scripts
      const page = frame.contentDocument;
      const column = page.querySelector(".md-content");
      result[`${width} ${path}`] = {
        content_width: column.getBoundingClientRect().width,
        sticking_out: stickingOut(page, column),
        benchmark_table: benchmarkTable(page, column),
      };
      frame.remove();
    }
  }
  document.getElementById("result").textContent = JSON.stringify(result);
}
window.addEventListener("load", measure);
</script>
</body></html>
"""
#: Shows the performance page at the window's width, scrolled to the benchmark table.
SCREENSHOT_PROBE = """<!doctype html>
<html><body style="margin: 0">
<iframe src="/performance/" style="border: 0; width: 100vw; height: 100vh"></iframe>
<script>
const frame = document.querySelector("iframe");
frame.addEventListener("load", () => {
  const table = frame.contentDocument.querySelector(".benchmark-table");
  const header = frame.contentDocument.querySelector(".md-header").offsetHeight;
  frame.contentWindow.scrollTo(0, table.getBoundingClientRect().top - header - 20);
});
</script>
</body></html>
"""

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + BROWSER_TIMEOUT)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation, built with ``mkdocs build --strict`` into a temporary directory."""
    site_dir = tmp_path_factory.mktemp("site")
    built = subprocess.run(  # noqa: S603  (this interpreter, mkdocs from the project's venv)
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr}"
    return site_dir


@pytest.fixture
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1 (port 0), with the probe page beside it."""
    (site / "probe.html").write_text(PROBE, encoding="utf-8")
    pages = sorted(
        "/" + str(page.parent.relative_to(site)).removeprefix(".") + "/"
        for page in site.glob("**/index.html")
    )
    layout = LAYOUT_PROBE.replace("__PAGES__", json.dumps(pages).replace("//", "/"))
    layout = layout.replace("__WIDTHS__", json.dumps(WIDTHS))
    (site / "layout-probe.html").write_text(layout, encoding="utf-8")
    (site / "screenshot-probe.html").write_text(SCREENSHOT_PROBE, encoding="utf-8")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # the test's output is the browser's verdict, not an access log

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, name="docs server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=BROWSER_TIMEOUT)


def test_every_page_is_built(site: Path) -> None:
    for page in ("", "configuration", "state-machine", "debugging", "migration", "reference"):
        assert (site / page / "index.html").is_file(), page


def test_no_page_loads_anything_from_the_network(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not REMOTE_RESOURCE.findall(html), page.relative_to(site)
        assert "fonts.googleapis" not in html, page.relative_to(site)
    for stylesheet in site.rglob("*.css"):
        css = stylesheet.read_text(encoding="utf-8")
        assert not re.search(r"url\((['\"]?)(?:https?:)?//", css), stylesheet.relative_to(site)


def test_state_machine_page_has_the_generated_table_and_mermaid_source(site: Path) -> None:
    """The connection's table and the multiplexer's two, each row as the machine has it."""
    page = (site / "state-machine" / "index.html").read_text(encoding="utf-8")
    edges: list[Edge[Any]] = [*TRANSITIONS, *REQUEST_TRANSITIONS, *SUBSCRIPTION_TRANSITIONS]
    for edge in edges:
        sources = ", ".join(str(source) for source in edge.sources)
        row = (
            f"<td><code>{edge.trigger}</code></td>\n<td>{sources}</td>\n"
            f"<td>{edge.dest}</td>\n<td>{html.escape(edge.cause, quote=False)}</td>"
        )
        assert row in page, edge
    assert "stateDiagram-v2" in page
    assert "<!-- generated:" not in page  # every marker was replaced
    assert "mermaid.min.js" not in page


def test_api_reference_shows_names_not_sphinx_roles(site: Path) -> None:
    html = (site / "reference" / "index.html").read_text(encoding="utf-8")
    # :attr:`~WebsocketConnection.history` in render_connection_diagram's docstring:
    assert "Its <code>history</code> tells the longer story" in html
    assert not re.search(r":[a-z]+:<code>", html)


def test_api_reference_shows_defaults_as_values_not_constant_names(site: Path) -> None:
    page = (site / "reference" / "index.html").read_text(encoding="utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert not re.search(r"default: [A-Z][A-Z0-9_]{2,}", text)  # DEFAULT_HISTORY_SIZE, ...
    signature = inspect.signature(WebsocketConnectionPool)
    shown = [name for name, p in signature.parameters.items() if isinstance(p.default, int | float)]
    assert {"history_size", "drain_max_bytes", "drain_max_messages"} <= set(shown)
    for name in shown:
        default = re.escape(repr(signature.parameters[name].default))
        assert re.search(rf"\b{name} \([^()]*\bdefault: {default} \)", text), name


def test_pages_taken_from_the_readme_have_its_content(site: Path) -> None:
    migration = (site / "migration" / "index.html").read_text(encoding="utf-8")
    assert "<code>acquire_timeout=0</code> restores the old behaviour" in migration
    start = (site / "index.html").read_text(encoding="utf-8")
    assert "WebsocketConnectionPool" in start
    assert "--8&lt;--" not in migration + start  # no snippet marker left unexpanded


def _chromium(tmp_path: Path, url: str, *options: str) -> str:
    """What headless Chromium prints for ``url`` with ``options`` (``--dump-dom``: the DOM)."""
    chromium = shutil.which("chromium")
    assert chromium is not None, (
        "the docs test needs Chromium: `bash scripts/dev check` installs it "
        "(apt-get install chromium)"
    )
    opened = subprocess.run(  # noqa: S603  (the system's chromium, our own loopback URL)
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *options, url],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr[-2000:]
    return opened.stdout


def _probe(tmp_path: Path, url: str) -> Any:
    """The JSON a probe page wrote into its ``<pre id="result">``, once it ran."""
    dom = _chromium(tmp_path, url, "--dump-dom")
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, dom[-2000:]
    assert found[1] != "not measured", "the probe did not run"
    return json.loads(html.unescape(found[1]))


def _nav_pages() -> list[str]:
    """The pages the site's nav lists, from ``mkdocs.yml``."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:\n", 1)[1]
    return re.findall(r"^  - [^:]+: (\S+\.md)$", nav.split("\n\n", 1)[0], re.MULTILINE)


def test_chromium_draws_the_state_diagram(served: str, tmp_path: Path) -> None:
    result = _probe(tmp_path, f"{served}/probe.html")
    assert result["svg"], "no <svg> element in the state machine page"
    assert result["width"] > 300
    assert result["height"] > 100
    drawn = {node["name"]: node for node in result["nodes"]}
    for state in State:
        node = drawn.get(state.value)
        assert node is not None, f"state {state} is not in the diagram"
        assert node["text"] == state.value
        assert node["width"] > 20
        assert node["height"] > 10
        assert node["visible"], f"state {state} is not where a reader would see it"


def test_every_page_fits_a_laptop_and_a_phone(served: str, tmp_path: Path) -> None:
    layout = _probe(tmp_path, f"{served}/layout-probe.html")
    assert len(layout) == len(WIDTHS) * len(_nav_pages())
    for page, measured in layout.items():
        assert measured["content_width"] > 300, page
        assert measured["sticking_out"] == [], page
    for width in WIDTHS:
        table = layout[f"{width} /performance/"]["benchmark_table"]
        assert table is not None, "no .benchmark-table on the performance page"
        assert table["columns"] == 9
        assert table["scrolls"], "the table sits in no container that scrolls sideways"
        if width >= 1280:
            assert table["width"] <= table["room"], "a column is hidden behind a scroll"
        else:
            assert table["scrolled"] > 0  # on a phone it does scroll
            assert table["first_column_in_view"], "scrolled, the workload names are gone"


@pytest.mark.parametrize("width", WIDTHS)
def test_performance_page_screenshot(served: str, tmp_path: Path, width: int) -> None:
    shot = tmp_path / f"performance-{width}.png"
    _chromium(tmp_path, f"{served}/screenshot-probe.html", f"--window-size={width},1200",
              "--hide-scrollbars", f"--screenshot={shot}")  # fmt: skip
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == width  # the IHDR's width
    assert len(png) > 20_000, "a blank page"  # a drawn table compresses far less
