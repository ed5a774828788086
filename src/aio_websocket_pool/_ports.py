"""The coordinator's ports: what it needs of a connection, and of whoever does its I/O.

Protocols, so that the coordinator can be driven in tests by stand-in
connections and a recording driver (``tests/test_coordinator.py``), and in the
pool by ``WebsocketConnection`` and the pool's I/O modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ._fsm import State

if TYPE_CHECKING:
    import asyncio

    from ._inbox import Inbox


class PooledConnection(Protocol):
    """What the coordinator reads and tells of a connection (a ``WebsocketConnection``)."""

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> State: ...
    @property
    def is_connected(self) -> bool: ...
    @property
    def idle_for(self) -> float: ...
    @property
    def generation(self) -> int: ...
    @property
    def _inbox(self) -> Inbox | None: ...
    @property
    def _lease_serial(self) -> int: ...
    @property
    def _multiplexed(self) -> bool: ...
    @property
    def _has_socket(self) -> bool: ...
    def _unproven_for(self, now: float) -> float: ...
    def _outlived(self) -> bool: ...
    def _peer_close_code(self) -> int | None: ...
    def _loss_reason(self) -> str: ...
    def _claim(self) -> None: ...
    def _begin_cleaning(self) -> None: ...
    def _come_back(self, reason: str | None = None) -> None: ...
    def _end_lease(self) -> int: ...
    def _retire(self, reason: str) -> None: ...
    def _abort_socket(self) -> None: ...
    def _lend_to_nobody(self) -> None: ...


C = TypeVar("C", bound=PooledConnection)


class Grant(Generic[C]):
    """One acquirer's claim on one connection.

    Either a connection already marked busy for the acquirer, or a new one
    whose handshake (``opening``, set by the driver) is in flight. If the
    acquirer leaves before the handshake ends it sets ``abandoned``, and the
    connection is parked idle for others instead of being marked busy for nobody.
    """

    __slots__ = ("abandoned", "connection", "opening")

    def __init__(self, connection: C, *, abandoned: bool = False) -> None:
        self.connection = connection
        self.opening: asyncio.Task[None] | None = None  # the handshake's task
        self.abandoned = abandoned


class Driver(Protocol[C]):
    """How the coordinator's decisions are carried out: the pool's I/O modules."""

    def _start_opening(self, grant: Grant[C]) -> None:
        """Run the handshake of ``grant.connection`` (set ``grant.opening``); then
        call :meth:`Coordinator.opened` or let the connection fail."""

    def _start_cleaning(self, connection: C) -> None:
        """Clean a given-back connection (``on_release``, the drain), then park it."""

    def _close_socket(self, connection: C) -> None:
        """Close a retired connection's socket by a closing handshake in the
        background; call :meth:`Coordinator.socket_closed` once it is closed."""

    def _stop_delivery(self, connection: C) -> None:
        """Stop giving a retired connection's messages to ``on_unsolicited``."""

    def _call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at the next iteration of the event loop."""

    def _wake_keeper(self) -> None:
        """Tell the ``min_connections`` keeper that connections are missing."""

    def _quiescent(self) -> None:
        """Tell a graceful close that nothing is in use any more."""


#: Makes a new connection in ``connecting`` state: ``(generation, lifetime)``.
ConnectionFactory = Callable[[int, "float | None"], C]
