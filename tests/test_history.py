"""History logs: the pool's view, the JSON-lines export, the readable line, no secrets.

Every test drives real connections to the loopback server and checks what a
person debugging after the fact would read: ``pool.history`` (closed
connections included), the file ``write_history_jsonl`` and the demo's
``--history`` write, the one-line text of each record in reprs and in the
DEBUG log.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime
from pathlib import Path

import pytest

from aio_websocket_pool import TRANSITIONS, State, TransitionRecord, write_history_jsonl
from aio_websocket_pool.__main__ import main
from helpers import pool_maker, pooled, round_trip
from loopback import LoopbackServer

make_pool = pool_maker(max_connections=2, health_check_interval=None)
FIELDS = ["time", "connection_id", "trigger", "source", "dest", "reason"]
EDGES = {(edge.trigger, source, edge.dest) for edge in TRANSITIONS for source in edge.sources}


def parsed(lines: str) -> list[dict[str, str | None]]:
    """JSON lines back into dicts, checking that every line has exactly the record's fields."""
    records = [json.loads(line) for line in lines.splitlines()]
    assert all(list(record) == FIELDS for record in records)
    return records


# -- one record -------------------------------------------------------------------------------


def test_a_record_as_json_keeps_every_field() -> None:
    record = TransitionRecord(
        1_700_000_000.123456, "conn-3", "close", State.IDLE, State.CLOSED, "idle for too long"
    )
    line = record.to_json()
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2023-11-14T22:13:20.123456+00:00",
        "connection_id": "conn-3",
        "trigger": "close",
        "source": "idle",
        "dest": "closed",
        "reason": "idle for too long",
    }
    assert datetime.fromisoformat(json.loads(line)["time"]).timestamp() == record.at


def test_a_record_without_a_reason_has_a_null_one() -> None:
    record = TransitionRecord(0.0, "conn-1", "open", State.CONNECTING, State.IDLE)
    assert json.loads(record.to_json())["reason"] is None


def test_repr_of_a_record_and_of_a_history_is_the_readable_line() -> None:
    record = TransitionRecord(0.0, "conn-1", "open", State.CONNECTING, State.IDLE)
    assert repr(record) == "<TransitionRecord 1970-01-01T00:00:00.000+00:00 conn-1 open: " \
        "connecting -> idle>"  # fmt: skip
    assert repr((record,)) == f"({record!r},)"  # what printing conn.history shows


# -- the pool's history -----------------------------------------------------------------------


async def test_pool_history_keeps_closed_connections_in_order(server: LoopbackServer) -> None:
    async with make_pool(server) as pool:
        async with pool.get_connection() as first:
            await round_trip(first, "hello")
        await server.close_connections(1001)
        async with pool.get_connection() as second:  # the dead one is replaced
            await round_trip(second, "again")
        assert pooled(first).is_closed
        assert pooled(first) not in pool.connections
        history = pool.history
    moves = [(r.connection_id, r.trigger, r.reason) for r in history]
    assert moves == [
        (first.id, "open", None),
        (first.id, "acquire", None),
        (first.id, "release", None),
        (first.id, "close", "closed by peer: close code 1001"),
        (second.id, "open", None),
        (second.id, "acquire", None),
        (second.id, "release", None),
    ]
    assert [r.at for r in history] == sorted(r.at for r in history)
    after_close = pool.history
    assert after_close[: len(history)] == history
    assert after_close[len(history) :] == (pooled(second).history[-1],)
    assert pooled(second).history[-1].reason == "pool closed"


async def test_pool_history_is_bounded_by_history_size_times_max_connections(
    server: LoopbackServer,
) -> None:
    async with make_pool(server, history_size=2, max_connections=2) as pool:
        for n in range(5):
            async with pool.get_new_connection() as conn:  # a new connection each time
                await round_trip(conn, f"message {n}")
        history = pool.history
    assert len(history) == 4  # 2 x 2, out of 5 x 4 transitions
    assert [r.trigger for r in history] == ["close", "open", "acquire", "release"]
    # The newest are kept, the oldest dropped; the pool closed the last one since.
    assert pooled(conn).history[0] == history[-1]
    assert pooled(conn).history[1].reason == "pool closed"


# -- export -----------------------------------------------------------------------------------


async def test_history_exports_as_json_lines_to_a_path_and_a_stream(
    server: LoopbackServer, tmp_path: Path
) -> None:
    async with make_pool(server) as pool, pool.get_connection() as conn:
        await round_trip(conn, "hello")
    path = tmp_path / "history.jsonl"
    assert write_history_jsonl(pool.history, path) == len(pool.history) == 4
    stream = io.StringIO()
    assert write_history_jsonl(pooled(conn).history, stream) == 4
    assert path.read_text(encoding="utf-8") == stream.getvalue()
    records = parsed(stream.getvalue())
    assert [(r["trigger"], r["source"], r["dest"]) for r in records] == [
        ("open", "connecting", "idle"),
        ("acquire", "idle", "busy"),
        ("release", "busy", "idle"),
        ("close", "idle", "closed"),
    ]
    assert records[-1]["reason"] == "pool closed"
    assert {r["connection_id"] for r in records} == {conn.id}


def test_an_empty_history_writes_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    assert write_history_jsonl((), path) == 0
    assert path.read_text() == ""


def test_the_demo_writes_its_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo.jsonl"
    demo = ["demo", "--tasks", "4", "--requests", "2", "--connections", "2"]
    assert main([*demo, "--history", str(path)]) == 0
    records = parsed(path.read_text(encoding="utf-8"))
    assert f"{len(records)} transitions written to {path}" in capsys.readouterr().out
    assert all((r["trigger"], r["source"], r["dest"]) in EDGES for r in records)
    assert any(r["reason"] == "closed by peer: close code 1001" for r in records)
    assert records[-1]["reason"] == "pool closed"
    assert "demo-secret" not in path.read_text(encoding="utf-8")


# -- the readable line in the DEBUG log ---------------------------------------------------------


async def test_debug_log_has_one_readable_line_per_transition(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aio_websocket_pool")
    async with make_pool(server) as pool, pool.get_connection() as conn:
        await round_trip(conn, "hello")
    logged = [r.getMessage() for r in caplog.records if r.name == "aio_websocket_pool"]
    assert logged == [str(record) for record in pool.history]
    assert logged[0].endswith(f" {conn.id} open: connecting -> idle")
    assert logged[-1].endswith(f" {conn.id} close: idle -> closed (pool closed)")


# -- no secrets -------------------------------------------------------------------------------


async def test_history_holds_no_secret_nor_payload(server: LoopbackServer) -> None:
    secrets = ("pw-SECRET", "token-SECRET", "header-SECRET", "payload-SECRET", "alice")
    uri = f"ws://alice:pw-SECRET@127.0.0.1:{server.port}/path?token=token-SECRET"
    pool = make_pool(uri, headers={"Authorization": "Bearer header-SECRET"}, max_retries=1)
    async with pool:
        async with pool.get_connection() as conn:
            await round_trip(conn, "payload-SECRET")
        server.refuse(1, 401)
        with pytest.raises(Exception, match="401"):
            await pool.acquire_new()
        async with pool.get_connection() as conn:
            await server.close_connections(1011)
            with pytest.raises(Exception, match="1011"):
                await conn.recv()
    stream = io.StringIO()
    write_history_jsonl(pool.history, stream)
    triggers = {record.trigger for record in pool.history}
    assert triggers == {"open", "acquire", "release", "fail", "close"}  # failures included
    texts = [stream.getvalue(), *map(str, pool.history), repr(pool.history)]
    assert not [secret for secret in secrets for text in texts if secret in text]
