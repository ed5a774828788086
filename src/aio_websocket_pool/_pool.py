"""The public pool: its API, wired to the coordinator and the I/O modules.

Theory of operation. Every decision (who gets which connection, which
connections open, retire or wait) is a synchronous step of the
:class:`~aio_websocket_pool._coordinator.Coordinator`; the I/O it asks for is
carried out by small modules, wired to it in :mod:`._machinery` (which also
carries out the pool's own warm-up, resize and closes):

* :mod:`._lending`: where every acquire starts (its fast path) and every lease ends;
* :mod:`._handout`: the slow path of an acquire (waiting in line, checks);
* :mod:`._opening`: handshakes, as pool tasks;
* :mod:`._cleaning`: messages nobody asked for, and the cleaning after a release;
* :mod:`._maintenance`: the idle sweep, ``min_connections``, health checks;
* :mod:`._tasks`: the background tasks themselves.

:mod:`._multiplexing` builds what :meth:`WebsocketConnectionPool.multiplexed` and
:meth:`WebsocketConnectionPool.json_rpc` return.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import warnings
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from ._borrow import AcquireTimeout, Acquiring, Borrowed, PoolTimeout, checked
from ._config import (
    DEFAULT_DRAIN_MAX_BYTES,
    DEFAULT_DRAIN_MAX_MESSAGES,
    ConnectionHook,
    DrainConditionCallback,
    PoolConfig,
    UnsolicitedMessageHook,
    check_name,
    check_number,
)
from ._connection import DEFAULT_HISTORY_SIZE, WebsocketConnection
from ._exceptions import WrongEventLoopError
from ._fsm import BUSY, DRAINING, IDLE, TransitionRecord
from ._lease import ConnectionLease
from ._lending import Lending
from ._machinery import Machinery
from ._multiplexing import json_rpc_client, multiplexer
from ._redact import redact_uri
from ._stats import PoolStats

if TYPE_CHECKING:
    from ._jsonrpc import JsonRpcClient
    from ._mux import Multiplexer

logger: Final = logging.getLogger("aio_websocket_pool")
_pool_numbers: Final = itertools.count(1)


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
            retired when next released or found idle (a multiplexer's are
            replaced by it). ``None``: no limit.
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
        config = PoolConfig.from_arguments(
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
        self.uri = config.uri
        self.headers = config.headers
        self._machinery = machinery = Machinery(config, name=name)
        self._core = core = machinery.core
        self._tasks = machinery.tasks
        self._maintenance = machinery.maintenance
        self._lending = Lending(self, core, machinery.handout)
        self._loop: asyncio.AbstractEventLoop | None = None  # the one it started on
        self._started = False

    # -- what it holds (every count derived from connection states) ----------------

    @property
    def total_connections(self) -> int:
        """Connections that hold a slot: connecting, idle, busy or draining."""
        return self._core.index.total

    @property
    def available_connections(self) -> int:
        """Idle connections, ready to be handed out."""
        return self._core.index.count(IDLE)

    @property
    def busy_connections(self) -> int:
        """Connections held by a borrower."""
        return self._core.index.count(BUSY)

    @property
    def pending_connections(self) -> int:
        """Connections being drained before reuse."""
        return self._core.index.count(DRAINING)

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close_all` was called."""
        return self._core.closed

    @property
    def is_started(self) -> bool:
        """Whether :meth:`start` ran (``acquire`` starts the pool itself)."""
        return self._started

    @property
    def connections(self) -> tuple[WebsocketConnection, ...]:
        """A snapshot of the connections that hold a slot, for inspection."""
        return tuple(self._core.index)

    @property
    def history(self) -> tuple[TransitionRecord, ...]:
        """The pool's recent transitions, oldest first, closed connections' included.

        Bounded to ``history_size * max_connections`` records, the oldest
        dropped first. Export it with :func:`write_history_jsonl`.
        """
        return tuple(self._core.history)

    def stats(self) -> PoolStats:
        """A frozen snapshot of the counters and running totals."""
        return self._core.stats()

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
        """Start the upkeep and the warm-up handshakes; return the task that reports on them.

        Synchronous, so that ``acquire()`` can start the pool and still queue in
        the order acquirers arrived, instead of after the warm-up.
        """
        if self._started or self._core.closed:
            return None
        self._loop = asyncio.get_running_loop()
        self._started = True
        return self._machinery.warm_up()

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109  (psycopg_pool's API)
        """Shut down gracefully: let borrowers finish, then close everything.

        New acquires and queued waiters fail with
        :class:`ConnectionPoolUnavailableError` at once, idle connections close
        now, and handshakes nobody waits for (warm-up, ``min_connections``) are
        cancelled. Connections that borrowers still hold (or that are being
        opened for, or cleaned after, one) are closed as they come back; after
        ``timeout`` seconds the rest are closed under their borrowers, as
        :meth:`close_all` does. ``None`` waits as long as they take; an open
        multiplexer (:meth:`json_rpc`, :meth:`multiplexed`) holds its
        connections until its ``async with`` ends.

        Raises:
            ValueError: ``timeout`` is negative.
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be at least 0 or None, got {timeout!r}")
        await self._machinery.close(timeout)

    async def close_all(self) -> None:
        """Close every connection and shut the pool down. Idempotent.

        Waiters get :class:`ConnectionPoolUnavailableError`, handshakes and
        drains in flight are cancelled, connections held by borrowers are
        closed under them, and every socket is closed before this returns.
        """
        await self._machinery.close_all()

    def expire_connections(self) -> None:
        """Retire every connection opened before this call.

        Idle ones close now; busy and draining ones close when they come
        back; one opening for an acquirer is handed out and closes when it comes
        back, one opening for nobody (warm-up, ``min_connections``) closes when
        its handshake ends. New ones replace them on demand. For a credential
        rotation or a server deploy.
        """
        self._core.expire()

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
        self._machinery.resize(max_connections, min_connections, running=self._started)

    async def check(self) -> None:
        """Ping every idle connection now, all at once; retire those that fail.

        For a moment when connections may have died unnoticed (a network
        change, a laptop waking up): acquirers then never meet them.
        """
        await self._maintenance.check_idle(due_only=False)

    async def wait(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109  (psycopg_pool's API)
        """Start the pool if needed and wait until ``min_connections`` and the warm-up are open.

        Raises:
            ConnectionUnavailableError: They were not all open within ``timeout`` seconds.
            ValueError: ``timeout`` is negative.
        """
        timeout = check_number("timeout", timeout)
        if not self._started:
            self._begin()
        config = self._core.config
        wanted = min(config.max_connections, max(config.min_connections, config.warmup_connections))
        await self._maintenance.wait_open(wanted, timeout)

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

    def acquire(self, *, timeout: AcquireTimeout = PoolTimeout.ACQUIRE_TIMEOUT) -> Acquiring:
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
        return Acquiring(self._lending, fresh=False, wait=checked(timeout))

    def acquire_new(self, *, timeout: AcquireTimeout = PoolTimeout.ACQUIRE_TIMEOUT) -> Acquiring:
        """Like :meth:`acquire`, but always a newly opened connection.

        When every slot is taken, the least recently used idle connection is
        closed to make room; when none is idle, it waits like :meth:`acquire`.
        """
        return Acquiring(self._lending, fresh=True, wait=checked(timeout))

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
        self._lending.release_now(connection, force_remove=force_remove)

    def get_connection(
        self, *, timeout: AcquireTimeout = PoolTimeout.ACQUIRE_TIMEOUT
    ) -> contextlib.AbstractAsyncContextManager[ConnectionLease]:
        """Acquire a connection for the ``async with`` block and release it after.

        If the block raises (or is cancelled), a reply may still be on its way,
        so the connection is closed, never handed to the next borrower as it is.
        ``timeout`` is that of :meth:`acquire`.
        """
        return Borrowed(self._lending, fresh=False, timeout=checked(timeout))

    def get_new_connection(
        self, *, timeout: AcquireTimeout = PoolTimeout.ACQUIRE_TIMEOUT
    ) -> contextlib.AbstractAsyncContextManager[ConnectionLease]:
        """Like :meth:`get_connection`, with a newly opened connection."""
        return Borrowed(self._lending, fresh=True, timeout=checked(timeout))

    def _check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the pool on ``loop``, or refuse a loop other than the one it started on."""
        if not self._started:
            self._begin()
        if self._loop is not loop and not self._core.closed:
            raise WrongEventLoopError(
                f"this pool of {redact_uri(self.uri)} started on another event loop; its "
                "connections and tasks belong to that loop: make one pool per event loop "
                "(each asyncio.run() makes a new loop)"
            )

    def _reclaim(self, connection: WebsocketConnection, serial: int) -> None:
        """Take back the connection of a lease garbage-collected while lent."""
        self._core.reclaim(connection, serial)

    def __len__(self) -> int:
        return self._core.index.total

    def __del__(self) -> None:
        if getattr(self, "_started", False) and not self._core.closed:
            message = (
                f"{self!r} was garbage-collected while open: close it "
                "(async with, close() or close_all()) to close its connections"
            )
            warnings.warn(message, ResourceWarning, source=self, stacklevel=1)
            logger.warning("%s", message)
            loop = self._loop
            if loop is not None and not loop.is_closed():
                for task in self._tasks.workers:  # its sweep, its keeper: nothing to do any more
                    loop.call_soon_threadsafe(task.cancel)

    def __repr__(self) -> str:
        state = "closed" if self._core.closed else "open" if self._started else "not started"
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
        return multiplexer(
            self, self._core.config, key=key, connections=connections,
            max_in_flight=max_in_flight, request_timeout=request_timeout,
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
        return json_rpc_client(
            self, self._core.config, connections=connections, max_in_flight=max_in_flight,
            request_timeout=request_timeout, resubscribe=resubscribe,
        )  # fmt: skip
