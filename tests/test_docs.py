"""The README and the configuration reference keep up with the code."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

import aio_websocket_pool
from aio_websocket_pool import TRANSITIONS, Edge, WebsocketConnectionPool

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
REFERENCE = (ROOT / "docs" / "reference.md").read_text()
DEBUGGING = (ROOT / "docs" / "debugging.md").read_text()
ARGUMENTS = [
    name
    for name, parameter in inspect.signature(WebsocketConnectionPool).parameters.items()
    if parameter.kind is not parameter.VAR_KEYWORD
]


@pytest.mark.parametrize("name", ARGUMENTS)
def test_every_constructor_argument_is_documented_with_its_default(name: str) -> None:
    default = inspect.signature(WebsocketConnectionPool).parameters[name].default
    shown = "required" if default is inspect.Parameter.empty else f"`{default!r}`"
    assert f"| `{name}` | {shown} |" in README
    assert f"### `{name}`" in CONFIGURATION


@pytest.mark.parametrize("edge", TRANSITIONS, ids=lambda edge: edge.trigger)
def test_readme_state_table_matches_the_machine(edge: Edge) -> None:
    sources = ", ".join(edge.sources)
    assert f"| `{edge.trigger}` | {sources} | {edge.dest} | {edge.cause} |" in README


def test_ci_runs_the_readme_test_command() -> None:
    assert "bash scripts/dev check" in README
    assert "bash scripts/dev check" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("name", aio_websocket_pool.__all__)
def test_api_reference_documents_every_export(name: str) -> None:
    assert f"::: aio_websocket_pool.{name}\n" in REFERENCE


def test_debugging_guide_example_is_a_real_history() -> None:
    """The captured JSON lines are records the pool can write, along edges of the table."""
    block = re.search(r'```json title="history.jsonl"\n(.*?)```', DEBUGGING, re.DOTALL)
    assert block is not None
    records = [json.loads(line) for line in block[1].splitlines()]
    assert len(records) >= 10
    edges = {(edge.trigger, source, edge.dest) for edge in TRANSITIONS for source in edge.sources}
    for record in records:
        assert list(record) == ["time", "connection_id", "trigger", "source", "dest", "reason"]
        assert (record["trigger"], record["source"], record["dest"]) in edges
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
