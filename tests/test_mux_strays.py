"""Messages nobody asked for (``_mux_strays``): counted, given to ``on_unsolicited``."""

from __future__ import annotations

import asyncio
import json

import pytest

from aio_websocket_pool import WebsocketConnection
from aio_websocket_pool.testing import LoopbackServer
from helpers import Unsolicited
from muxing import pool_for, tag


async def test_unmatched_messages_go_to_on_unsolicited_and_the_reader_goes_on(
    server: LoopbackServer,
) -> None:
    on_unsolicited = Unsolicited()
    seen = on_unsolicited.messages

    async with (
        pool_for(server.uri, on_unsolicited=on_unsolicited) as pool,
        pool.multiplexed(key=tag) as mux,
    ):
        await server.push("stray: not JSON")
        await server.push(json.dumps({"tag": "nobody's"}))
        assert json.loads(await mux.request(json.dumps({"tag": 5}), key=5)) == {"tag": 5}
        await asyncio.sleep(0.02)
        assert mux.stats().unmatched == 2
    assert seen == ["stray: not JSON", json.dumps({"tag": "nobody's"})]


async def test_a_failing_on_unsolicited_is_reported_and_the_multiplexer_goes_on(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str | bytes] = []

    async def on_unsolicited(conn: WebsocketConnection, message: str | bytes) -> None:
        calls.append(message)
        raise ValueError("the hook broke")

    async with (
        pool_for(server.uri, on_unsolicited=on_unsolicited) as pool,
        pool.multiplexed(key=tag) as mux,
    ):
        for n in range(2):
            await server.push(f"stray {n}")
        async with asyncio.timeout(1.0):
            while len(calls) < 2:  # noqa: ASYNC110  (the hook's calls have no event)
                await asyncio.sleep(0.005)
        assert json.loads(await mux.request(json.dumps({"tag": 1}), key=1)) == {"tag": 1}
        assert (mux.stats().unmatched, mux.stats().connections) == (2, 1)
    assert calls == ["stray 0", "stray 1"]
    assert "the hook broke" in caplog.text


async def test_strays_waiting_for_a_slow_hook_are_bounded(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One message in the hook and UNDELIVERED_KEPT waiting, at most: the rest counted, dropped."""
    monkeypatch.setattr("aio_websocket_pool._mux_strays.UNDELIVERED_KEPT", 2)
    release = asyncio.Event()
    seen: list[str | bytes] = []

    async def on_unsolicited(conn: WebsocketConnection, message: str | bytes) -> None:
        seen.append(message)
        await release.wait()

    async with (
        pool_for(server.uri, on_unsolicited=on_unsolicited, hook_timeout=5.0) as pool,
        pool.multiplexed(key=tag) as mux,
    ):
        for n in range(6):
            await server.push(f"stray {n}")
        assert json.loads(await mux.request(json.dumps({"tag": 1}), key=1)) == {"tag": 1}
        assert mux.stats().unmatched == 6  # every one counted, the reader never waited
        release.set()
        await asyncio.sleep(0.02)
    assert 1 <= len(seen) <= 3
    assert seen == [f"stray {n}" for n in range(len(seen))]
