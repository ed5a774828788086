"""M1: concurrent JSON-RPC calls over a few multiplexed connections, beside what it replaces.

Three ways to make ``workers`` concurrent JSON-RPC calls (each task
``requests`` calls in a row) to one loopback JSON-RPC server
(:class:`aio_websocket_pool.testing.JsonRpcServer`, in a process of its own):

* ``mux``: ``pool.json_rpc(connections=...)`` with its defaults, the subject.
* ``dispatcher``: the limit. A minimal hand-written id dispatcher over as many
  raw websockets connections: one reader task per socket and a dict
  id → future, nothing more (no timeout, no lifecycle, no counters).
* ``exclusive``: what the pool offers without multiplexing. Its exclusive
  leases over ``exclusive_connections``: each call acquires, sends, receives
  and releases.

Every call does the same work in all three: it encodes a request, sends it,
decodes its reply and checks that the result is the one it asked for (a reply
given to the wrong caller stops the run). The three take turns round by round
in one process, as W6's scales do, so that each sample's ratios
(``over_dispatcher``, ``over_exclusive``) compare rounds run moments apart: a
burst of load from elsewhere on the machine falls on all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect

from aio_websocket_pool import WebsocketConnectionPool

if TYPE_CHECKING:  # workloads imports this module: no import back at run time
    from .workloads import Params, Sample

#: ``call(method, params) -> result``: one JSON-RPC call, however it is made.
Call = Callable[[str, Any], Awaitable[Any]]


#: Compact JSON from one encoder made once: ``json.dumps(separators=...)`` makes one per call.
_compact = json.JSONEncoder(separators=(",", ":")).encode


def _request(request_id: int, method: str, params: Any) -> str:
    return _compact({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


class Dispatcher:
    """The hand-written limit: raw websockets connections, one reader each, a dict id → future."""

    def __init__(self) -> None:
        self._sockets: list[ClientConnection] = []
        self._readers: list[asyncio.Task[None]] = []
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    async def open(self, uri: str, connections: int) -> None:
        """Connect ``connections`` sockets and start their readers."""
        self._sockets = list(await asyncio.gather(*(connect(uri) for _ in range(connections))))
        self._readers = [asyncio.create_task(self._read(socket)) for socket in self._sockets]

    async def _read(self, socket: ClientConnection) -> None:
        waiting = self._waiting
        async for message in socket:
            reply = json.loads(message)
            waiting.pop(reply["id"]).set_result(reply["result"])

    async def call(self, method: str, params: Any) -> Any:
        """Send a request on the next socket in turn and wait for the reply with its id."""
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        await self._sockets[request_id % len(self._sockets)].send(
            _request(request_id, method, params)
        )
        return await future

    async def close(self) -> None:
        """Close the sockets (their readers end with them)."""
        await asyncio.gather(*(socket.close() for socket in self._sockets))
        await asyncio.gather(*self._readers)


def exclusive_call(pool: WebsocketConnectionPool) -> Call:
    """A call on a lease of ``pool`` of its own: acquire, send, receive, release."""
    ids = itertools.count(1)

    async def call(method: str, params: Any) -> Any:
        async with pool.acquire() as connection:
            await connection.send(_request(next(ids), method, params))
            return json.loads(await connection.recv())["result"]

    return call


async def throughput(call: Call, params: Params) -> float:
    """One round: ``workers`` tasks of ``requests`` calls each; calls per second.

    Raises:
        RuntimeError: A call returned a result that was not its own.
    """

    async def work(worker: int) -> None:
        for number in range(params.requests):
            asked = [worker, number]
            if await call("echo", asked) != asked:
                raise RuntimeError(f"call {asked} was given another call's result")

    start = time.perf_counter_ns()
    await asyncio.gather(*(work(worker) for worker in range(params.workers)))
    return params.workers * params.requests / ((time.perf_counter_ns() - start) / 1e9)


async def m1(name: str, uri: str, params: Params) -> list[Sample]:
    """M1: ``mux``, ``dispatcher`` and ``exclusive`` in turns; calls/s of each and the ratios.

    Runs in ours' worker only: all three are measured there, side by side.
    ``uri`` is a JSON-RPC server's; ``params.connections`` the multiplexed
    (and the dispatcher's) connections.
    """
    if name != "ours":
        raise ValueError(f"M1 measures its three subjects in ours' worker, not in {name!r}'s")
    async with contextlib.AsyncExitStack() as stack:
        pool = WebsocketConnectionPool(uri, max_connections=params.connections)
        await stack.enter_async_context(pool)
        rpc = await stack.enter_async_context(pool.json_rpc(connections=params.connections))
        dispatcher = Dispatcher()
        stack.push_async_callback(dispatcher.close)
        await dispatcher.open(uri, params.connections)
        leases = params.exclusive_connections
        exclusive = WebsocketConnectionPool(uri, max_connections=leases, warmup_connections=leases)
        await stack.enter_async_context(exclusive)
        calls: dict[str, Call] = {
            "mux": rpc.call,
            "dispatcher": dispatcher.call,
            "exclusive": exclusive_call(exclusive),
        }
        samples = []
        for _ in range(params.repeats + 1):
            sample = {f"{way}_per_s": await throughput(call, params) for way, call in calls.items()}
            sample["over_dispatcher"] = sample["mux_per_s"] / sample["dispatcher_per_s"]
            sample["over_exclusive"] = sample["mux_per_s"] / sample["exclusive_per_s"]
            samples.append(sample)
        return samples[1:]
