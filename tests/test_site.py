"""The documentation site builds in strict mode, loads nothing from the network, and
its state machine page really draws the diagram.

The site is built once per session with ``mkdocs build --strict`` (a broken link,
a missing page or a failing hook fails it). The state machine page is then served
on 127.0.0.1 and opened in headless Chromium, from a probe page that holds it in
an iframe and measures it: the diagram must be an SVG element in the page, laid
out at a real size, with the five states drawn where a reader would see them. A
broken image, an ``<img>`` whose file is missing, or SVG source shown as text all
fail that.
"""

from __future__ import annotations

import functools
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

from aio_websocket_pool import TRANSITIONS, State

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
    svg.scrollIntoView();
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
    html = (site / "state-machine" / "index.html").read_text(encoding="utf-8")
    for edge in TRANSITIONS:
        row = (
            f"<td><code>{edge.trigger}</code></td>\n<td>{', '.join(edge.sources)}</td>\n"
            f"<td>{edge.dest}</td>\n<td>{edge.cause}</td>"
        )
        assert row in html, edge.trigger
    assert "stateDiagram-v2" in html
    assert "<!-- generated:" not in html  # every marker was replaced
    assert "mermaid.min.js" not in html


def test_api_reference_shows_names_not_sphinx_roles(site: Path) -> None:
    html = (site / "reference" / "index.html").read_text(encoding="utf-8")
    # :attr:`~WebsocketConnection.history` in render_connection_diagram's docstring:
    assert "Its <code>history</code> tells the longer story" in html
    assert not re.search(r":[a-z]+:<code>", html)


def test_pages_taken_from_the_readme_have_its_content(site: Path) -> None:
    migration = (site / "migration" / "index.html").read_text(encoding="utf-8")
    assert "<code>acquire_timeout=0</code> restores the old behaviour" in migration
    start = (site / "index.html").read_text(encoding="utf-8")
    assert "WebsocketConnectionPool" in start
    assert "--8&lt;--" not in migration + start  # no snippet marker left unexpanded


def test_chromium_draws_the_state_diagram(served: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium is not None, (
        "the docs test needs Chromium: `bash scripts/dev check` installs it "
        "(apt-get install chromium)"
    )
    opened = subprocess.run(  # noqa: S603  (the system's chromium, our own loopback URL)
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"{served}/probe.html",
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr[-2000:]
    found = re.search(r'<pre id="result">(.*?)</pre>', opened.stdout, re.DOTALL)
    assert found is not None, opened.stdout[-2000:]
    assert found[1] != "not measured", "the probe did not run"
    result = json.loads(found[1])
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
