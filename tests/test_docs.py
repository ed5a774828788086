"""The README and the configuration reference keep up with the code."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from aio_websocket_pool import TRANSITIONS, Edge, WebsocketConnectionPool

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
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
    assert f"| `{edge.trigger}` | {sources} | {edge.dest} |" in README


def test_ci_runs_the_readme_test_command() -> None:
    assert "bash scripts/dev check" in README
    assert "bash scripts/dev check" in (ROOT / ".ci" / "run").read_text()
