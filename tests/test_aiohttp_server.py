"""The test servers of ``any_server`` really echo and push, each of them."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect

from helpers import BOUND
from servers import PushingServer


async def test_it_echoes_text_and_bytes(any_server: PushingServer) -> None:
    async with asyncio.timeout(BOUND), connect(any_server.uri) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"


async def test_it_pushes_to_every_open_connection(any_server: PushingServer) -> None:
    async with (
        asyncio.timeout(BOUND),
        connect(any_server.uri) as one,
        connect(any_server.uri) as two,
    ):
        for ws in (one, two):  # a round trip: both handlers run, so both get the push
            await ws.send("ready")
            assert await ws.recv() == "ready"
        await any_server.push("pushed", count=3)
        for ws in (one, two):
            assert [await ws.recv() for _ in range(3)] == ["pushed"] * 3
