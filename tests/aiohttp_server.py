"""An aiohttp echo server on 127.0.0.1: a WebSocket peer that is not websockets.

The pool's own harness server is built on websockets, as the pool is; a bug
that hides behind how websockets buffers, frames or answers pings on both
ends would go unseen against it alone. aiohttp writes frames its own way
and answers pings itself, as many production servers do.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web


class AiohttpServer:
    """Echoes every message back; :meth:`push` sends messages nobody asked for.

    Start it with ``async with AiohttpServer().running() as server:`` and
    connect to :attr:`uri`.

    Attributes:
        sockets: The WebSocket connections open right now.
    """

    def __init__(self) -> None:
        self.sockets: set[web.WebSocketResponse] = set()
        self._port = 0

    @property
    def uri(self) -> str:
        """``ws://127.0.0.1:<port>/``."""
        if not self._port:
            raise RuntimeError("the server has not been started")
        return f"ws://127.0.0.1:{self._port}/"

    async def push(self, message: str, count: int = 1) -> None:
        """Send ``message``, ``count`` times, on every open connection (skipping closed ones)."""
        for ws in tuple(self.sockets):
            # A client that drops the connection mid-burst (a flood cap) ends that one's push.
            with contextlib.suppress(ConnectionError):
                for _ in range(count):
                    await ws.send_str(message)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AiohttpServer]:
        """Serve on an ephemeral port for the ``async with`` block."""
        app = web.Application()
        app.router.add_get("/", self._handler)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(runner.addresses[0][1])
        try:
            yield self
        finally:
            for ws in tuple(self.sockets):
                await ws.close(code=WSCloseCode.GOING_AWAY)
            await runner.cleanup()

    async def _handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            async for message in ws:
                await self._answer(ws, message)
        finally:
            self.sockets.discard(ws)
        return ws

    async def _answer(self, ws: web.WebSocketResponse, message: WSMessage) -> None:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)


class AiohttpJsonRpcServer(AiohttpServer):
    """A JSON-RPC 2.0 peer on aiohttp: ``echo`` answers its params; ``subscribe`` bursts.

    ``subscribe`` with params ``[n]`` answers a subscription id and sends ``n``
    notifications for it at once, right behind the answer (results 0 to n-1):
    aiohttp writes them as it pleases, in one segment or several.
    """

    def __init__(self) -> None:
        super().__init__()
        self._subscriptions = 0

    async def _answer(self, ws: web.WebSocketResponse, message: WSMessage) -> None:
        if message.type is not WSMsgType.TEXT:
            return
        call: dict[str, Any] = json.loads(message.data)
        params: Any = call.get("params")
        if call["method"] != "subscribe":
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": params}))
            return
        self._subscriptions += 1
        sub_id = f"sub-{self._subscriptions}"
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": sub_id}))
        for n in range(params[0]):
            notification = {"subscription": sub_id, "result": n}
            await ws.send_str(
                json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": notification})
            )
