"""What a connection is under its public API: its settings, and the steps its pool takes.

:class:`ConnectionBase` is the private half of
:class:`~aio_websocket_pool.WebsocketConnection`, split off so that the
public class reads as its API. It holds what both halves work on (the
settings, the websocket, the lifecycle, the inbox), the figures its pool
reads (when it last proved the peer alive, whether it outlived its
lifetime), the named steps its pool takes with it (each one transition, or
the end of a lease: the pool never fires a lifecycle event itself), who may
read its messages (its inbox, or a borrower), and its end (retiring it,
closing or dropping its socket). None of it awaits but the closing handshake.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

from ._fsm import CLOSED, CONNECTING, DRAINING, ConnectionLifecycle, Observer
from ._hooks import HookAccess
from ._redact import secrets_of
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
    from websockets.asyncio.client import ClientConnection

    from ._backoff import Backoff
    from ._config import ConnectionHook, DrainConditionCallback, PoolConfig
    from ._connection import WebsocketConnection
    from ._inbox import Inbox

#: Seconds a standalone connection waits for the handshake and for a pong.
DEFAULT_TIMEOUT: Final = 10.0


class ConnectionOwner(Protocol):
    """All that a pooled connection knows of the pool that holds it.

    It hands a close its user asked for to the pool (whose task then closes
    the socket, counted against ``max_connections``). Its transitions go to the
    observer the pool gave it. It never reaches into the pool otherwise: the
    pool gives it its settings, and import-linter keeps this module below the pool's.
    """

    async def _close_for_user(self, connection: WebsocketConnection) -> None:
        """Retire ``connection`` and close its socket."""


class ConnectionBase:
    """The private half of :class:`~aio_websocket_pool.WebsocketConnection` (see above)."""

    id: str
    uri: str
    headers: dict[str, str]
    idle_timeout: float
    check_server_data_on_release: bool
    drain_timeout: float
    drain_condition: DrainConditionCallback
    websocket: ClientConnection | None

    # -- how it is made: its settings ----------------------------------------------

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
        self._secrets = config.secrets  # the pool's, found once (else found on first use)
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

    # -- what its pool reads of it -----------------------------------------------

    def _last_traffic(self) -> float:
        """When it last sent or received (monotonic), what its pool took for it included."""
        arrival = -math.inf if self._inbox is None else self._inbox.last_arrival
        return max(self._last_activity, arrival)

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

    # -- its end ------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        """Fail a pooled connection's pending handshake, which frees its slot.

        Only a handshake still pending fails: close() may have retired it
        meanwhile. A standalone connection holds no slot and stays connecting,
        so that connect() can be tried again, as in 0.1.0.
        """
        if self._pool is not None and self._lifecycle.state is CONNECTING:
            self._lifecycle.fire("fail", reason)

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
