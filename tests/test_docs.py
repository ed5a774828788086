"""The README and the docs pages keep up with the code; their examples run as written."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

import aio_websocket_pool
from aio_websocket_pool import TRANSITIONS, Edge, WebsocketConnectionPool

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
REFERENCE = (ROOT / "docs" / "reference.md").read_text()
DEBUGGING = (ROOT / "docs" / "debugging.md").read_text()
MULTIPLEXING = (ROOT / "docs" / "multiplexing.md").read_text()
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: Link targets in Markdown: inline ``[text](target)``, reference ``[name]: target``, and HTML.
#: Words about how the project was made rather than about the project: a reader has no
#: issue tracker entry "4", no session, no helper and no lead to look up. (pytest's
#: ``"session"`` scope, quoted as code, is not a process word.)
PROCESS_WORDS = re.compile(
    r"\bissues? #?\d|\bthe issue's\b|\bstops? \d|\bhelpers?\b|\bthe lead\b"
    r"""|(?<!["`])\bsessions?\b(?!["`])"""
    r"|\bthe brief\b",
    re.IGNORECASE,
)
LINK_TARGET = re.compile(r"\]\((?P<inline>[^)\s]+)[^)]*\)|^\[[^\]]+\]:\s*(?P<ref>\S+)"
                         r"|\b(?:href|src)=[\"'](?P<html>[^\"']+)", re.MULTILINE)  # fmt: skip
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


def _python_block(markdown: str, containing: str) -> str:
    blocks: list[str] = [
        b for b in re.findall(r"```python\n(.*?)```", markdown, re.DOTALL) if containing in b
    ]
    assert len(blocks) == 1, f"one python block with {containing!r}"
    return blocks[0]


def test_multiplexing_page_json_rpc_example_runs_as_written() -> None:
    """The page's JSON-RPC example, in a fresh interpreter, against the embedded server."""
    example = _python_block(MULTIPLEXING, "pool.json_rpc(")
    ran = subprocess.run(  # noqa: S603  (our own docs, in our interpreter)
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "block 0x0, then a new head: {'number': '0x1'}\n"


async def graphql_operations(conn: ServerConnection) -> None:
    """A graphql-transport-ws style server: a ``next`` with the operation's id, a ``complete``."""
    async for message in conn:
        operation = json.loads(message)
        if operation["type"] == "subscribe":
            await conn.send(json.dumps({"type": "ka"}))  # a keep-alive: no operation's
            data = {"hero": {"name": "R2-D2"}}
            await conn.send(json.dumps({"id": operation["id"], "type": "next",
                                        "payload": {"data": data}}))  # fmt: skip
            await conn.send(json.dumps({"id": operation["id"], "type": "complete"}))


async def test_multiplexing_page_graphql_example_runs_against_a_graphql_style_server() -> None:
    example = _python_block(MULTIPLEXING, "pool.multiplexed(")
    source = f"async def example(pool):\n{textwrap.indent(example, '    ')}\n    return hero\n"
    namespace: dict[str, object] = {}
    exec(compile(source, "docs/multiplexing.md", "exec"), namespace)  # noqa: S102  (our docs)
    async with (
        serve(graphql_operations, "127.0.0.1", 0) as server,
        WebsocketConnectionPool(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/") as pool,
    ):
        assert await namespace["example"](pool) == "R2-D2"  # type: ignore[operator]
        assert pool.stats().multiplexed == 0  # given back when the example's block ended


def _links(markdown: str) -> list[str]:
    return [next(group for group in m.groups() if group) for m in LINK_TARGET.finditer(markdown)]


def test_readme_links_work_on_a_package_index_page() -> None:
    """The index shows the README without the repository around it: a relative link is dead."""
    links = _links(README)
    assert links
    relative = [link for link in links if not link.startswith("https://")]
    assert not relative, relative


def test_readme_links_into_the_repository_name_files_that_exist() -> None:
    source = PROJECT["urls"]["Source"]
    assert set(PROJECT["urls"]) >= {"Homepage", "Documentation", "Source", "Issues"}
    ours = [link for link in _links(README) if link.startswith(source)]
    assert ours  # the docs, the diagrams, the migration table
    for link in ours:
        path = re.sub(r"^/(?:blob|tree)/main/", "", link.removeprefix(source)).split("#")[0]
        assert (ROOT / path).exists(), link
    github = {link.split("/")[3] for link in _links(README) if "//github.com/" in link}
    assert github <= {"pytransitions", source.split("/")[3]}  # one repository URL, not two


def test_readme_install_section_does_not_install_0_1_0() -> None:
    section = README.split("## Install\n", 1)[1].split("\n## ", 1)[0]
    assert f"git+{PROJECT['urls']['Source']}" in section
    assert "pip install .  " in section
    assert "pip wheel --no-deps -w dist ." in section
    assert "\npip install aio-websocket-pool\n" not in section


@pytest.mark.parametrize(
    "page",
    ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))],
)
def test_docs_speak_of_the_project_only(page: str) -> None:
    text = (ROOT / page).read_text()
    found = [
        f"line {text.count(chr(10), 0, match.start()) + 1}: {match[0]!r}"
        for match in PROCESS_WORDS.finditer(text)
    ]
    assert not found, found
