"""What the pool relies on inside websockets (``_websocket``), against real websockets servers.

These run on both ends of the websockets range pyproject.toml admits (the
check runs the suite on the oldest too): an attribute renamed upstream fails
here, not in a user's process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from aio_websocket_pool._websocket import send_at_once


async def echo(conn: ServerConnection) -> None:
    async for message in conn:
        await conn.send(message)


async def test_send_at_once_writes_text_and_binary_frames_as_send_would() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            assert send_at_once(ws, b"text", text=True)
            assert send_at_once(ws, b"\x00bytes", text=False)
            assert await ws.recv() == "text"
            assert await ws.recv() == b"\x00bytes"


async def test_send_at_once_leaves_a_closed_connection_to_send() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.close()
            assert not send_at_once(ws, b"late", text=True)
            with pytest.raises(ConnectionClosed):
                await ws.send("late")


async def test_send_at_once_waits_its_turn_behind_a_fragmented_message() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            middle = asyncio.Event()

            async def fragments() -> AsyncIterator[str]:
                yield "frag"
                middle.set()
                await asyncio.sleep(0.05)
                yield "ment"

            fragmented = asyncio.create_task(ws.send(fragments()))
            await middle.wait()
            assert not send_at_once(ws, b"after", text=True)  # it would land in the fragments
            await ws.send("after")  # waits for it
            await fragmented
            assert [await ws.recv(), await ws.recv()] == ["fragment", "after"]


async def test_send_at_once_leaves_a_full_write_buffer_to_send() -> None:
    """A server that stops reading: the client's write buffer fills and writing pauses."""
    stop_reading = asyncio.Event()

    async def stalled(conn: ServerConnection) -> None:
        await stop_reading.wait()

    # close_timeout: its reading paused, the server would wait 10 s to see the client gone.
    async with serve(
        stalled, "127.0.0.1", 0, max_size=None, max_queue=1, close_timeout=0.1
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            ws.transport.set_write_buffer_limits(high=64 * 1024)
            chunk = b"x" * (256 * 1024)
            for _ in range(400):  # at most 100 MB: the kernel's buffers hold a few MB
                if not send_at_once(ws, chunk, text=False):
                    break
                await asyncio.sleep(0)
            assert ws.paused
            stop_reading.set()
            await close_quietly(ws)


async def close_quietly(ws: ClientConnection) -> None:
    ws.transport.abort()  # what is buffered would take the server a while to read
    await ws.wait_closed()
