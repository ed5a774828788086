"""One small adapter per subject: how to open it, borrow a connection, acquire and release.

The workloads (:mod:`benchmarks.workloads`) are written once against
:class:`Subject`; everything that differs between the subjects is here.

* ``ours`` and ``v010`` are both ``aio_websocket_pool.WebsocketConnectionPool``
  with its default options, as a user would make it: which one is imported
  depends on the virtualenv the worker runs in (0.1.0 lives in its own, since it
  pins websockets < 16). :class:`PoolSubject` checks that the version matches.
* ``raw`` is plain ``websockets``, the limit. A worker that can have a
  connection of its own gets one (worker *i* uses connection *i*: what a program
  without a pool does); otherwise connections are handed out through an
  ``asyncio.Queue``, opening a new one while fewer than the limit exist. That
  queue is also the reference for the bare acquire + release cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Protocol, TypeVar

from websockets.asyncio.client import ClientConnection, connect

#: The subjects, in the order the table shows them.
SUBJECTS = ("ours", "raw", "v010")


class Connection(Protocol):
    """What the workloads do with a connection: send a message, read the reply."""

    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...


C = TypeVar("C", bound=Connection)


class Subject(Protocol[C]):
    """A source of connections to one URI, opened for one workload."""

    async def open(self, uri: str, *, connections: int, workers: int, warm: int) -> None:
        """Get ready to hand out up to ``connections``, ``warm`` of them opened now.

        ``workers`` is how many tasks will borrow at once (raw uses it to give
        each one a connection of its own when it can).
        """

    def borrow(self, worker: int) -> AbstractAsyncContextManager[C]:
        """A connection for the ``async with`` block of task number ``worker``."""

    async def acquire(self) -> C:
        """A connection for the caller alone, until :meth:`release`."""

    async def release(self, connection: C) -> None:
        """Give back a connection that :meth:`acquire` returned."""

    async def close(self) -> None:
        """Close every connection."""


class PoolSubject:
    """aio-websocket-pool, ours or 0.1.0: whichever the running virtualenv has."""

    def __init__(self, name: str) -> None:
        import aio_websocket_pool  # noqa: PLC0415  (which one depends on the venv, so check it)

        is_v010 = aio_websocket_pool.__version__.startswith("0.1.")
        if is_v010 != (name == "v010"):
            raise RuntimeError(
                f"subject {name!r} runs with aio-websocket-pool {aio_websocket_pool.__version__}"
            )
        self._module = aio_websocket_pool
        self._pool: Any = None

    async def open(self, uri: str, *, connections: int, workers: int, warm: int) -> None:
        del workers  # the pool shares its connections however many tasks there are
        self._pool = self._module.WebsocketConnectionPool(
            uri=uri, max_connections=connections, warmup_connections=warm
        )
        await self._pool.start()

    def borrow(self, worker: int) -> AbstractAsyncContextManager[Any]:
        del worker
        manager: AbstractAsyncContextManager[Any] = self._pool.get_connection()
        return manager

    async def acquire(self) -> Any:
        return await self._pool.acquire()

    async def release(self, connection: Any) -> None:
        await self._pool.release(connection)

    async def close(self) -> None:
        await self._pool.close_all()


class _Own(AbstractAsyncContextManager[ClientConnection]):
    """A worker's own connection, borrowed for a block at no cost."""

    __slots__ = ("_connection",)

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection

    async def __aenter__(self) -> ClientConnection:
        return self._connection

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        return None


class RawSubject:
    """Plain websockets connections: one per worker when possible, else an ``asyncio.Queue``."""

    def __init__(self) -> None:
        self._uri = ""
        self._limit = 0
        self._opened = 0  # connections open or opening, at most _limit
        self._all: list[ClientConnection] = []
        self._free: asyncio.Queue[ClientConnection] = asyncio.Queue()
        self._own: list[_Own] = []

    async def open(self, uri: str, *, connections: int, workers: int, warm: int) -> None:
        self._uri, self._limit, self._opened = uri, connections, warm
        self._all = list(await asyncio.gather(*(connect(uri) for _ in range(warm))))
        for connection in self._all:
            self._free.put_nowait(connection)
        if workers <= warm:
            self._own = [_Own(connection) for connection in self._all]

    def borrow(self, worker: int) -> AbstractAsyncContextManager[ClientConnection]:
        if self._own:
            return self._own[worker]
        return self._queued()

    @asynccontextmanager
    async def _queued(self) -> AsyncIterator[ClientConnection]:
        connection = await self.acquire()
        try:
            yield connection
        finally:
            await self.release(connection)

    async def acquire(self) -> ClientConnection:
        if self._free.empty() and self._opened < self._limit:
            self._opened += 1  # before the await, so that concurrent acquirers see the slot taken
            try:
                connection = await connect(self._uri)
            except BaseException:
                self._opened -= 1
                raise
            self._all.append(connection)
            return connection
        return await self._free.get()

    async def release(self, connection: ClientConnection) -> None:
        self._free.put_nowait(connection)

    async def close(self) -> None:
        await asyncio.gather(*(connection.close() for connection in self._all))
        self._all.clear()


def make_subject(name: str) -> Subject[Any]:
    """The adapter for subject ``name`` (one of :data:`SUBJECTS`)."""
    if name == "raw":
        return RawSubject()
    if name in SUBJECTS:
        return PoolSubject(name)
    raise ValueError(f"unknown subject {name!r}; expected one of {', '.join(SUBJECTS)}")
