"""What the borrow methods return: an awaitable acquire, and the ``async with`` block.

Classes rather than ``async def`` plus ``asynccontextmanager``: they are on the
path of every request, and a generator-based context manager costs several
microseconds. Each is used once: a second task awaiting or entering the same
object would be handed the first one's lease, so it is refused.
"""

from __future__ import annotations

import enum
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ._config import check_optional_number
from ._exceptions import ConnectionBusyError

if TYPE_CHECKING:
    from ._lease import ConnectionLease


class PoolTimeout(enum.Enum):
    """The default of an acquire's ``timeout``: the pool's own ``acquire_timeout``."""

    ACQUIRE_TIMEOUT = "acquire_timeout"

    def __repr__(self) -> str:
        return "the pool's acquire_timeout"


#: A per-call ``timeout`` of an acquire: seconds, ``None`` (wait forever), or the pool's.
AcquireTimeout = float | None | PoolTimeout


def checked(timeout: AcquireTimeout) -> AcquireTimeout:
    """An acquire's ``timeout``, refused at the call if it is not a number of seconds >= 0."""
    if timeout is PoolTimeout.ACQUIRE_TIMEOUT:
        return timeout
    return check_optional_number("timeout", timeout)


class Lender(Protocol):
    """What starts and ends a pool's leases (:class:`~aio_websocket_pool._lending.Lending`)."""

    def lend_at_once(self, fresh: bool) -> ConnectionLease | None: ...

    async def acquire(self, *, fresh: bool, wait: AcquireTimeout) -> ConnectionLease: ...

    def release_now(
        self, lease: Any, *, force_remove: bool = False, dirty: bool = False, block: bool = False
    ) -> None: ...


def _end_block(
    lender: Lender, lease: ConnectionLease | None, exc_type: type[BaseException] | None
) -> None:
    """Release at the end of an ``async with`` block; a block that raised may owe a reply."""
    if lease is not None:
        lender.release_now(lease, dirty=exc_type is not None, block=True)


class Acquiring(Coroutine[Any, Any, "ConnectionLease"]):
    """What ``pool.acquire()`` returns: a coroutine, and an async context manager.

    ``conn = await pool.acquire()``, ``asyncio.create_task(pool.acquire())``
    (which takes only a coroutine) and ``asyncio.wait_for(pool.acquire(), t)``
    work as in 0.1.0; ``async with pool.acquire() as conn:`` releases on exit,
    as in asyncpg.

    Awaited, it hands a warm connection out with no coroutine at all (the
    lender's synchronous fast path, run from :meth:`__await__`): the
    lender's ``acquire`` coroutine is made only when that path does not
    apply, or when a task runs it. Nothing is claimed until it is awaited.
    """

    __slots__ = ("_fresh", "_lease", "_lender", "_steps", "_used", "_wait")

    def __init__(self, lender: Lender, *, fresh: bool, wait: AcquireTimeout) -> None:
        self._lender = lender
        self._fresh = fresh
        self._wait = wait
        self._lease: ConnectionLease | None = None
        self._used = False  # awaited, entered, or run by a task already
        self._steps: Generator[Any, None, ConnectionLease] | None = None  # run by a task

    def _claim(self) -> None:
        """One acquire, one borrower: a second task awaiting the same call is refused."""
        if self._used:
            raise ConnectionBusyError(
                "this acquire() is in use already: call pool.acquire() for each hand-out"
            )
        self._used = True

    def _running(self) -> Generator[Any, None, ConnectionLease]:
        """The steps a task drives through :meth:`send` and :meth:`throw`, made on first use."""
        if self._steps is None:
            self._steps = self.__await__()
        return self._steps

    def send(self, value: Any) -> Any:
        return self._running().send(value)  # a task runs it (create_task, wait_for)

    def throw(self, *args: Any) -> Any:
        return self._running().throw(*args)

    def close(self) -> None:
        if self._steps is not None:
            self._steps.close()

    def __await__(self) -> Generator[Any, None, ConnectionLease]:
        # A generator, not a coroutine: the fast path returns before it would
        # need one, and a warm acquire makes no other frame but the lender's.
        self._claim()
        lender = self._lender
        lease = lender.lend_at_once(self._fresh)
        if lease is None:
            lease = yield from lender.acquire(fresh=self._fresh, wait=self._wait).__await__()
        return lease

    async def __aenter__(self) -> ConnectionLease:
        self._claim()
        self._lease = await self._lender.acquire(fresh=self._fresh, wait=self._wait)
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lease, self._lease = self._lease, None
        _end_block(self._lender, lease, exc_type)


class Borrowed:
    """What ``pool.get_connection()`` returns: acquire on entry, release on exit."""

    __slots__ = ("_entered", "_fresh", "_lease", "_lender", "_timeout")

    def __init__(self, lender: Lender, *, fresh: bool, timeout: AcquireTimeout) -> None:
        self._lender = lender
        self._fresh = fresh
        self._timeout = timeout
        self._entered = False
        self._lease: ConnectionLease | None = None

    async def __aenter__(self) -> ConnectionLease:
        # Checked and set before the first await: a second task entering the
        # same object meanwhile would give back the first task's lease as its own.
        if self._entered:
            raise ConnectionBusyError(
                "this get_connection() is in use already: call get_connection() per block"
            )
        self._entered = True
        lender = self._lender
        try:
            # The fast path first: a warm hand-out makes no coroutine.
            lease = lender.lend_at_once(self._fresh)
            if lease is None:
                lease = await lender.acquire(fresh=self._fresh, wait=self._timeout)
        except BaseException:
            self._entered = False
            raise
        self._lease = lease
        return lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lease, self._lease = self._lease, None
        self._entered = False
        _end_block(self._lender, lease, exc_type)
