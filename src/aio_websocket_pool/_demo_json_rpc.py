"""The ``--json-rpc`` demo: many calls and a subscription over two multiplexed connections.

Against the embedded JSON-RPC server of :mod:`aio_websocket_pool.testing`, on
loopback: concurrent calls come back out of order, an error is raised typed, and a
subscription is sent again after the server drops every connection, with the
gap it left recorded.
"""

from __future__ import annotations

import asyncio
import time

from ._exceptions import JsonRpcError
from ._pool import WebsocketConnectionPool
from .testing import JsonRpcServer


async def run_json_rpc_demo(calls: int = 200) -> str:
    """Run the demo and return its report."""
    lines = []
    async with (
        JsonRpcServer().running() as server,
        WebsocketConnectionPool(server.uri) as pool,
        pool.json_rpc(connections=2) as rpc,
    ):
        started = time.perf_counter()
        results = await asyncio.gather(*(rpc.call("echo", [n]) for n in range(calls)))
        elapsed = time.perf_counter() - started
        assert [result[0] for result in results] == list(range(calls))  # noqa: S101
        lines.append(f"{calls} concurrent calls over 2 connections in {elapsed * 1000:.1f} ms")
        slow, quick = await asyncio.gather(
            rpc.call("sleep", [0.05, "slow"]), rpc.call("sleep", [0, "quick"])
        )
        lines.append(f"out of order: {quick!r} came first, then {slow!r}")
        try:
            await rpc.call("fail", [-32601, "method not found", None])
        except JsonRpcError as exc:
            lines.append(f"an error reply raised JsonRpcError: code {exc.code}, {exc.message!r}")
        async with rpc.subscribe("subscribe", ["heads"], unsubscribe="unsubscribe") as heads:
            await server.notify({"head": 1})
            first = await anext(heads)
            await server.close_connections()  # the server drops every connection
            while not heads.gaps:  # noqa: ASYNC110  (a subscription has no event for it)
                await asyncio.sleep(0.01)
            await server.notify({"head": 2})
            second = await anext(heads)
            lost_at, restored_at = heads.gaps[0]
            lines.append(
                f"subscription: {first} then, after a reconnect, {second}; "
                f"resubscribed in {(restored_at - lost_at) * 1000:.1f} ms"
            )
        lines.append(f"pool: {pool.stats()}")
        lines.append(f"multiplexer: {rpc.stats()}")
    return "\n".join(lines)
