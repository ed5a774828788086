"""One WebSocket client connection and its lifecycle: the public class.

A :class:`WebsocketConnection` wraps a websockets ``ClientConnection`` and a
:class:`~aio_websocket_pool._fsm.ConnectionLifecycle`. Its coroutines do the
I/O (handshake, send, recv, ping, close) and fire the lifecycle event once the
outcome is known; they never decide anything the pool decides.

It works on its own too, as in 0.1.0 (``async with WebsocketConnection(uri=...)
as conn``), but inside a pool its ``acquire``/``release`` belong to the pool.

This module holds its API; the rest is split by job: its private half (the
settings, and the steps its pool takes with it) is :mod:`._connection_base`'s,
talking on it (send, recv, ping, and their errors) :mod:`._talk`'s, and
borrowing a lone connection :mod:`._standalone`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from . import _standalone, _talk
from ._config import (
    DrainConditionCallback,
    check_connect_kwargs,
    check_headers,
    check_history_size,
    check_number,
    check_uri,
    default_drain_condition,
)
from ._connection_base import DEFAULT_TIMEOUT, ConnectionBase
from ._exceptions import ConnectionHookError, ConnectionUnavailableError
from ._fsm import BUSY, CLOSED, CONNECTING, DRAINING, State, TransitionRecord
from ._handshake import open_websocket
from ._hooks import run_hook
from ._redact import describe_error, redact_uri
from ._websocket import is_open

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from ._config import ConnectionHook

_ids: Final = itertools.count(1)

DEFAULT_HISTORY_SIZE: Final = 32


class WebsocketConnection(ConnectionBase):
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

    # -- what it is -------------------------------------------------------------

    @property
    def state(self) -> State:
        """The lifecycle state: connecting, idle, busy, draining or closed."""
        return self._lifecycle.state

    @property
    def history(self) -> tuple[TransitionRecord, ...]:
        """The most recent transitions, oldest first (at most ``history_size``)."""
        return self._lifecycle.history

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
        websocket = self.websocket
        return self._lifecycle.state is not CLOSED and websocket is not None and is_open(websocket)

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

    # What leases and the pool's health checks call.
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
