"""MkDocs hook: writes the generated parts of the docs from the transition table.

A page asks for a part with a marker line, an HTML comment such as
``<!-- generated: transitions-table -->``. At build time the marker is
replaced by what the package generates from :data:`TRANSITIONS` right then,
so the published state machine cannot drift from the one the pool runs on:

* ``diagram-svg``: the SVG that Graphviz's ``dot`` draws from the DOT source,
  inlined in the page (no ``<img>``: the page then holds the drawing itself,
  and nothing is fetched to show it);
* ``diagram-mermaid``: the Mermaid source, as a code block (Mermaid's script
  is not loaded: the build machines and readers may have no network);
* ``transitions-table``: every edge, with what causes it.

A marker that names no known part fails the build.

The docstrings use Sphinx roles (``:meth:`start```), which mkdocstrings shows
as they are; :func:`on_page_content` drops the role and keeps the name, as
Sphinx would show it (``~a.b.C`` as ``C``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from aio_websocket_pool import (
    REQUEST_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    TRANSITIONS,
    Edge,
    render_diagram,
)
from aio_websocket_pool._diagram import Machine

MARKER = re.compile(r"^<!-- generated: (?P<part>[\w-]+) -->$", re.MULTILINE)
SPHINX_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):<code>(?:~[\w.]*\.)?")


def _svg(machine: Machine = "connection") -> str:
    svg = render_diagram("svg", machine=machine)
    # Inline SVG in HTML: the XML declaration, the doctype and dot's comments go.
    drawing = re.sub(r"<!--.*?-->\n?", "", svg[svg.index("<svg") :], flags=re.DOTALL)
    return f'<div class="state-diagram">\n{drawing.strip()}\n</div>'


def _mermaid() -> str:
    return f'```text title="state-diagrams/connection.mmd"\n{render_diagram("mermaid")}```'


def _table(table: tuple[Edge[Any], ...] = TRANSITIONS) -> str:
    rows = [
        f"| `{edge.trigger}` | {', '.join(edge.sources)} | {edge.dest} | {edge.cause} |"
        for edge in table
    ]
    return "\n".join(["| trigger | from | to | caused by |", "| --- | --- | --- | --- |", *rows])


PARTS: dict[str, Callable[[], str]] = {
    "diagram-svg": _svg,
    "diagram-mermaid": _mermaid,
    "transitions-table": _table,
    "request-diagram-svg": functools.partial(_svg, "request"),
    "request-transitions-table": functools.partial(_table, REQUEST_TRANSITIONS),
    "subscription-diagram-svg": functools.partial(_svg, "subscription"),
    "subscription-transitions-table": functools.partial(_table, SUBSCRIPTION_TRANSITIONS),
}


def _generate(match: re.Match[str]) -> str:
    part = match["part"]
    if part not in PARTS:
        raise ValueError(f"unknown generated part {part!r}; known: {', '.join(PARTS)}")
    return PARTS[part]()


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each marker line of a page by the part it names."""
    del kwargs  # page, config and files: the parts depend on the table only
    return MARKER.sub(_generate, markdown)


def on_page_content(html: str, **kwargs: Any) -> str:
    """Show a Sphinx cross-reference in a docstring as the name it refers to."""
    del kwargs
    return SPHINX_ROLE.sub("<code>", html)
