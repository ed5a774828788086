"""A real JSON-RPC 2.0 server over websockets on 127.0.0.1, with faults on demand.

The multiplexer's tests, the ``--json-rpc`` demo and the M1 benchmark talk to
it over loopback TCP. Each request is answered in a task of its own, so a
slow request never holds up a quick one: replies come out of order. What a
request asks for is in its method's name:

=================  ===========================================================
``sleep``          ``params [seconds, value]``: answers ``value`` after ``seconds``
``fail``           ``params [code, message, data]``: answers with that error
``subscribe``      answers a new subscription id; :meth:`JsonRpcServer.notify`
                   then pushes notifications to it (``params.subscription``)
``unsubscribe``    ``params [id]``: forgets it, answers ``true``
``eth_subscribe``, ``eth_unsubscribe``  the same, by an Ethereum node's names
``eth_blockNumber``  answers :attr:`JsonRpcServer.block_number`, in hex (``"0x0"``)
``duplicate``      answers ``params`` twice
``wrong_id``       answers ``params`` with an id nobody asked for
``true_id``        answers ``params`` twice: with the id ``true`` first, then its own
``junk``           sends a message that is not JSON, then answers ``params``
``close``          closes the connection (code 1011) instead of answering
anything else      answers its ``params`` (an echo)
=================  ===========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

#: An Ethereum node's names for the methods this server knows by others.
_ALIASES = {"eth_subscribe": "subscribe", "eth_unsubscribe": "unsubscribe"}


@dataclass
class JsonRpcServer:
    """Answers JSON-RPC 2.0 requests; start it with ``async with JsonRpcServer().running()``.

    Attributes:
        subscriptions: Live subscription ids, each with its connection.
        requests: Requests received, in all.
        subscribe_requests: ``subscribe`` requests received, in all.
        unsubscribe_requests: ``unsubscribe`` requests received, in all.
        refuse_subscriptions: While true, ``subscribe`` answers an error (-32000).
        subscribe_delay: Seconds each ``subscribe`` waits before it is answered.
        unsubscribe_delay: Seconds each ``unsubscribe`` waits before it is carried out.
        peak_subscribes_in_flight: The most ``subscribe`` requests ever waiting at once.
        block_number: What ``eth_blockNumber`` answers.
    """

    subscriptions: dict[str, ServerConnection] = field(default_factory=dict)
    requests: int = 0
    subscribe_requests: int = 0
    unsubscribe_requests: int = 0
    refuse_subscriptions: bool = False
    subscribe_delay: float = 0.0
    unsubscribe_delay: float = 0.0
    peak_subscribes_in_flight: int = 0
    block_number: int = 0
    _subscribes_in_flight: int = field(default=0, repr=False)
    _server: Server | None = field(default=None, repr=False)
    _port: int = field(default=0, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    @property
    def uri(self) -> str:
        """``ws://127.0.0.1:<port>/``."""
        if not self._port:
            raise RuntimeError("the server has not been started")
        return f"ws://127.0.0.1:{self._port}/"

    @property
    def connections(self) -> set[ServerConnection]:
        """The connections open right now."""
        return set() if self._server is None else set(self._server.connections)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[JsonRpcServer]:
        """Serve on an ephemeral port for the ``async with`` block."""
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self._server = server
            self._port = server.sockets[0].getsockname()[1]
            try:
                yield self
            finally:
                for task in tuple(self._tasks):
                    task.cancel()
                self._server = None

    async def notify(self, result: Any, subscription: str | None = None) -> int:
        """Push ``result`` to one subscription, or to every one; return how many got it."""
        targets = [subscription] if subscription is not None else list(self.subscriptions)
        sent = 0
        for sub_id in targets:
            conn = self.subscriptions.get(sub_id)
            if conn is None:
                continue
            message = {"jsonrpc": "2.0", "method": "subscription",
                       "params": {"subscription": sub_id, "result": result}}  # fmt: skip
            with contextlib.suppress(ConnectionClosed):
                await conn.send(json.dumps(message))
                sent += 1
        return sent

    async def close_connections(self, code: int = 1011) -> int:
        """Close every open connection from the server's side; return how many."""
        chosen = self.connections
        await asyncio.gather(*(conn.close(code) for conn in chosen))
        return len(chosen)

    async def _handler(self, conn: ServerConnection) -> None:
        try:
            async for message in conn:
                request = json.loads(message)
                self.requests += 1
                request["method"] = _ALIASES.get(request.get("method"), request.get("method"))
                if request["method"] == "eth_blockNumber":  # then answered as an echo
                    request["params"] = hex(self.block_number)
                if request.get("method") in ("sleep", "close", "subscribe"):
                    task = asyncio.create_task(self._answer(conn, request))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:  # answered in order, at once: the fast path the benchmark measures
                    await self._answer(conn, request)
        except ConnectionClosed:
            pass
        finally:
            for sub_id, owner in tuple(self.subscriptions.items()):
                if owner is conn:
                    del self.subscriptions[sub_id]

    async def _answer(self, conn: ServerConnection, request: dict[str, Any]) -> None:
        method, request_id = request.get("method"), request["id"]
        params: Any = request.get("params")
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "result": params}
        with contextlib.suppress(ConnectionClosed):
            if method == "sleep":
                await asyncio.sleep(params[0])
                reply["result"] = params[1]
            elif method == "fail":
                del reply["result"]
                reply["error"] = {"code": params[0], "message": params[1], "data": params[2]}
            elif method == "subscribe":
                self.subscribe_requests += 1
                self._subscribes_in_flight += 1
                self.peak_subscribes_in_flight = max(
                    self.peak_subscribes_in_flight, self._subscribes_in_flight
                )
                try:
                    await asyncio.sleep(self.subscribe_delay)
                finally:
                    self._subscribes_in_flight -= 1
                if self.refuse_subscriptions:
                    del reply["result"]
                    reply["error"] = {"code": -32000, "message": "no more subscriptions"}
                else:
                    sub_id = f"0x{next(self._ids):x}"
                    self.subscriptions[sub_id] = conn
                    reply["result"] = sub_id
            elif method == "unsubscribe":
                self.unsubscribe_requests += 1
                await asyncio.sleep(self.unsubscribe_delay)
                reply["result"] = self.subscriptions.pop(params[0], None) is not None
            elif method == "wrong_id":
                reply["id"] = request_id + 1_000_000
            elif method == "true_id":  # true == 1 in Python: it must answer no call 1
                await conn.send(json.dumps({**reply, "id": True}))
            elif method == "junk":
                await conn.send("this is not JSON {")
            elif method == "close":
                await conn.close(1011)
                return
            await conn.send(json.dumps(reply))
            if method == "duplicate":
                await conn.send(json.dumps(reply))
