"""The demo: many tasks share a small pool against an echo server on loopback.

It shows what the pool is for in a few seconds: tasks queue instead of
failing, connections are reused, a connection the server drops while idle is
replaced without any task noticing, and every connection's history says what
happened to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

from ._history import write_history_jsonl
from ._pool import WebsocketConnectionPool


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What the demo runs.

    Attributes:
        tasks: Concurrent tasks sharing the pool.
        requests: Request/reply round trips per task.
        connections: The pool's max_connections.
        reply_delay: Seconds the server takes to answer each request.
        history_file: Where to write the pool's history as JSON lines, if anywhere.
    """

    tasks: int = 40
    requests: int = 5
    connections: int = 4
    reply_delay: float = 0.002
    history_file: Path | None = None


async def _echo_slowly(websocket: ServerConnection, delay: float) -> None:
    with contextlib.suppress(Exception):  # the demo closes some connections on purpose
        async for message in websocket:
            await asyncio.sleep(delay)
            await websocket.send(message)


#: Transitions of each retired connection shown in the report.
_SHOWN = 6


async def run_demo(settings: DemoSettings) -> str:
    """Run the demo and return its report."""

    async def handler(websocket: ServerConnection) -> None:
        await _echo_slowly(websocket, settings.reply_delay)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        pool = WebsocketConnectionPool(
            f"ws://127.0.0.1:{port}/echo?token=demo-secret",
            headers={"Authorization": "Bearer demo-secret"},
            max_connections=settings.connections,
            health_check_interval=0.5,
            history_size=32,
        )
        async with pool:

            async def worker(task_id: int) -> int:
                mixed_up = 0
                for n in range(settings.requests):
                    async with pool.get_connection() as conn:
                        request = f"task {task_id} request {n}"
                        await conn.send(request)
                        mixed_up += await conn.recv() != request
                return mixed_up

            started = time.perf_counter()
            # Rounded up: a single task runs in the first half, which opens the
            # connection the server then drops.
            half = (settings.tasks + 1) // 2
            first_half = await asyncio.gather(*(worker(i) for i in range(half)))
            # The server drops a connection while it sits idle in the pool;
            # the pool notices on the next hand-out, and no task sees it.
            connections = pool.connections
            await next(iter(server.connections)).close(1001, "going away")
            second_half = await asyncio.gather(*(worker(i) for i in range(half, settings.tasks)))
            elapsed = time.perf_counter() - started
            report = [
                f"{settings.tasks} tasks x {settings.requests} requests through "
                f"max_connections={settings.connections} in {elapsed * 1000:.0f} ms",
                f"replies mixed up: {sum(first_half) + sum(second_half)}",
                f"pool: {pool!r}",
            ]
            # The one the server dropped, and its idle sibling: code 1001
            # (going away) retires the siblings too.
            for shown in [conn for conn in connections if conn.is_closed] or connections[:1]:
                report += [
                    f"history of {shown.id}, last {_SHOWN} transitions:",
                    *(f"  {record}" for record in shown.history[-_SHOWN:]),
                ]
        report.append(f"after close_all(): {pool!r}")
    if settings.history_file is not None:
        written = write_history_jsonl(pool.history, settings.history_file)
        report.append(f"{written} transitions written to {settings.history_file} (JSON lines)")
    return "\n".join(report)
