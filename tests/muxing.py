"""What the multiplexer's tests share: the key of an echoed request, and a pool to multiplex.

The echo servers answer a request with itself, so a request that carries its
key (``{"tag": ...}``) is its own reply: enough to match, time out, cancel
and lose requests against any server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable
from typing import Any

from aio_websocket_pool import JsonRpcClient, WebsocketConnectionPool


def tag(message: str | bytes) -> Hashable | None:
    """The key of an echoed request: its ``tag`` field (strays are not JSON: no key)."""
    return json.loads(message)["tag"]  # type: ignore[no-any-return]


def tagged(key: Hashable) -> str:
    """A request whose echo is its own reply, under ``key``."""
    return json.dumps({"tag": key})


def pool_for(uri: str, **kwargs: object) -> WebsocketConnectionPool:
    """A pool that fails fast (an acquire within a second) and cleans up often."""
    return WebsocketConnectionPool(uri, acquire_timeout=1.0, cleanup_interval=0.2, **kwargs)  # type: ignore[arg-type]


async def leave_behind_a_busy_call(
    rpc: JsonRpcClient, seconds: float
) -> tuple[asyncio.Task[Any], asyncio.Task[bool]]:
    """Subscribe, start a call of ``seconds`` that takes the only room, and leave the subscription.

    For a client of one connection with ``max_in_flight=1``: the unsubscribe
    waits in line behind the call. Returns the call (its result: ``"busy"``)
    and the leaving.
    """
    subscription = rpc.subscribe("subscribe", unsubscribe="unsubscribe")
    await subscription.__aenter__()
    call = asyncio.create_task(rpc.call("sleep", [seconds, "busy"]))
    await asyncio.sleep(0)  # sent first
    leaving = asyncio.create_task(subscription.__aexit__(None, None, None))
    async with asyncio.timeout(1.0):
        while rpc.stats().queued < 1:  # noqa: ASYNC110  (no event for it)
            await asyncio.sleep(0.005)
    return call, leaving
