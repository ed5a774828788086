"""The pool: a thin coordinator over connection state machines.

Theory of operation:

* **Bookkeeping is synchronous, I/O is not.** :meth:`_try_grant` decides in one
  step (no await) who gets which connection: the most recently used idle one,
  else a new one in a free slot. The handshake, the health-check ping, the
  drain and the close then run outside that step, so nothing holds a
  pool-wide lock while waiting on the network (there is no such lock).
* **Counters are derived.** Every transition of every connection is reported to
  :meth:`_on_transition`, which files the connection under its new state in a
  :class:`~aio_websocket_pool._stats.StateIndex`. ``total_connections`` and the
  other counters are bucket sizes there, never numbers kept alongside.
* **Waiters are served in order.** An acquirer that finds nothing free queues
  (FIFO). Whenever a transition frees something (a connection becomes idle, a
  slot closes) a dispatch is scheduled, which hands resources to the waiters
  at the front. An acquirer arriving while others wait queues behind them.
* **A handshake belongs to the pool, not the caller.** New connections are
  opened by pool tasks: an acquirer that is cancelled mid-handshake leaves the
  connection to the next waiter instead of wasting it, and ``close_all()`` can
  cancel every handshake in flight.
* **A connection returns to idle only through** :meth:`_park`, which retires
  it instead when it is stale (older than ``max_lifetime``, or opened before
  :meth:`expire_connections`) or the pool is closing. One gate, so no path
  back to the idle set can forget a policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import itertools
import logging
import random
import sys
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

from websockets.asyncio.client import ClientConnection

from ._backoff import Backoff
from ._config import (
    DEFAULT_DRAIN_MAX_BYTES,
    DEFAULT_DRAIN_MAX_MESSAGES,
    ConnectionHook,
    DrainConditionCallback,
    PoolConfig,
    UnsolicitedMessageHook,
    check_name,
    check_number,
    check_optional_number,
)
from ._connection import DEFAULT_HISTORY_SIZE, WebsocketConnection
from ._exceptions import (
    ConnectionBusyError,
    ConnectionClosedError,
    ConnectionHookError,
    ConnectionPoolExhaustedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    TooManyWaitersError,
    WebsocketError,
    WrongEventLoopError,
)
from ._fsm import BUSY, CLOSED, CONNECTING, DRAINING, IDLE, TransitionRecord
from ._hooks import report_callback_failure, run_hook
from ._inbox import Inbox
from ._jsonrpc import JsonRpcClient
from ._lease import ConnectionLease
from ._mux import Multiplexer
from ._redact import describe_error, redact_uri
from ._stats import PoolStats, StateIndex, Totals
from ._websocket import is_receiving

logger: Final = logging.getLogger("aio_websocket_pool")
_pool_numbers: Final = itertools.count(1)
_T = TypeVar("_T")

#: Close codes with which a server says it is going away as a whole (1001
#: going away, 1012 service restart): the idle siblings of a connection closed
#: with one are retired at once instead of failing one by one at hand-out.
SERVER_GOING_AWAY: Final = frozenset({1001, 1012})
#: Close code 1013, try again later: the pool backs off its new handshakes.
TRY_AGAIN_LATER: Final = 1013
#: Seconds between two looks at a message half received when one is to be handed out.
_SETTLE_POLL: Final = 0.005
#: Seconds between two looks at the open connections in :meth:`~WebsocketConnectionPool.wait`.
_WAIT_POLL: Final = 0.01


class _Grant:
    """One acquirer's claim on one connection.

    Either a connection already marked busy for the acquirer, or a new one
    whose handshake (``opening``) is in flight. If the acquirer leaves before
    the handshake ends it sets ``abandoned``, and the connection is parked idle
    for others instead of being marked busy for nobody.
    """

    __slots__ = ("abandoned", "connection", "opening")

    def __init__(self, connection: WebsocketConnection) -> None:
        self.connection = connection
        self.opening: asyncio.Task[None] | None = None
        self.abandoned = False


@dataclass(slots=True, eq=False)
class _Waiter:
    """An acquirer in line. Its two flags keep the count of dead entries exact.

    Attributes:
        queued: Still in the pool's queue (not yet popped or swept out).
        departed: Counted as a dead entry: its acquirer left unserved.
    """

    fresh: bool
    queued: bool = True
    departed: bool = False
    future: asyncio.Future[_Grant] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PoolTimeout(enum.Enum):
    """The default of an acquire's ``timeout``: the pool's own ``acquire_timeout``."""

    ACQUIRE_TIMEOUT = "acquire_timeout"

    def __repr__(self) -> str:
        return "the pool's acquire_timeout"


#: A per-call ``timeout`` of an acquire: seconds, ``None`` (wait forever), or the pool's.
AcquireTimeout = float | None | PoolTimeout


def _end_block(
    pool: WebsocketConnectionPool,
    lease: ConnectionLease | None,
    exc_type: type[BaseException] | None,
) -> None:
    """Release at the end of an ``async with`` block; a block that raised may owe a reply."""
    if lease is not None:
        pool._release_now(lease, dirty=exc_type is not None, block=True)


class _Acquiring(Coroutine[Any, Any, ConnectionLease]):
    """What ``pool.acquire()`` returns: a coroutine, and an async context manager.

    ``conn = await pool.acquire()``, ``asyncio.create_task(pool.acquire())``
    (which takes only a coroutine) and ``asyncio.wait_for(pool.acquire(), t)``
    work as in 0.1.0; ``async with pool.acquire() as conn:`` releases on exit,
    as in asyncpg.
    """

    __slots__ = ("_coroutine", "_lease", "_pool", "_used")

    def __init__(
        self, pool: WebsocketConnectionPool, coroutine: Coroutine[Any, Any, ConnectionLease]
    ) -> None:
        self._pool = pool
        self._coroutine = coroutine
        self._lease: ConnectionLease | None = None
        self._used = False  # awaited, entered, or run by a task already

    def _claim(self) -> None:
        """One acquire, one borrower: a second task awaiting the same call is refused."""
        if self._used:
            raise ConnectionBusyError(
                "this acquire() is in use already: call pool.acquire() for each hand-out"
            )
        self._used = True

    def send(self, value: Any) -> Any:
        self._used = True  # a task runs it (create_task, wait_for)
        return self._coroutine.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coroutine.throw(*args)

    def close(self) -> None:
        self._coroutine.close()

    def __await__(self) -> Generator[Any, None, ConnectionLease]:
        self._claim()
        return self._coroutine.__await__()

    async def __aenter__(self) -> ConnectionLease:
        self._claim()
        self._lease = await self._coroutine
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lease, self._lease = self._lease, None
        _end_block(self._pool, lease, exc_type)


class _Borrowed:
    """What ``pool.get_connection()`` returns: acquire on entry, release on exit.

    A class rather than an ``asynccontextmanager``: it is on the path of every
    request, and a generator-based context manager costs several microseconds.
    """

    __slots__ = ("_entered", "_fresh", "_lease", "_pool", "_timeout")

    def __init__(
        self, pool: WebsocketConnectionPool, *, fresh: bool, timeout: AcquireTimeout
    ) -> None:
        self._pool = pool
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
        try:
            self._lease = await self._pool._acquire(fresh=self._fresh, wait=self._timeout)
        except BaseException:
            self._entered = False
            raise
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lease, self._lease = self._lease, None
        self._entered = False
        _end_block(self._pool, lease, exc_type)


async def _sweep_forever(pool: weakref.ref[WebsocketConnectionPool], interval: float) -> None:
    """Sweep every ``interval`` seconds while the pool exists (a weak reference, as below)."""
    while True:
        await asyncio.sleep(interval)
        if (alive := pool()) is None:
            return
        alive._sweep()
        del alive


def _forget_weakly(pool: weakref.ref[WebsocketConnectionPool], task: asyncio.Task[Any]) -> None:
    if (alive := pool()) is not None:
        alive._forget(task)


def _weakly(
    method: Callable[[WebsocketConnection, _T], None], connection: WebsocketConnection
) -> Callable[[_T], None]:
    """``method(connection, argument)``, holding neither the pool nor the connection.

    For the inbox's callbacks: a socket keeps its websocket, and so its
    inbox, alive; through strong callbacks it would keep an abandoned pool
    alive too, which then could never warn that it was left open.
    """
    pool_method = weakref.WeakMethod(method)
    connection_ref = weakref.ref(connection)

    def call(argument: _T) -> None:
        bound, target = pool_method(), connection_ref()
        if bound is not None and target is not None:
            bound(target, argument)

    return call


def _owed_reply(lease: ConnectionLease, websocket: ClientConnection | None) -> str | None:
    """Why a reply may still come to a lease being released (see ``owes_reply``), or ``None``.

    websockets' own flag catches a receive begun on the raw websocket too.
    """
    if (owed := lease.owes_reply) is not None:
        return owed
    if websocket is not None and is_receiving(websocket):
        return "a receive was still pending"
    return None


def _checked(timeout: AcquireTimeout) -> AcquireTimeout:
    """An acquire's ``timeout``, refused at the call if it is not a number of seconds >= 0."""
    if timeout is PoolTimeout.ACQUIRE_TIMEOUT:
        return timeout
    return check_optional_number("timeout", timeout)


def _was_granted(future: asyncio.Future[_Grant]) -> bool:
    """Whether a dispatch handed this waiter a grant (not cancelled, not failed)."""
    return future.done() and not future.cancelled() and future.exception() is None


class WebsocketConnectionPool:
    """An asyncio pool of WebSocket client connections to one URI.

    Args:
        uri: ``ws://`` or ``wss://`` URI. User-info and query are never shown.
        headers: Extra HTTP headers for each handshake. Values are never shown.
        idle_timeout: Seconds an idle connection is kept before it is closed.
        max_connections: The most connections open (or opening) at once.
        max_retries: Handshake attempts per new connection, the first included.
        cleanup_interval: Seconds between two sweeps for idle or dead connections.
        connection_timeout: Seconds one handshake attempt may take.
        warmup_connections: Connections opened in parallel by :meth:`start`.
        check_server_data_on_release: Drain stray server messages after each
            release before the connection is reused.
        drain_timeout: Seconds a drain may take before the connection is discarded.
        drain_quiet_period: Seconds of silence that end a drain successfully.
        drain_condition: Called with each drained message: ``True`` drops it,
            ``False`` discards the connection. Default: drop non-empty messages.
        acquire_timeout: Seconds :meth:`acquire` waits for a connection to come
            free. ``None`` waits forever; ``0`` fails at once when none is free.
        health_check_interval: A connection idle longer than this is pinged
            before reuse. ``0`` pings on every reuse; ``None`` never pings.
        health_check_timeout: Seconds to wait for the pong of a health check.
        history_size: Transitions kept in each connection's history.
        on_connect: ``async def on_connect(conn)``, run once after the
            handshake, before the connection is first handed out
            (authenticate, subscribe).
        on_acquire: ``async def on_acquire(conn)``, run before each hand-out
            (a custom health check).
        on_release: ``async def on_release(conn)``, run when a connection
            comes back, before it is reused (unsubscribe, reset).
        on_unsolicited: ``async def on_unsolicited(conn, message)``, given
            each message that arrived while nobody held the connection (idle
            or draining). Without it they are dropped, and counted.
        hook_timeout: Seconds each hook call may take. A hook that raises or
            times out gets its connection discarded.
        max_lifetime: Seconds (±10 % jitter) after which a connection is
            retired when next released or found idle. ``None``: no limit.
        min_connections: Connections kept open in the background, re-opened
            (with backoff) after idle cleanup or failures.
        max_waiting: The most acquirers queued at once; beyond it ``acquire()``
            raises :class:`TooManyWaitersError` at once. ``None``: no limit.
        drain_max_messages: A drain that reads more messages than this
            discards the connection (a flood).
        drain_max_bytes: Likewise, for the bytes the drained messages hold.
        name: What to call the pool in its repr, logs, stats and the ids of
            its connections. Default: ``pool-1``, ``pool-2``, ... in order of creation.
        **kwargs: Passed to ``websockets.asyncio.client.connect`` (``ssl``,
            ``subprotocols``, ``max_size``, ...).

    Raises:
        TypeError: An argument has the wrong type, or websockets does not take
            one of ``kwargs``.
        ValueError: An argument is out of range (see the configuration reference).
    """

    def __init__(
        self,
        uri: str,
        *,
        headers: dict[str, str] | None = None,
        idle_timeout: float = 60.0,
        max_connections: int = 50,
        max_retries: int = 3,
        cleanup_interval: float = 5.0,
        connection_timeout: float = 10.0,
        warmup_connections: int = 0,
        check_server_data_on_release: bool = False,
        drain_timeout: float = 10.0,
        drain_quiet_period: float = 2.0,
        drain_condition: DrainConditionCallback | None = None,
        acquire_timeout: float | None = 30.0,
        health_check_interval: float | None = 5.0,
        health_check_timeout: float = 5.0,
        history_size: int = DEFAULT_HISTORY_SIZE,
        on_connect: ConnectionHook | None = None,
        on_acquire: ConnectionHook | None = None,
        on_release: ConnectionHook | None = None,
        on_unsolicited: UnsolicitedMessageHook | None = None,
        hook_timeout: float = 10.0,
        max_lifetime: float | None = None,
        min_connections: int = 0,
        max_waiting: int | None = None,
        drain_max_messages: int = DEFAULT_DRAIN_MAX_MESSAGES,
        drain_max_bytes: int = DEFAULT_DRAIN_MAX_BYTES,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        #: Shown in its repr, stats, logs, OpenTelemetry points and in the ids of
        #: its connections (``pool-1/conn-3``).
        self.name = name = check_name(name) if name is not None else f"pool-{next(_pool_numbers)}"
        self._config = PoolConfig.from_arguments(
            uri=uri, headers=headers, idle_timeout=idle_timeout,
            max_connections=max_connections, max_retries=max_retries,
            cleanup_interval=cleanup_interval, connection_timeout=connection_timeout,
            warmup_connections=warmup_connections,
            check_server_data_on_release=check_server_data_on_release,
            drain_timeout=drain_timeout, drain_quiet_period=drain_quiet_period,
            drain_condition=drain_condition, acquire_timeout=acquire_timeout,
            health_check_interval=health_check_interval,
            health_check_timeout=health_check_timeout, history_size=history_size,
            on_connect=on_connect, on_acquire=on_acquire, on_release=on_release,
            on_unsolicited=on_unsolicited, hook_timeout=hook_timeout,
            max_lifetime=max_lifetime, min_connections=min_connections,
            max_waiting=max_waiting, drain_max_messages=drain_max_messages,
            drain_max_bytes=drain_max_bytes, connect_kwargs=kwargs, owner=name,
        )  # fmt: skip
        self.uri = self._config.uri
        self.headers = self._config.headers
        self._connection_numbers = itertools.count(1)
        self._index: StateIndex[WebsocketConnection] = StateIndex()
        # As many records as every slot's own history holds together, closed
        # connections' included: enough to tell how each recent one ended.
        self._history: deque[TransitionRecord] = deque(
            # A deque's length must fit a C ssize_t; the memory grows with use only.
            maxlen=min(self._config.history_size * self._config.max_connections, sys.maxsize)
        )
        self._waiters: deque[_Waiter] = deque()
        self._departed = 0  # entries of _waiters whose acquirer left unserved
        self._dispatch_handle: asyncio.Handle | None = None
        self._opening: set[_Grant] = set()  # handshakes in flight
        self._workers: set[asyncio.Task[Any]] = set()  # cancelled by close_all()
        self._closers: set[asyncio.Task[Any]] = set()  # awaited by close_all()
        self._totals = Totals()
        self._backoff = Backoff()
        self._random = random.Random()  # noqa: S311  (lifetime jitter, not cryptography)
        self._generation = 0  # bumped by expire_connections()
        self._below_minimum = asyncio.Event()  # wakes the min_connections keeper
        self._quiescent = asyncio.Event()  # set by close() once nothing is busy
        self._deliveries: dict[WebsocketConnection, asyncio.Task[None]] = {}  # on_unsolicited
        self._draining: set[WebsocketConnection] = set()  # in their drain, past on_release
        self._checking: asyncio.Task[None] | None = None  # the background health check
        self._keeper: asyncio.Task[None] | None = None  # keeps min_connections open
        self._above_new_limit = False  # a resize left more connections than max_connections
        self._loop: asyncio.AbstractEventLoop | None = None  # the one it started on
        self._started = False
        self._closing = False  # close() is waiting for borrowers
        self._closed = False

    # -- counters (all derived from connection states) -----------------------------
    #
    # The figures the pool decides by, each defined here once:
    #   slots in use     connections holding a slot, plus sockets still closing (what
    #                    max_connections bounds: what the server sees)
    #   missing minimum  how many min_connections lacks, counting what holds a slot
    #   in use           busy or draining: held by, or being cleaned after, a borrower
    #   open connections holding a slot with the handshake done (what wait() waits for)
    # (and, only after a resize, "over the limit": more connections hold a slot than
    # max_connections; sockets still closing are left out there, on their way out)

    @property
    def _slots_in_use(self) -> int:
        return self._index.total + len(self._closers)

    @property
    def _missing_minimum(self) -> int:
        return max(0, self._config.min_connections - self._index.total)

    @property
    def _in_use(self) -> int:
        index = self._index
        return index.count(BUSY) + index.count(DRAINING)

    @property
    def _open_connections(self) -> int:
        index = self._index
        return index.total - index.count(CONNECTING)

    @property
    def total_connections(self) -> int:
        """Connections that hold a slot: connecting, idle, busy or draining."""
        return self._index.total

    @property
    def available_connections(self) -> int:
        """Idle connections, ready to be handed out."""
        return self._index.count(IDLE)

    @property
    def busy_connections(self) -> int:
        """Connections held by a borrower."""
        return self._index.count(BUSY)

    @property
    def pending_connections(self) -> int:
        """Connections being drained before reuse."""
        return self._index.count(DRAINING)

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close_all` was called."""
        return self._closed

    @property
    def is_started(self) -> bool:
        """Whether :meth:`start` ran (``acquire`` starts the pool itself)."""
        return self._started

    @property
    def connections(self) -> tuple[WebsocketConnection, ...]:
        """A snapshot of the connections that hold a slot, for inspection."""
        return tuple(self._index)

    @property
    def history(self) -> tuple[TransitionRecord, ...]:
        """The pool's recent transitions, oldest first, closed connections' included.

        Bounded to ``history_size * max_connections`` records, the oldest
        dropped first. Export it with :func:`write_history_jsonl`.
        """
        return tuple(self._history)

    def stats(self) -> PoolStats:
        """A frozen snapshot of the counters and running totals."""
        index, totals = self._index, self._totals
        return PoolStats(
            connecting=index.count(CONNECTING),
            idle=index.count(IDLE),
            busy=index.count(BUSY),
            multiplexed=sum(connection._multiplexed for connection in index.in_state(BUSY)),
            draining=index.count(DRAINING),
            total=index.total,
            max_connections=self._config.max_connections,
            # Not a scan of the queue: stats() may be read from another thread
            # (an OpenTelemetry reader), while the event loop changes the queue.
            waiting=self._count_waiting(),
            opened=index.events["open"],
            failed_connects=index.events["fail"],
            acquired=index.events["acquire"],
            reused=index.reused,
            closed=index.events["close"],
            connections_lost=totals.connections_lost,
            health_checks_failed=totals.health_checks_failed,
            hooks_failed=totals.hooks_failed,
            messages_drained=totals.messages_drained,
            unsolicited_messages=totals.unsolicited_messages,
            acquire_wait=totals.timing("acquire_wait"),
            connect_time=totals.timing("connect_time"),
            name=self.name,
        )

    # -- lifecycle of the pool ---------------------------------------------------------

    async def start(self) -> None:
        """Start the idle sweep and open ``warmup_connections`` in parallel.

        Waits for the warm-up handshakes. Their failures are logged, not
        raised: the pool opens connections on demand anyway. A caller that
        gives up does not cancel them. Calling it again, or after
        :meth:`close_all`, does nothing.
        """
        warm_up = self._begin()
        if warm_up is not None:
            await asyncio.wait({warm_up})  # unlike gather, cancels nothing if we are cancelled

    def _begin(self) -> asyncio.Task[None] | None:
        """Start the sweep and the warm-up handshakes; return the task that reports on them.

        Synchronous, so that ``acquire()`` can start the pool and still queue in
        the order acquirers arrived, instead of after the warm-up.
        """
        if self._started or self._closed:
            return None
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._spawn(_sweep_forever(weakref.ref(self), self._config.cleanup_interval), "sweep")
        self._ensure_keeper()
        warm_up = min(self._config.warmup_connections, self._config.max_connections)
        openings = [self._open_new(abandoned=True) for _ in range(warm_up)]
        if not openings:
            return None
        return self._spawn(self._report_openings(openings, "warm-up"), "warm-up")

    async def _report_openings(self, openings: list[asyncio.Task[None]], what: str) -> bool:
        """Wait for background handshakes; log their failures; return whether all opened."""
        await asyncio.wait(openings)
        outcomes = [task.exception() for task in openings if not task.cancelled()]
        failures = [exc for exc in outcomes if exc is not None]
        if failures:
            logger.warning(
                "%s: %s opened %d of %d connections to %s; first failure: %s",
                self.name, what, len(openings) - len(failures), len(openings), redact_uri(self.uri),
                describe_error(failures[0].__cause__ or failures[0]),
            )  # fmt: skip
        return not failures

    def _ensure_keeper(self) -> None:
        """Run the ``min_connections`` keeper while there is a minimum to keep."""
        if self._config.min_connections and (self._keeper is None or self._keeper.done()):
            self._keeper = self._spawn(self._keep_minimum(), "keep min_connections")

    async def _keep_minimum(self) -> None:
        """Keep ``min_connections`` open: re-open what idle cleanup, expiry or failures closed.

        Woken by :meth:`_on_transition` whenever a connection closes below the
        minimum. Failed openings are retried with exponential backoff and
        jitter, so a server that is down gets no storm from an idle pool.
        """
        backoff = Backoff(self._random)
        self._below_minimum.set()
        while True:
            await self._below_minimum.wait()
            self._below_minimum.clear()
            if self._closing:
                return
            config = self._config  # read afresh: resize() may have changed it
            missing = min(self._missing_minimum, config.max_connections - self._slots_in_use)
            if missing <= 0:
                continue
            openings = [self._open_new(abandoned=True) for _ in range(missing)]
            if await self._report_openings(openings, "min_connections"):
                backoff.reset()
            else:
                backoff.trip()
                await backoff.wait()
                self._below_minimum.set()

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109  (psycopg_pool's API)
        """Shut down gracefully: let borrowers finish, then close everything.

        New acquires and queued waiters fail with
        :class:`ConnectionPoolUnavailableError` at once, idle connections close
        now, and handshakes nobody waits for (warm-up, ``min_connections``) are
        cancelled. Connections that borrowers still hold (or that are being
        opened for, or cleaned after, one) are closed as they come back; after
        ``timeout`` seconds the rest are closed under their borrowers, as
        :meth:`close_all` does. ``None`` waits as long as they take.

        Raises:
            ValueError: ``timeout`` is negative.
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be at least 0 or None, got {timeout!r}")
        if not self._closed and not self._closing:
            self._closing = True
            self._fail_waiters("the pool is closing")
            for connection in self._index.in_state(IDLE):
                self._discard(connection, "pool closing")
            for connection in tuple(self._draining):  # nothing to drain it for any more
                self._discard(connection, "pool closing", abort=True)
            for grant in self._opening:
                if grant.abandoned and grant.opening is not None:
                    grant.opening.cancel()
            self._note_quiescence()
        if not self._closed:
            try:
                async with asyncio.timeout(timeout):
                    await self._quiescent.wait()
            except asyncio.CancelledError:
                await self.close_all()  # a caller that gives up must not leave the pool half-shut
                raise
            except TimeoutError:
                logger.warning(
                    "%s: close(timeout=%g): %d connections still in use; closing them",
                    self.name, timeout, self._in_use,
                )  # fmt: skip
        await self.close_all()

    def expire_connections(self) -> None:
        """Retire every connection opened before this call.

        Idle ones close now; busy and draining ones close when they come
        back; one opening for an acquirer is handed out and closes when it comes
        back, one opening for nobody (warm-up, ``min_connections``) closes when
        its handshake ends. New ones replace them on demand. For a credential
        rotation or a server deploy.
        """
        self._generation += 1
        for connection in self._index.in_state(IDLE):
            self._discard(connection, "expired by expire_connections()")

    def resize(
        self, max_connections: int | None = None, min_connections: int | None = None
    ) -> None:
        """Change the size limits of the pool, running or not (psycopg_pool's ``resize``).

        Growing lets waiters have the new slots at once. Shrinking retires
        idle connections beyond the new ``max_connections`` now, oldest
        first; connections in use are never cut off: those above the limit
        close when they come back.

        Args:
            max_connections: The new limit; ``None`` keeps the current one.
            min_connections: The new minimum; ``None`` keeps the current one.

        Raises:
            TypeError, ValueError: As the constructor raises for these
                arguments; the pool is left as it was.
        """
        config = self._config
        self._config = config.resized(
            max_connections=config.max_connections if max_connections is None else max_connections,
            min_connections=config.min_connections if min_connections is None else min_connections,
        )
        for connection in self._index.in_state(IDLE):  # oldest first
            if not self._over_limit():
                break
            self._discard(
                connection, f"pool resized to max_connections={self._config.max_connections}"
            )
        else:
            self._over_limit()  # remember whether busy ones are above it still
        self._schedule_dispatch()
        if self._started and not (self._closed or self._closing):
            self._ensure_keeper()
        self._wake_keeper_if_short()

    def _over_limit(self) -> bool:
        """Whether more connections hold a slot than ``max_connections`` allows (after a resize).

        Sockets still closing do not count here: they are on their way out,
        and counting them would retire more than the resize asked for.
        """
        over = self._index.total > self._config.max_connections
        self._above_new_limit = over  # until a resize leaves it over again: the hot path skips it
        return over

    async def check(self) -> None:
        """Ping every idle connection now, all at once; retire those that fail.

        For a moment when connections may have died unnoticed (a network
        change, a laptop waking up): acquirers then never meet them.
        """
        await self._check_idle(due_only=False)

    async def wait(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109  (psycopg_pool's API)
        """Start the pool if needed and wait until ``min_connections`` and the warm-up are open.

        Raises:
            ConnectionUnavailableError: They were not all open within ``timeout`` seconds.
            ValueError: ``timeout`` is negative.
        """
        timeout = check_number("timeout", timeout)
        if not self._started:
            self._begin()
        config = self._config
        wanted = min(config.max_connections, max(config.min_connections, config.warmup_connections))
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while self._open_connections < wanted:
            if self._closed or self._closing:
                raise ConnectionPoolUnavailableError("the pool was closed")
            if loop.time() >= give_up:
                raise ConnectionUnavailableError(
                    f"{self.name}: {self._open_connections} of {wanted} connections to "
                    f"{redact_uri(self.uri)} opened within {timeout:g}s"
                )
            await asyncio.sleep(_WAIT_POLL)

    async def close_all(self) -> None:
        """Close every connection and shut the pool down. Idempotent.

        Waiters get :class:`ConnectionPoolUnavailableError`, handshakes and
        drains in flight are cancelled, connections held by borrowers are
        closed under them, and every socket is closed before this returns.
        """
        if not self._closed:
            self._closed = True
            self._fail_waiters("the pool was closed")
            for task in self._workers:
                task.cancel()
            for connection in self.connections:
                if connection.state is not CONNECTING:  # cancelling its handshake retires it
                    self._discard(connection, "pool closed")
        # asyncio.wait, not gather: cancelling this call must not cancel the
        # closes themselves, or a socket whose peer never answers would stay
        # open (websockets only aborts it when close_timeout runs out).
        while self._workers or self._closers:
            await asyncio.wait({*self._workers, *self._closers})

    def _fail_waiters(self, why: str) -> None:
        if self._dispatch_handle is not None:
            self._dispatch_handle.cancel()
            self._dispatch_handle = None
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.queued = False
            if not waiter.future.done():
                waiter.future.set_exception(ConnectionPoolUnavailableError(why))
        self._departed = 0

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close_all()  # __aexit__ will not run: nothing may be left behind
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        await self.close_all()
        return False

    # -- borrowing -----------------------------------------------------------------------

    def acquire(self, *, timeout: AcquireTimeout = PoolTimeout.ACQUIRE_TIMEOUT) -> _Acquiring:
        """Hand out a healthy connection, waiting for one if all are in use.

        Await it (``conn = await pool.acquire()``), or use it as
        ``async with pool.acquire() as conn:``, which releases on exit.

        Reuses the most recently used idle connection (pinging it first if it
        was idle longer than ``health_check_interval``), else opens one in a
        free slot, else waits in line up to ``acquire_timeout``. The whole call,
        health checks, hooks and a handshake included, ends within
        ``acquire_timeout`` plus one ``health_check_timeout`` or
        ``connection_timeout``, whichever is longer.

        Args:
            timeout: Seconds to wait for this call, instead of the pool's
                ``acquire_timeout``; ``None`` waits forever, ``0`` fails at once.

        Returns:
            A lease: a handle on the connection that works until it is
            released, and raises :class:`LeaseEndedError` after.

        Raises:
            ConnectionPoolExhaustedError: None came free in time (also a
                :class:`TimeoutError`).
            TypeError, ValueError: ``timeout`` is not a number of seconds >= 0.
            ConnectionPoolUnavailableError: The pool is closed, or closed meanwhile.
            WrongEventLoopError: The pool started on another event loop.
            ConnectionUnavailableError: A new connection could not be opened.
        """
        return _Acquiring(self, self._acquire(fresh=False, wait=_checked(timeout)))

    def acquire_new(self, *, timeout: AcquireTimeout = PoolTimeout.ACQUIRE_TIMEOUT) -> _Acquiring:
        """Like :meth:`acquire`, but always a newly opened connection.

        When every slot is taken, the least recently used idle connection is
        closed to make room; when none is idle, it waits like :meth:`acquire`.
        """
        return _Acquiring(self, self._acquire(fresh=True, wait=_checked(timeout)))

    async def release(self, connection: WebsocketConnection, *, force_remove: bool = False) -> None:
        """Give a connection back, ending its lease. Returns at once; I/O runs in the background.

        Args:
            connection: What :meth:`acquire` handed out.
            force_remove: Close it instead of keeping it.

        A receive still pending or cut off (a timeout caught inside the
        lease) means a reply may still come: the connection is closed
        instead of kept. A lease that ended already is left alone and a
        warning is logged; one another pool handed out goes back to it.
        """
        self._release_now(connection, force_remove=force_remove)

    def get_connection(
        self, *, timeout: AcquireTimeout = PoolTimeout.ACQUIRE_TIMEOUT
    ) -> contextlib.AbstractAsyncContextManager[ConnectionLease]:
        """Acquire a connection for the ``async with`` block and release it after.

        If the block raises (or is cancelled), a reply may still be on its way,
        so the connection is closed, never handed to the next borrower as it is.
        ``timeout`` is that of :meth:`acquire`.
        """
        return _Borrowed(self, fresh=False, timeout=_checked(timeout))

    def get_new_connection(
        self, *, timeout: AcquireTimeout = PoolTimeout.ACQUIRE_TIMEOUT
    ) -> contextlib.AbstractAsyncContextManager[ConnectionLease]:
        """Like :meth:`get_connection`, with a newly opened connection."""
        return _Borrowed(self, fresh=True, timeout=_checked(timeout))

    async def _acquire(self, *, fresh: bool, wait: AcquireTimeout) -> ConnectionLease:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._check_loop(loop)
        started = loop.time()
        grant = None if self._waiters else self._try_grant(fresh=fresh)
        # The fast path, taken by most acquires of a warm pool: an idle
        # connection that needs no I/O and no hook before it is handed out.
        if grant is not None and grant.opening is None and self._ready_at_once(grant.connection):
            self._totals.record("acquire_wait", loop.time() - started)
            return self._hand_out(grant.connection)
        config = self._config
        if wait is PoolTimeout.ACQUIRE_TIMEOUT:
            wait = config.acquire_timeout
        deadline = None if wait is None else started + wait
        # What comes after the wait (a handshake, health checks, hooks) may
        # take one more of the longest single step, not one per connection tried.
        bound = (
            None
            if deadline is None
            else deadline + max(config.health_check_timeout, config.connection_timeout)
        )
        try:
            async with asyncio.timeout_at(bound) as scope:
                connection = await self._acquire_within(
                    grant, fresh=fresh, wait=wait, deadline=deadline
                )
        except TimeoutError:
            if scope.expired():
                raise self._exhausted(wait) from None
            raise
        self._totals.record("acquire_wait", loop.time() - started)
        return self._hand_out(connection)

    def _check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the pool on ``loop``, or refuse a loop other than the one it started on."""
        if not self._started:
            self._begin()
        if self._loop is not loop and not self._closed:
            raise WrongEventLoopError(
                f"this pool of {redact_uri(self.uri)} started on another event loop; its "
                "connections and tasks belong to that loop: make one pool per event loop "
                "(each asyncio.run() makes a new loop)"
            )

    async def _acquire_within(
        self, grant: _Grant | None, *, fresh: bool, wait: float | None, deadline: float | None
    ) -> WebsocketConnection:
        """Claim a connection and make it fit for hand-out; the slow path of :meth:`_acquire`."""
        while True:
            if grant is None:
                grant = await self._wait_for_grant(fresh=fresh, wait=wait, deadline=deadline)
            if grant.opening is not None:
                connection = await self._take_opening(grant)
                ready = await self._settle(connection) and await self._passes_on_acquire(
                    connection, reused=False
                )
            else:
                connection = grant.connection
                if self._health_check_due(connection) and not await self._passes_health_check(
                    connection
                ):
                    # The other idle ones went as long unproven: likely dead
                    # too. Check them in the background; open a new one now.
                    self._check_idle_soon()
                    fresh = True
                    grant = self._try_grant(fresh=True)
                    continue
                if not await self._settle(connection):
                    # Another idle one may be as unsettled (a server trickling
                    # on all of them), and each costs a bound: open a new one.
                    fresh = True
                    grant = self._try_grant(fresh=True)
                    continue
                ready = await self._ready_for_reuse(connection)
            if ready and self._fit_to_hand_out(connection):
                return connection
            # It was discarded, freeing a slot: ours, since we were already served.
            grant = self._try_grant(fresh=fresh)

    def _fit_to_hand_out(self, connection: WebsocketConnection) -> bool:
        """The last look before a hand-out: still ours, still open, the pool not closed.

        Raises:
            ConnectionPoolUnavailableError: ``close_all()`` ran while the
                connection was being made ready.
        """
        # close_all() took everything; close() lets acquirers already served
        # have theirs, and closes it when it comes back.
        if self._closed:
            if connection.state is BUSY:
                self._discard(connection, "pool closed", abort=True)
            raise ConnectionPoolUnavailableError("the pool was closed")
        if connection.state is not BUSY:  # discarded meanwhile (a flood, a hook)
            return False
        websocket = connection.websocket
        if websocket is None or not connection.is_connected:
            self._retire_lost(connection)
            return False
        if is_receiving(websocket):  # someone (a hook's task) would read the borrower's reply
            self._discard(connection, "a receive was pending at hand-out", abort=True)
            return False
        return True

    def _hand_out(self, connection: WebsocketConnection) -> ConnectionLease:
        """Start a lease: the connection's messages are the borrower's from now on."""
        connection._end_lease()
        connection._lend()
        return ConnectionLease(connection, self)

    def _try_grant(self, *, fresh: bool) -> _Grant | None:
        """Claim a connection without waiting: the bookkeeping step. No I/O, no await."""
        if self._closed or self._closing:
            raise ConnectionPoolUnavailableError(
                "the pool is closed" if self._closed else "the pool is closing"
            )
        index = self._index
        while not fresh and (connection := index.most_recent(IDLE)) is not None:
            if connection.is_connected:  # the free check: no I/O, just the socket's state
                connection._claim()
                return _Grant(connection)
            self._retire_lost(connection)
        # Sockets still finishing their closing handshake count too: the limit
        # bounds what the server sees, not just what the pool tracks.
        if self._slots_in_use >= self._config.max_connections:
            victim = index.oldest(IDLE) if fresh else None
            if victim is None:
                return None
            self._discard(victim, "closed to make room for a new connection", abort=True)
        return self._new_grant(abandoned=False)

    def _open_new(self, *, abandoned: bool) -> asyncio.Task[None]:
        """Open a connection in a free slot; return the handshake's task."""
        opening = self._new_grant(abandoned=abandoned).opening
        assert opening is not None  # noqa: S101
        return opening

    def _new_grant(self, *, abandoned: bool) -> _Grant:
        config = self._config
        connection = WebsocketConnection._for_pool(
            config,
            self,
            connection_id=f"{self.name}/conn-{next(self._connection_numbers)}",
            gate=self._backoff,
            generation=self._generation,
            # Jittered by ±10 % so that connections opened together do not all
            # retire together (psycopg_pool does the same).
            lifetime=None
            if config.max_lifetime is None
            else config.max_lifetime * self._random.uniform(0.9, 1.1),
        )
        self._index.add(connection)
        grant = _Grant(connection)
        grant.abandoned = abandoned
        grant.opening = self._spawn(self._open(grant), f"open {connection.id}")
        self._opening.add(grant)

        def opened(_: asyncio.Task[None]) -> None:
            self._opening.discard(grant)
            # A task cancelled before its first step never runs connect(), which
            # is what fails a handshake that did not finish: do it here instead.
            connection._fail("cancelled before it began")

        grant.opening.add_done_callback(opened)
        return grant

    async def _open(self, grant: _Grant) -> None:
        connection = grant.connection
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await connection.connect()
        except ConnectionHookError:
            self._totals.hooks_failed += 1
            raise
        self._totals.record("connect_time", loop.time() - started)
        self._adopt(connection)
        # Same step as the "open" transition: no one else can take it in between.
        if not grant.abandoned:
            connection._claim()
        elif (why := self._staleness(connection)) is not None:
            self._discard(connection, why)

    async def _take_opening(self, grant: _Grant) -> WebsocketConnection:
        opening = grant.opening
        assert opening is not None  # noqa: S101
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if opening.cancelled() and current is not None and not current.cancelling():
                raise ConnectionPoolUnavailableError("the pool was closed") from None
            self._abandon(grant)
            raise
        if grant.connection.state is not BUSY:  # close_all() retired it before we woke
            raise ConnectionPoolUnavailableError("the pool was closed")
        return grant.connection

    async def _wait_for_grant(
        self, *, fresh: bool, wait: float | None, deadline: float | None
    ) -> _Grant:
        if wait == 0:
            raise self._exhausted(wait)
        limit = self._config.max_waiting
        if limit is not None and self._count_waiting() >= limit:
            raise TooManyWaitersError(
                f"{limit} acquirers already wait for a connection to {redact_uri(self.uri)} "
                f"(max_waiting={limit})"
            )
        waiter = _Waiter(fresh)
        self._waiters.append(waiter)
        self._schedule_dispatch()
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter.future
        except TimeoutError:
            if _was_granted(waiter.future):
                return waiter.future.result()  # granted just as time ran out
            raise self._exhausted(wait) from None
        except asyncio.CancelledError:
            if _was_granted(waiter.future):
                self._abandon(waiter.future.result())
            raise
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
            if waiter.future.cancelled() and waiter.queued:  # left unserved: a dead entry
                self._note_departure(waiter)

    def _note_departure(self, waiter: _Waiter) -> None:
        """Count a dead entry in the queue; sweep them all out once they are half of it.

        Removing each from the middle of the queue would cost O(n) per timeout,
        and leaving them all to the dispatch (which pops them from the front)
        would let them pile up behind a waiter that waits long: a leak while the
        pool stays exhausted. Sweeping at half keeps both costs amortised O(1).
        """
        waiter.departed = True
        self._departed += 1
        if self._departed * 2 > len(self._waiters):
            live = []
            for entry in self._waiters:
                if entry.future.done():
                    entry.queued = False
                else:
                    live.append(entry)
            self._waiters.clear()
            self._waiters.extend(live)
            self._departed = 0

    def _count_waiting(self) -> int:
        """Acquirers in line now, exactly (an acquirer cancelled this very step is not).

        O(n): for stats() and the max_waiting check of an acquirer about to
        queue, never on the fast path. ``tuple()`` copies the queue in one
        step, so that an OpenTelemetry reader on another thread can call this.
        """
        return sum(not waiter.future.done() for waiter in tuple(self._waiters))

    def _abandon(self, grant: _Grant) -> None:
        """Undo a grant whose acquirer left: its connection goes to the next borrower."""
        grant.abandoned = True
        if grant.connection.state is BUSY:  # it was granted, or opened for us, already
            self._return_unused(grant.connection)

    def _exhausted(self, wait: float | None) -> ConnectionPoolExhaustedError:
        what = "acquire_timeout" if wait == self._config.acquire_timeout else "timeout"
        return ConnectionPoolExhaustedError(
            f"no connection to {redact_uri(self.uri)} came free within "
            f"{what}={wait:g}s ({self.stats()})"
        )

    def _ready_at_once(self, connection: WebsocketConnection) -> bool:
        """Whether a reused connection may be handed out with no I/O and no hook at all."""
        return (
            self._config.on_acquire is None
            and not self._health_check_due(connection)
            and self._is_settled(connection)
            and self._staleness(connection) is None
        )

    def _health_check_due(self, connection: WebsocketConnection) -> bool:
        """Whether nothing proved the peer alive within ``health_check_interval``."""
        interval = self._config.health_check_interval
        return interval is not None and connection._unproven_for(time.monotonic()) >= interval

    async def _ready_for_reuse(self, connection: WebsocketConnection) -> bool:
        """Whether a reused connection (health-checked and settled already) may be handed out.

        If not, it was discarded. In order: it is still open; no policy
        retires it; ``on_acquire`` accepts it.
        """
        if not connection.is_connected:
            self._retire_lost(connection)
            return False
        if (why := self._staleness(connection)) is not None:
            self._discard(connection, why)
            return False
        return await self._passes_on_acquire(connection, reused=True)

    async def _passes_health_check(self, connection: WebsocketConnection) -> bool:
        """Ping a claimed connection; discard it if no pong comes in time.

        Unread messages cannot delay the pong: the inbox takes them as they
        arrive, so websockets never stops reading the socket.
        """
        try:
            await connection._ping()
        except (ConnectionUnavailableError, ConnectionClosedError) as exc:
            self._health_check_failed(connection, exc)
            return False
        except BaseException:
            self._return_unused(connection)  # cancelled mid-ping: nothing is owed, keep it
            raise
        return True

    def _health_check_failed(self, connection: WebsocketConnection, exc: WebsocketError) -> None:
        self._totals.health_checks_failed += 1
        if not connection.is_connected:
            self._retire_lost(connection, during="health check")
        else:
            reason = describe_error(exc.__cause__ or exc)
            self._discard(connection, f"health check failed: {reason}", abort=True)

    def _check_idle_soon(self) -> None:
        """Health-check, in the background, every idle connection that is due a check."""
        if self._checking is None or self._checking.done():
            self._checking = self._spawn(self._check_idle(), "health check of idle connections")

    async def _check_idle(self, *, due_only: bool = True) -> None:
        """Ping the idle connections (those due a check), all at once; discard those that fail.

        They stay idle meanwhile: an acquirer may take one, and then checks
        it again itself if it is still due.
        """
        due = [c for c in self._index.in_state(IDLE) if not due_only or self._health_check_due(c)]
        outcomes = await asyncio.gather(*(c._ping() for c in due), return_exceptions=True)
        for connection, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, ConnectionUnavailableError | ConnectionClosedError) and (
                connection.state is IDLE
            ):
                self._health_check_failed(connection, outcome)

    def _return_unused(self, connection: WebsocketConnection) -> None:
        """Give back a connection claimed for an acquirer that never received it.

        Not a release: no borrower used it, so ``on_release`` (which undoes
        what ``on_acquire`` did) and the drain do not run, and a greeting still
        waiting for the first borrower stays for the next one.
        """
        if connection.state is not BUSY:  # discarded meanwhile
            return
        if connection.is_connected:
            self._park(connection)
        else:
            self._retire_lost(connection)

    async def _passes_on_acquire(self, connection: WebsocketConnection, *, reused: bool) -> bool:
        """Run ``on_acquire``. Its failure discards the connection, and is raised for a new one.

        A reused connection that fails is replaced by another; a new one that
        fails raises, or a hook that always fails would open connections forever.
        """
        hook = self._config.on_acquire
        if hook is None or connection.state is not BUSY:
            return connection.state is BUSY
        connection._lend()  # the hook reads what comes now, as the borrower will
        try:
            with connection._hook_access("on_acquire"):
                await run_hook(
                    "on_acquire", hook(connection), seconds=self._config.hook_timeout,
                    where=connection.id, secrets=connection._secrets,
                )  # fmt: skip
        except ConnectionHookError as exc:
            self._totals.hooks_failed += 1
            self._discard(connection, str(exc), abort=True)
            if reused:
                return False
            raise
        except BaseException:
            # Cancelled mid-hook: what the hook left half done is unknown.
            self._discard(connection, "cancelled during on_acquire", abort=True)
            raise
        return True

    # -- messages nobody asked for -------------------------------------------------------

    def _adopt(self, connection: WebsocketConnection) -> None:
        """Give a newly opened connection its inbox: its messages are the pool's until lent."""
        config = self._config
        connection._inbox = Inbox(
            max_messages=config.drain_max_messages,
            max_bytes=config.drain_max_bytes,
            on_message=_weakly(self._take_message, connection),
            on_failure=_weakly(self._inbox_failed, connection),
            keeping=self._keeps_for_first_borrower(connection),
        )
        connection._lend_to_nobody()

    def _keeps_for_first_borrower(self, connection: WebsocketConnection) -> bool:
        """Whether what arrives now is kept for the first borrower, not the pool's.

        What a server sends right after the handshake (a greeting) belongs to
        the first borrower, as on a plain websockets connection, unless
        ``on_connect`` is set: then the hook owns the start of the session,
        and what it left unread is unsolicited.
        """
        return connection._lease_serial == 0 and self._config.on_connect is None

    def _lend_to_nobody(self, connection: WebsocketConnection) -> None:
        inbox = connection._inbox
        if inbox is not None:
            inbox.keeping = self._keeps_for_first_borrower(connection)
        connection._lend_to_nobody()

    def _take_message(self, connection: WebsocketConnection, message: str | bytes) -> None:
        """A message arrived while nobody held the connection: count it, check it, pass it on.

        Runs inside websockets' ``data_received`` (see :mod:`._inbox`): no await.
        """
        state = connection.state
        if state is CLOSED:
            return
        config = self._config
        if connection in self._draining:
            self._totals.messages_drained += 1
            try:
                keep = config.drain_condition(message)
            except Exception as exc:  # noqa: BLE001  (a user drain_condition may raise anything)
                report_callback_failure("drain_condition", exc, connection.id, connection._secrets)
                self._discard(connection, f"drain_condition raised {type(exc).__name__}",
                              abort=True)  # fmt: skip
                return
            if not keep:
                self._discard(connection, "drain_condition rejected a drained message",
                              abort=True)  # fmt: skip
                return
        else:
            self._totals.unsolicited_messages += 1
        if config.on_unsolicited is None:
            return
        inbox = connection._inbox
        assert inbox is not None  # noqa: S101  (it is what called us)
        inbox.undelivered.append(message)
        if connection not in self._deliveries:
            self._deliveries[connection] = self._spawn(
                self._deliver(connection), f"on_unsolicited {connection.id}"
            )

    async def _deliver(self, connection: WebsocketConnection) -> None:
        """Give ``on_unsolicited`` each message taken, in order, as soon as it came."""
        hook = self._config.on_unsolicited
        inbox = connection._inbox
        assert hook is not None  # noqa: S101  (it is set, or nothing was queued)
        assert inbox is not None  # noqa: S101
        try:
            while inbox.undelivered and connection.state is not CLOSED:
                message = inbox.undelivered.popleft()
                with connection._hook_access("on_unsolicited"):
                    await run_hook(
                        "on_unsolicited", hook(connection, message),
                        seconds=self._config.hook_timeout,
                        where=connection.id, secrets=connection._secrets,
                    )  # fmt: skip
        except ConnectionHookError as exc:
            self._totals.hooks_failed += 1
            self._discard(connection, str(exc), abort=True)
        finally:
            if self._deliveries.get(connection) is asyncio.current_task():
                del self._deliveries[connection]

    def _inbox_failed(self, connection: WebsocketConnection, reason: str) -> None:
        """A flood, or a message that cannot be taken: the connection cannot be kept.

        Aborted: a closing handshake would wait behind the flood.
        """
        if connection.state is not CLOSED:
            self._discard(connection, f"{reason}, while {connection.state}", abort=True)

    def _is_settled(self, connection: WebsocketConnection) -> bool:
        """Whether nothing the pool took is half done: no message half received or undelivered."""
        inbox = connection._inbox
        return inbox is None or (not inbox.partial and connection not in self._deliveries)

    async def _settle(self, connection: WebsocketConnection) -> bool:
        """Wait, up to ``health_check_timeout``, for what the pool took to be done with.

        A message half received belongs to nobody yet, and ``on_unsolicited``
        may still be talking on the connection: neither may meet a borrower.
        A connection that does not settle in time is discarded: a server
        trickling one message forever cannot hold an acquire.
        """
        if self._is_settled(connection):
            return connection.state is BUSY
        try:
            async with asyncio.timeout(self._config.health_check_timeout):
                while not self._is_settled(connection) and connection.state is BUSY:
                    if not connection.is_connected:
                        self._retire_lost(connection, during="hand-out")
                        return False
                    delivery = self._deliveries.get(connection)
                    if delivery is not None:
                        await asyncio.wait({delivery})
                    else:
                        await asyncio.sleep(_SETTLE_POLL)
        except TimeoutError:
            self._discard(connection, "messages that arrived while it was idle were still "
                          "arriving or being delivered at hand-out", abort=True)  # fmt: skip
            return False
        except BaseException:
            self._return_unused(connection)
            raise
        return connection.state is BUSY

    # -- giving back -----------------------------------------------------------------------

    def _release_now(
        self,
        lease: WebsocketConnection,
        *,
        force_remove: bool = False,
        dirty: bool = False,
        block: bool = False,
    ) -> None:
        """End a lease without awaiting anything, so that cancellation cannot interrupt it.

        ``block``: given back by the end of a ``get_connection()`` block,
        which says nothing if the lease ended inside it (``conn.close()``).
        """
        if not isinstance(lease, ConnectionLease):  # e.g. None from a failed acquire
            logger.warning("%s: release of %r ignored: not what a pool's acquire() handed out",
                           self.name, lease)  # fmt: skip
            return
        connection = lease._connection
        owner = lease._lender
        if owner is not self:
            logger.warning("release of %r into %s ignored: it is %s's; given back to it instead",
                           lease, self.name, owner.name)  # fmt: skip
            owner._release_now(lease, force_remove=force_remove, dirty=dirty, block=block)
            return
        if not lease._is_live:
            if not (block or self._closed):
                logger.warning("release of %r ignored: that lease has ended already", lease)
            return
        connection._end_lease()  # here, whatever comes next
        websocket = connection.websocket
        config = self._config
        if force_remove:
            self._discard(
                connection, "released with force_remove", abort=lease.owes_reply is not None
            )
        elif not connection.is_connected:
            self._retire_lost(connection)
        elif dirty:
            # A drain cannot tell a reply still on its way from silence: only
            # closing guarantees that the next borrower never receives it.
            self._discard(connection, "borrower left on an error; a reply may still be owed",
                          abort=True)  # fmt: skip
        elif (owed := _owed_reply(lease, websocket)) is not None:
            self._discard(connection, f"{owed} at release; a reply may still come", abort=True)
        elif config.check_server_data_on_release or config.on_release is not None:
            connection._begin_cleaning()
            self._spawn(self._clean(connection), f"clean {connection.id}")
        else:
            self._park(connection)

    def _reclaim(self, connection: WebsocketConnection, serial: int) -> None:
        """Take back the connection of a lease garbage-collected while lent."""
        if connection._lease_serial == serial and connection.state is BUSY:
            connection._end_lease()
            self._discard(connection, "its lease was garbage-collected without release",
                          abort=True)  # fmt: skip

    def _park(self, connection: WebsocketConnection, reason: str | None = None) -> None:
        """Return a connection to idle, unless a policy retires it.

        The only way back to the idle set (see the module docstring). Its
        messages are the pool's from here on.
        """
        why = self._staleness(connection)
        if why is not None:
            self._discard(connection, why)
            return
        self._lend_to_nobody(connection)
        # What the borrower left unread may have been a flood: then it is closed already.
        if connection.state is not CLOSED:
            connection._come_back(reason)

    def _staleness(self, connection: WebsocketConnection) -> str | None:
        """Why a policy retires this connection instead of keeping it, or ``None``."""
        if self._closing:
            return "pool closing"
        if connection.generation != self._generation:
            return "expired by expire_connections()"
        if connection._outlived():
            return f"older than max_lifetime={self._config.max_lifetime:g}s (with jitter)"
        if self._above_new_limit and self._over_limit():
            return f"above max_connections={self._config.max_connections} after a resize"
        return None

    async def _clean(self, connection: WebsocketConnection) -> None:
        """Make a given-back connection fit for reuse: ``on_release``, then the drain."""
        config = self._config
        hook = config.on_release
        if hook is not None:
            try:
                with connection._hook_access("on_release"):
                    await run_hook(
                        "on_release", hook(connection), seconds=config.hook_timeout,
                        where=connection.id, secrets=connection._secrets,
                    )  # fmt: skip
            except ConnectionHookError as exc:
                self._totals.hooks_failed += 1
                self._discard(connection, str(exc), abort=True)
                return
        if connection.state is not DRAINING:  # closed by its user, or the pool, meanwhile
            return
        # Closing: _park closes it right after, so there is nothing to drain for.
        drain = config.check_server_data_on_release and not self._closing
        if drain:
            self._draining.add(connection)
        self._lend_to_nobody(connection)  # what the borrower and the hook left unread, first
        if drain:
            try:
                drained = await self._drain(connection)
            finally:
                self._draining.discard(connection)
            if drained is None:
                return
            reason = f"{drained} messages drained" if drained else None
        else:
            reason = None
        if connection.state is DRAINING:
            self._park(connection, reason)

    async def _drain(self, connection: WebsocketConnection) -> int | None:
        """Wait for a quiet period: how many messages came, or ``None`` if it was discarded.

        The inbox takes the messages as they arrive (each through
        ``drain_condition``, then to ``on_unsolicited``; a flood discards the
        connection at once): this only waits for ``drain_quiet_period`` of
        silence, up to ``drain_timeout``.
        """
        inbox = connection._inbox
        assert inbox is not None  # noqa: S101  (it is open)
        config = self._config
        quiet = config.drain_quiet_period
        began = time.monotonic()
        give_up = began + config.drain_timeout
        while connection.state is DRAINING:
            if not connection.is_connected:
                self._retire_lost(connection, during="drain")
                return None
            now = time.monotonic()
            silent_since = max(began, inbox.last_arrival)
            if now - silent_since >= quiet:
                return inbox.messages
            if now >= give_up:
                self._discard(
                    connection,
                    f"still receiving after drain_timeout="
                    f"{config.drain_timeout:g}s ({inbox.messages} messages drained)",
                )
                return None
            await asyncio.sleep(min(silent_since + quiet, give_up) - now)
        return None

    def _retire_lost(self, connection: WebsocketConnection, *, during: str | None = None) -> None:
        """Retire a connection the peer or the network closed, and heed what the peer said.

        A server going away (1001, 1012) takes the idle siblings with it; one
        that asks to try again later (1013) makes every new handshake back off.
        """
        if connection.state is CLOSED:  # close_all() got there first: not a loss
            return
        code = connection._peer_close_code()
        reason = connection._loss_reason()
        self._totals.connections_lost += 1
        self._discard(connection, reason if during is None else f"{reason}, found during {during}",
                      abort=True)  # fmt: skip
        if code in SERVER_GOING_AWAY:
            for sibling in self._index.in_state(IDLE):
                self._discard(sibling, f"a sibling was closed with code {code}: server going away")
        elif code == TRY_AGAIN_LATER:
            self._backoff.trip()

    async def _close_for_user(self, connection: WebsocketConnection) -> None:
        """Close a connection its borrower (or a hook) closed: retire it, close its socket.

        The close runs in a pool task, so that a caller who stops waiting
        (a timeout) leaves it to finish, counted against ``max_connections``.
        """
        closer = self._discard(connection, "closed by its user")
        if closer is not None:
            await asyncio.shield(closer)

    def _discard(
        self, connection: WebsocketConnection, reason: str, *, abort: bool = False
    ) -> asyncio.Task[Any] | None:
        """Retire a connection now and close its socket.

        A peer that is gone or silent, and a connection with unread data or
        in an unknown state, gets its TCP connection dropped at once
        (``abort``); any other gets a closing handshake in the background,
        during which its socket still counts against ``max_connections``.
        """
        connection._retire(reason)
        delivery = self._deliveries.pop(connection, None)
        if delivery is not None and delivery is not asyncio.current_task():
            delivery.cancel()
        if abort:
            connection._abort_socket()
        elif connection.websocket is not None:
            return self._spawn(connection._close_socket(), f"close {connection.id}", closer=True)
        return None

    # -- background work ---------------------------------------------------------------

    def _sweep(self) -> None:
        """Retire idle connections that died, went stale, or idled past ``idle_timeout``.

        Idle cleanup stops at ``min_connections``, oldest first.
        """
        idle_timeout = self._config.idle_timeout
        for connection in self._index.in_state(IDLE):
            if connection.state is not IDLE:  # retired meanwhile, with a sibling that went away
                continue
            if not connection.is_connected:
                self._retire_lost(connection)
            elif (why := self._staleness(connection)) is not None:
                self._discard(connection, why)
            elif (
                connection.idle_for > idle_timeout
                and self._index.total > self._config.min_connections
            ):
                self._discard(connection, f"idle for more than idle_timeout={idle_timeout:g}s")

    def _spawn(
        self, coroutine: Coroutine[Any, Any, Any], name: str, *, closer: bool = False
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(
            coroutine, name=f"aio_websocket_pool {self.name} {name}"
        )
        (self._closers if closer else self._workers).add(task)
        # Weakly: a pool nobody holds any more must be collectable (and warn),
        # not kept alive by its own background tasks.
        task.add_done_callback(functools.partial(_forget_weakly, weakref.ref(self)))
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._workers.discard(task)
        if task in self._closers:
            self._closers.discard(task)
            self._schedule_dispatch()  # the socket is closed: its capacity is free
            self._wake_keeper_if_short()
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so asyncio never warns about it
        if exc is not None and not isinstance(exc, WebsocketError):
            logger.error("background task %s failed", task.get_name(), exc_info=exc)

    # -- bookkeeping driven by the state machines ------------------------------------------

    def _on_transition(self, connection: WebsocketConnection, record: TransitionRecord) -> None:
        """Called by every connection of this pool after each of its transitions."""
        self._history.append(record)
        self._index.move(connection, record)
        if record.dest is IDLE:
            self._schedule_dispatch()
        elif record.dest is CLOSED:
            self._schedule_dispatch()
            if self._closing:
                self._note_quiescence()
            else:
                self._wake_keeper_if_short()

    def _wake_keeper_if_short(self) -> None:
        """Wake the ``min_connections`` keeper when a connection closed, or its socket did.

        Both matter: a socket still closing holds its slot, so at
        ``max_connections`` the keeper can only open once it is gone.
        """
        if not self._closing and self._missing_minimum:
            self._below_minimum.set()

    def _note_quiescence(self) -> None:
        """Tell :meth:`close` once no connection is held by, opening for or cleaned after anyone.

        Every connection still live when the pool started closing reaches
        ``closed`` in the end: those are the only transitions to watch.
        """
        if not (self._in_use or self._index.count(CONNECTING)):
            self._quiescent.set()

    def _schedule_dispatch(self) -> None:
        # Deferred to the next loop iteration, so that a step that opens and
        # claims a connection in two transitions finishes before anyone else
        # is served. Waiters queue in the meantime: nobody can barge.
        if self._dispatch_handle is None and self._waiters and not self._closed:
            self._dispatch_handle = asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Serve waiters in order while something is free."""
        self._dispatch_handle = None
        waiters = self._waiters
        while waiters:
            waiter = waiters[0]
            if waiter.future.done():
                waiters.popleft()
                waiter.queued = False
                if waiter.departed:  # else its acquirer has yet to notice, and won't count it
                    self._departed -= 1
                continue
            grant = self._try_grant(fresh=waiter.fresh)
            if grant is None:
                return
            waiters.popleft()
            waiter.queued = False
            waiter.future.set_result(grant)

    def __len__(self) -> int:
        return self._index.total

    def __del__(self) -> None:
        if getattr(self, "_started", False) and not self._closed:
            message = (
                f"{self!r} was garbage-collected while open: close it "
                "(async with, close() or close_all()) to close its connections"
            )
            warnings.warn(message, ResourceWarning, source=self, stacklevel=1)
            logger.warning("%s", message)
            loop = self._loop
            if loop is not None and not loop.is_closed():
                for task in self._workers:  # its sweep, its keeper: nothing to do any more
                    loop.call_soon_threadsafe(task.cancel)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._started else "not started"
        return (
            f"<WebsocketConnectionPool {self.name} {redact_uri(self.uri)} {state} [{self.stats()}]>"
        )

    def multiplexed(
        self,
        *,
        key: Callable[[str | bytes], Hashable | None],
        connections: int = 1,
        max_in_flight: int = 256,
        request_timeout: float | None = 30.0,
    ) -> Multiplexer:
        """Many concurrent requests over ``connections`` leases, replies matched by ``key``.

        Use it as ``async with``; ``await mux.request(message, key=..., timeout=...)``
        sends ``message`` and returns the first reply whose ``key(reply)`` is that key.
        See the multiplexing guide (``docs/multiplexing.md``).

        Raises:
            TypeError: ``key`` is not callable, or a count is not an int.
            ValueError: ``connections`` or ``max_in_flight`` is below 1, or
                ``connections`` above ``max_connections``.
        """
        if not callable(key):
            raise TypeError(f"key must be callable, not {type(key).__name__}")
        return Multiplexer(
            self, parse=lambda message: (key(message), message), connections=connections,
            max_in_flight=max_in_flight, request_timeout=request_timeout,
            max_connections=self._config.max_connections,
            on_unsolicited=self._config.on_unsolicited, hook_timeout=self._config.hook_timeout,
        )  # fmt: skip

    def json_rpc(
        self,
        *,
        connections: int = 1,
        max_in_flight: int = 256,
        request_timeout: float | None = 30.0,
        resubscribe: bool = True,
    ) -> JsonRpcClient:
        """A JSON-RPC 2.0 client over ``connections`` multiplexed leases.

        Use it as ``async with``: ``await rpc.call(method, params)``, and
        ``async with rpc.subscribe(...) as sub: async for result in sub``.
        See the multiplexing guide (``docs/multiplexing.md``).

        Raises:
            TypeError, ValueError: As for :meth:`multiplexed`.
        """
        return JsonRpcClient(
            self, connections=connections, max_in_flight=max_in_flight,
            request_timeout=request_timeout, resubscribe=resubscribe,
            max_connections=self._config.max_connections,
            on_unsolicited=self._config.on_unsolicited, hook_timeout=self._config.hook_timeout,
        )  # fmt: skip
