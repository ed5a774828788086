"""One WebSocket client connection and its lifecycle.

A :class:`WebsocketConnection` wraps a websockets ``ClientConnection`` and a
:class:`~aio_websocket_pool._fsm.ConnectionLifecycle`. Its coroutines do the
I/O (handshake, send, recv, ping, close) and fire the lifecycle event once the
outcome is known; they never decide anything the pool decides.

It works on its own too, as in 0.1.0 (``async with WebsocketConnection(uri=...)
as conn``), but inside a pool its ``acquire``/``release`` belong to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, Self

from websockets.asyncio.client import ClientConnection
from websockets.protocol import State as ProtocolState

from . import _standalone, _talk
from ._backoff import Backoff
from ._config import (
    ConnectionHook,
    DrainConditionCallback,
    check_connect_kwargs,
    check_headers,
    check_history_size,
    check_number,
    check_uri,
    default_drain_condition,
)
from ._exceptions import (
    ConnectionHookError,
    ConnectionUnavailableError,
)
from ._fsm import (
    BUSY,
    CLOSED,
    CONNECTING,
    DRAINING,
    ConnectionLifecycle,
    Observer,
    State,
    TransitionRecord,
)
from ._handshake import open_websocket
from ._hooks import HookAccess, run_hook
from ._inbox import Inbox
from ._redact import describe_error, redact_uri, secrets_of
from ._websocket import (
    PooledWebSocket,
    buffered_frames,
    give_back_frames,
    is_receiving,
    loss_reason,
    peer_close_code,
    take_buffered_frames,
)

if TYPE_CHECKING:
    from ._config import PoolConfig


class ConnectionOwner(Protocol):
    """All that a pooled connection knows of the pool that holds it.

    It hands a close its user asked for to the pool (whose task then closes
    the socket, counted against ``max_connections``). Its transitions go to the
    observer the pool gave it. It never reaches into the pool otherwise: the
    pool gives it its settings, and import-linter keeps this module below the pool's.
    """

    async def _close_for_user(self, connection: WebsocketConnection) -> None:
        """Retire ``connection`` and close its socket."""


#: A module constant: reading an enum member off its class costs as much as the
#: rest of :attr:`WebsocketConnection.is_connected` (Python 3.11).
_OPEN: Final = ProtocolState.OPEN
_ids: Final = itertools.count(1)

#: Seconds a standalone connection waits for the handshake and for a pong.
DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_HISTORY_SIZE: Final = 32


class WebsocketConnection:
    """A WebSocket client connection with a state machine and a history.

    Args:
        uri: ``ws://`` or ``wss://`` URI to connect to.
        headers: Extra HTTP headers for the handshake (sent as websockets'
            ``additional_headers``). Their values never appear in reprs or logs.
        idle_timeout: Seconds without activity after which the pool retires it.
        check_server_data_on_release: Kept from 0.1.0; the pool decides draining.
        drain_timeout: Kept from 0.1.0; the pool decides draining.
        drain_condition: Kept from 0.1.0; the pool decides draining.
        history_size: How many transitions :attr:`history` keeps.
        **kwargs: Passed to ``websockets.asyncio.client.connect``.

    Raises:
        TypeError: An argument has the wrong type, or websockets does not take
            one of ``kwargs``.
        ValueError: An argument is out of range, or the URI is not ws/wss.
    """

    websocket: ClientConnection | None

    def __init__(
        self,
        *,
        uri: str,
        headers: dict[str, str] | None = None,
        idle_timeout: float = 30.0,
        check_server_data_on_release: bool = False,
        drain_timeout: float = 5.0,
        drain_condition: DrainConditionCallback | None = None,
        history_size: int = DEFAULT_HISTORY_SIZE,
        **kwargs: Any,
    ) -> None:
        self.uri = check_uri(uri)
        self.headers = check_headers(headers)
        self.idle_timeout = check_number("idle_timeout", idle_timeout)
        self.check_server_data_on_release = check_server_data_on_release
        self.drain_timeout = check_number("drain_timeout", drain_timeout)
        self.drain_condition = drain_condition or default_drain_condition
        self._setup(
            history_size=check_history_size(history_size),
            connect_kwargs=check_connect_kwargs(self.uri, kwargs),
            connection_timeout=DEFAULT_TIMEOUT,
            pong_timeout=DEFAULT_TIMEOUT,
            max_attempts=1,
            pool=None,
            observer=None,
            connection_id=f"conn-{next(_ids)}",
        )

    @classmethod
    def _for_pool(
        cls,
        config: PoolConfig,
        owner: ConnectionOwner,
        *,
        observer: Observer,
        connection_id: str,
        gate: Backoff,
        generation: int,
        lifetime: float | None,
    ) -> Self:
        """A connection in ``connecting`` state, built from an already checked config.

        ``observer`` is told of each of its transitions (the pool's state
        index), ``gate`` is the pool's shared backoff for handshakes,
        ``generation`` its expiry epoch, ``lifetime`` this connection's
        jittered ``max_lifetime``.
        """
        self = cls.__new__(cls)
        self.uri = config.uri
        self.headers = config.headers
        self.idle_timeout = config.idle_timeout
        self.check_server_data_on_release = config.check_server_data_on_release
        self.drain_timeout = config.drain_timeout
        self.drain_condition = config.drain_condition
        self._setup(
            history_size=config.history_size,
            connect_kwargs=config.connect_kwargs,
            connection_timeout=config.connection_timeout,
            pong_timeout=config.health_check_timeout,
            max_attempts=config.max_retries,
            pool=owner,
            observer=observer,
            connection_id=connection_id,
        )
        self._on_connect = config.on_connect
        self._hook_timeout = config.hook_timeout
        self._gate = gate
        self.generation = generation
        if lifetime is not None:
            self._lifetime = lifetime
        return self

    def _setup(
        self,
        *,
        history_size: int,
        connect_kwargs: dict[str, Any],
        connection_timeout: float,
        pong_timeout: float,
        max_attempts: int,
        pool: ConnectionOwner | None,
        observer: Observer | None,
        connection_id: str,
    ) -> None:
        self.id = connection_id
        self.websocket = None
        self._connect_kwargs = connect_kwargs
        self._connection_timeout = connection_timeout
        self._pong_timeout = pong_timeout
        self._max_attempts = max_attempts
        self._pool = pool
        self._on_connect: ConnectionHook | None = None
        self._hook_timeout = DEFAULT_TIMEOUT
        self._gate: Backoff | None = None
        self._hooks = HookAccess()  # who may talk on it: the hook running on it, if any
        self._inbox: Inbox | None = None  # set by its pool once it is open
        self._lease_serial = 0  # bumped at each hand-out: older leases are ended
        self._multiplexed = False  # a multiplexer holds its lease (stats: multiplexed)
        self.generation = 0
        self._lifetime = math.inf
        self._opened_at = math.inf  # monotonic clock; set once the handshake succeeds
        self._last_activity = time.monotonic()
        self._lifecycle = ConnectionLifecycle(
            self.id,
            history_size=history_size,
            observer=observer,
            subject=self,
        )

    # -- what it is -------------------------------------------------------------

    @property
    def state(self) -> State:
        """The lifecycle state: connecting, idle, busy, draining or closed."""
        return self._lifecycle.state

    @property
    def history(self) -> tuple[TransitionRecord, ...]:
        """The most recent transitions, oldest first (at most ``history_size``)."""
        return tuple(self._lifecycle.history)

    @property
    def is_busy(self) -> bool:
        """Whether a borrower holds it."""
        return self._lifecycle.state is BUSY

    @property
    def is_draining(self) -> bool:
        """Whether the pool is draining stray server data from it."""
        return self._lifecycle.state is DRAINING

    @property
    def is_closed(self) -> bool:
        """Whether it was retired for good."""
        return self._lifecycle.state is CLOSED

    @property
    def is_connected(self) -> bool:
        """Whether the lifecycle is live and the WebSocket is open (no I/O)."""
        return (
            self._lifecycle.state is not CLOSED
            and self.websocket is not None
            and self.websocket.state is _OPEN
        )

    @property
    def last_activity(self) -> float:
        """Wall-clock time (``time.time()``) of the last traffic: open, send, receive, pong."""
        return time.time() - self.idle_for

    @property
    def idle_for(self) -> float:
        """Seconds since the last traffic (monotonic clock).

        Hand-outs and releases do not count: a connection nobody sent or
        received on is as unproven after a borrower gave it back as before.
        A message the pool took while nobody held it counts.
        """
        return time.monotonic() - self._last_traffic()

    def _last_traffic(self) -> float:
        """When it last sent or received (monotonic), what its pool took for it included."""
        arrival = -math.inf if self._inbox is None else self._inbox.last_arrival
        return max(self._last_activity, arrival)

    @property
    def latency(self) -> float:
        """The last ping round trip in seconds (0.0 before any).

        Measured by websockets for every pong: its keepalive pings
        (``ping_interval``) and the pool's health checks alike.
        """
        return 0.0 if self.websocket is None else self.websocket.latency

    @property
    def age(self) -> float:
        """Seconds since the handshake succeeded (0.0 before it has)."""
        return max(0.0, time.monotonic() - self._opened_at)

    def _unproven_for(self, now: float) -> float:
        """Seconds since anything proved the peer alive: traffic, or any pong."""
        websocket = self.websocket
        pong_at = websocket.pong_at if isinstance(websocket, PooledWebSocket) else -math.inf
        return now - max(self._last_traffic(), pong_at)

    def _outlived(self) -> bool:
        """Whether it is older than its (jittered) ``max_lifetime``."""
        # The clock is read only where a lifetime is set: this runs on every release.
        return self._lifetime != math.inf and time.monotonic() - self._opened_at > self._lifetime

    @functools.cached_property
    def _secrets(self) -> tuple[str, ...]:
        """What its logs and reports must never show (see :func:`secrets_of`)."""
        return secrets_of(self.uri, self.headers)

    @property
    def _has_socket(self) -> bool:
        """Whether it holds a socket still to be closed."""
        return self.websocket is not None

    def _buffered_frames(self) -> int:
        """Frames received that nobody has read yet (no I/O)."""
        websocket = self.websocket
        return 0 if websocket is None else buffered_frames(websocket)

    def _peer_close_code(self) -> int | None:
        """The close code the peer sent, if it sent a close frame."""
        websocket = self.websocket
        return None if websocket is None else peer_close_code(websocket)

    # -- what its pool does with it (each a transition, or the end of a lease) -----

    def _claim(self) -> None:
        """Mark it busy for an acquirer: idle → busy, or connecting → busy once open."""
        self._lifecycle.fire("acquire")

    def _begin_cleaning(self) -> None:
        """busy → draining: its pool cleans it after a borrower before reuse."""
        self._lifecycle.fire("drain")

    def _come_back(self, reason: str | None = None) -> None:
        """Back to idle: from busy (given back unused, or released) or from draining."""
        self._lifecycle.fire("settle" if self._lifecycle.state is DRAINING else "release", reason)

    def _end_lease(self) -> int:
        """End whatever lease stands for it now; return the serial of the next one."""
        self._lease_serial += 1
        return self._lease_serial

    # -- who may read it ----------------------------------------------------------

    def _lend_to_nobody(self) -> None:
        """Route its messages to its inbox from now on: nobody holds it.

        What the last borrower left unread goes first, in order.
        """
        websocket, inbox = self.websocket, self._inbox
        if isinstance(websocket, PooledWebSocket) and inbox is not None:
            if buffered_frames(websocket):  # rarely: only what a borrower left unread
                for frame in take_buffered_frames(websocket):
                    inbox.put(frame)
            websocket.sink = inbox.put

    def _lend(self) -> None:
        """Let websockets' ``recv()`` have its messages again, for a hook or a borrower.

        What was kept for the first borrower (a greeting) goes back first.
        """
        websocket, inbox = self.websocket, self._inbox
        if isinstance(websocket, PooledWebSocket) and inbox is not None:
            websocket.sink = None
            if inbox.keeping:
                give_back_frames(websocket, inbox.take_kept())
            inbox.restart_count()

    def _hook_access(self, hook: str) -> contextlib.AbstractContextManager[None]:
        """Let a hook send and receive on the pooled connection while it runs.

        Raises:
            ConnectionHookError: On exit, if the hook left a receive pending
                or cut off: a reply may still come (see :class:`HookAccess`).
        """
        return self._hooks.running(
            hook, left_receiving=self._is_receiving, where=self.id, secrets=self._secrets
        )

    def _is_receiving(self) -> bool:
        websocket = self.websocket
        return websocket is not None and is_receiving(websocket)

    # -- opening and closing ------------------------------------------------------

    async def connect(self) -> None:
        """Open the WebSocket (retrying transient failures inside a pool).

        Does nothing if it is already open. A connection is opened once: one
        that was closed, or whose socket the peer closed (it is then retired
        here), is never reopened; open a new one instead. A standalone
        connection whose handshake failed may be connected again.

        Raises:
            HandshakeRejectedError: The server answered the handshake with 4xx.
            ConnectionUnavailableError: It could not be opened, or was closed.
        """
        if self._lifecycle.state is not CONNECTING:
            if not self.is_connected:
                self._retire(self._loss_reason())
                raise ConnectionUnavailableError(f"{self.id} has been closed")
            return
        try:
            websocket = await open_websocket(
                self.uri,
                headers=self.headers,
                connect_kwargs=self._connect_kwargs,
                open_timeout=self._connection_timeout,
                max_attempts=self._max_attempts,
                gate=self._gate,
                secrets=self._secrets,
                who=self.id,
            )
            if self._lifecycle.state is CONNECTING and self._on_connect is not None:
                await self._initialise(websocket, self._on_connect)
        except ConnectionHookError as exc:
            self._fail(str(exc))  # names the hook and the exception's type, nothing more
            raise
        except ConnectionUnavailableError as exc:
            self._fail(describe_error(exc.__cause__ or exc))
            raise
        except BaseException:
            self._fail("cancelled")
            raise
        if self._lifecycle.state is not CONNECTING:
            # close() ran, or a concurrent connect() won, while we were opening.
            if websocket is not self.websocket:
                await websocket.close()
            if self._lifecycle.state is CLOSED:
                raise ConnectionUnavailableError(f"{self.id} was closed while opening")
            return
        self.websocket = websocket
        self._opened_at = self._last_activity = time.monotonic()
        self._lifecycle.fire("open")

    async def _initialise(self, websocket: ClientConnection, on_connect: ConnectionHook) -> None:
        """Run ``on_connect`` on the new WebSocket before anyone can be handed it.

        The connection is still ``connecting`` meanwhile: no acquirer can see
        it, and a failure frees its slot like a failed handshake. The socket
        of a connection whose hook failed is dropped without a closing
        handshake: whatever the hook left half done on the server, ends there.
        """
        self.websocket = websocket
        try:
            with self._hook_access("on_connect"):
                await run_hook(
                    "on_connect", on_connect(self), seconds=self._hook_timeout,
                    where=self.id, secrets=self._secrets,
                )  # fmt: skip
        except BaseException:
            self._abort_socket()
            raise

    def _fail(self, reason: str) -> None:
        """Fail a pooled connection's pending handshake, which frees its slot.

        Only a handshake still pending fails: close() may have retired it
        meanwhile. A standalone connection holds no slot and stays connecting,
        so that connect() can be tried again, as in 0.1.0.
        """
        if self._pool is not None and self._lifecycle.state is CONNECTING:
            self._lifecycle.fire("fail", reason)

    async def close(self) -> None:
        """Retire it and close the WebSocket. Idempotent.

        A pooled connection is closed through what ``acquire()`` handed out
        (or by the hook running on it), never through a reference kept.
        """
        if self._pool is not None and self._lifecycle.state is not CLOSED:
            _talk.usable_websocket(self)
        await self._close()

    async def _close(self) -> None:
        pool = self._pool
        if pool is None:
            self._retire("closed by its user")
            await self._close_socket()
        else:  # its socket closes in a pool task, counted against max_connections till done
            await pool._close_for_user(self)

    def _retire(self, reason: str) -> None:
        """Move it to ``closed`` without I/O; :meth:`_close_socket` does the rest."""
        state = self._lifecycle.state
        if state is CLOSED:
            return
        self._lifecycle.fire("fail" if state is CONNECTING else "close", reason)

    async def _close_socket(self) -> None:
        """Close the WebSocket (bounded by websockets' ``close_timeout``)."""
        websocket, self.websocket = self.websocket, None
        if websocket is not None:
            await websocket.close()

    def _abort_socket(self) -> None:
        """Drop the TCP connection now, without a closing handshake.

        For a peer that is gone or does not answer: waiting for its close
        frame would hold a socket (and a pool slot) for ``close_timeout``.
        """
        websocket, self.websocket = self.websocket, None
        if websocket is not None:
            websocket.transport.abort()

    def _loss_reason(self) -> str:
        """Why it is not open, in words fit for its history."""
        return loss_reason(self.websocket)

    # -- borrowing (standalone use, see :mod:`._standalone`; a pool does this itself) --

    async def acquire(self) -> None:
        """Mark a standalone connection busy, opening it first if needed.

        Raises:
            ConnectionBusyError: It is busy or draining, or belongs to a pool
                (pooled connections are acquired through the pool).
            ConnectionUnavailableError: It is closed or could not be opened.
        """
        await _standalone.acquire(self)

    async def release(self) -> None:
        """Mark a standalone connection idle again.

        Raises:
            ConnectionBusyError: It belongs to a pool: what ``pool.acquire()``
                handed out is released, not the pooled connection behind it.
        """
        _standalone.release(self)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Self]:
        """Acquire it for the ``async with`` block, release it after."""
        await self.acquire()
        try:
            yield self
        finally:
            await self.release()

    # -- I/O for the borrower (see :mod:`._talk`) --------------------------------

    # What leases, the pool's health checks and multiplexers' channels call.
    _send = _talk.send
    _recv = _talk.recv
    _ping = _talk.ping

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary (bytes-like) message.

        Raises:
            TypeError: ``message`` is neither ``str`` nor bytes-like.
            ConnectionBusyError: The caller has not acquired it.
            ConnectionClosedError: It closed before or while sending.
        """
        websocket = _talk.usable_websocket(self)
        try:
            await _talk.send(self, websocket, message)
        except asyncio.CancelledError:
            self._hooks.cut_off = True  # only a hook may talk on a pooled connection
            raise

    async def recv(self) -> str | bytes:
        """Receive the next message.

        Raises:
            ConnectionBusyError: The caller has not acquired it.
            ConnectionClosedError: It closed before or while receiving.
        """
        websocket = _talk.usable_websocket(self)
        try:
            return await _talk.recv(self, websocket)
        except asyncio.CancelledError:
            self._hooks.cut_off = True  # only a hook may talk on a pooled connection
            raise

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """``async for message in conn``: every message until the peer closes normally."""
        return _talk.messages(self)

    async def ping(self) -> float:
        """Ping the server and wait for the pong; return the round trip in seconds.

        Raises:
            ConnectionBusyError: It belongs to a pool, and the caller is not
                the hook running on it (borrowers ping through their lease).
            ConnectionUnavailableError: It is not open, or no pong came in time.
            ConnectionClosedError: It closed while waiting for the pong.
        """
        if self._pool is not None:
            _talk.usable_websocket(self)
        return await _talk.ping(self)

    # -- plumbing -----------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<WebsocketConnection {self.id} {redact_uri(self.uri)} [{self.state}]>"

    def __str__(self) -> str:
        return f"WebsocketConnection({self.id})"

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        await self.close()
        return False
