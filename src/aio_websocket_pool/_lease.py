"""What ``pool.acquire()`` hands out: one lease on a pooled connection.

A pooled connection outlives its borrowers; a borrower's handle must not. A
:class:`ConnectionLease` is made for each hand-out and stands for that
hand-out only (asyncpg's ``PoolConnectionProxy`` is the model). Once the
lease ends (released, ``force_remove``, ``close()``, the pool closed) the
connection may already be lent to someone else, so every use of the old
handle raises :class:`~aio_websocket_pool.LeaseEndedError`: a former
borrower can neither read the next borrower's reply nor give back the
next borrower's connection.

The lease also watches what the borrower does with it. A receive that was
cancelled (``wait_for`` timing out is one) or is still pending, and a send
that was interrupted, mean that a reply may still arrive: the pool then
closes the connection on release instead of lending it on (see
:attr:`ConnectionLease.owes_reply`).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from . import _talk
from ._connection import WebsocketConnection
from ._exceptions import ConnectionBusyError, LeaseEndedError
from ._fsm import BUSY, State, TransitionRecord
from ._redact import redact_uri
from ._websocket import is_receiving

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from ._pool import WebsocketConnectionPool

logger: Final = logging.getLogger("aio_websocket_pool")


class ConnectionLease(WebsocketConnection):
    """One hand-out of a pooled connection: a handle that dies when the lease ends.

    A :class:`WebsocketConnection` (``isinstance`` holds, and every 0.1.0
    property and method is here), backed by the pooled connection while the
    lease lasts. After it ends, only :attr:`id` and ``repr`` still work.

    Raises:
        LeaseEndedError: From every method and property once the lease ended.
        ConnectionBusyError: From :meth:`recv` while another task of the
            borrower is receiving on the same lease.
    """

    # What the borrower is doing with it; class defaults, set on the instance
    # once they change: one lease is made per hand-out.
    _receiving = False
    _sending = 0
    _cut_off: str | None = None  # what was cut off, that a reply may still answer

    # Not WebsocketConnection.__init__: a lease owns no socket and no state
    # machine; it borrows the pooled connection's.
    def __init__(self, connection: WebsocketConnection, lender: WebsocketConnectionPool) -> None:
        self._connection = connection
        self._lender = lender  # the pool: a release goes back to it
        self._serial = connection._lease_serial
        self.id = connection.id

    # -- is it still ours ---------------------------------------------------------------

    @property
    def _is_live(self) -> bool:
        connection = self._connection
        return connection._lease_serial == self._serial and connection._lifecycle.state is BUSY

    def _live(self) -> WebsocketConnection:
        """The pooled connection, while this lease lasts."""
        if not self._is_live:
            raise LeaseEndedError(
                f"{self.id}: this lease has ended (released or closed), and the connection "
                "may be lent to someone else: acquire a new one"
            )
        return self._connection

    def _live_websocket(self) -> tuple[WebsocketConnection, ClientConnection]:
        """The pooled connection and its websocket, while this lease lasts."""
        connection = self._live()
        websocket = connection.websocket
        if websocket is None:  # pragma: no cover  (busy implies open)
            raise LeaseEndedError(f"{self.id}: this lease has ended")
        return connection, websocket

    @property
    def owes_reply(self) -> str | None:
        """Why a reply may still arrive (a receive or send pending or cut off), or ``None``."""
        if self._receiving:
            return "a receive was still pending"
        if self._sending:
            return "a send was still pending"
        return self._cut_off

    # -- talking ---------------------------------------------------------------------------

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        connection, websocket = self._live_websocket()
        self._sending += 1
        try:
            await connection._send(websocket, message)
        except asyncio.CancelledError:
            self._cut_off = "a send was cut off"  # part of it, or all of it, may have gone out
            raise
        finally:
            self._sending -= 1
        # Released (by another task) while it was stuck: its socket was aborted
        # under it, and websockets then ends the send as if all had gone out.
        self._live()

    async def recv(self) -> str | bytes:
        connection, websocket = self._live_websocket()
        if self._receiving:
            raise ConnectionBusyError(
                f"{self.id}: another task is receiving on this lease; "
                "receive from one task at a time"
            )
        self._receiving = True
        try:
            message = await connection._recv(websocket)
        except asyncio.CancelledError:
            self._cut_off = "a receive was cut off"  # what it waited for may still come
            raise
        finally:
            self._receiving = False
        self._live()  # the lease ended while we waited: the message is nobody's now
        return message

    async def ping(self) -> float:
        return await self._live()._ping()

    async def connect(self) -> None:
        await self._live().connect()

    async def acquire(self) -> None:
        self._live()
        raise ConnectionBusyError(f"{self.id} is acquired already: this lease is the hand-out")

    async def close(self) -> None:
        """Close the connection for good; this ends the lease."""
        await self._live()._close()

    async def release(self) -> None:
        """Give the connection back to its pool; this ends the lease.

        (``pool.release()`` of an ended lease only warns: it is the pool's
        entry point, called by cleanup code that may run twice.)
        """
        self._live()
        await self._lender.release(self)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        self._live()
        return _talk.messages(self)

    # -- what it is (each read through the live connection) -----------------------------

    @property
    def state(self) -> State:
        return self._live().state

    @property
    def history(self) -> tuple[TransitionRecord, ...]:
        return self._live().history

    @property
    def is_busy(self) -> bool:
        return self._live().is_busy

    @property
    def is_draining(self) -> bool:
        return self._live().is_draining

    @property
    def is_closed(self) -> bool:
        return self._live().is_closed

    @property
    def is_connected(self) -> bool:
        return self._live().is_connected

    @property
    def last_activity(self) -> float:
        return self._live().last_activity

    @property
    def idle_for(self) -> float:
        return self._live().idle_for

    @property
    def latency(self) -> float:
        return self._live().latency

    @property
    def age(self) -> float:
        return self._live().age

    @property
    def websocket(self) -> ClientConnection | None:  # type: ignore[override]
        """The raw websockets connection: a way around the lease's bookkeeping.

        What is received on it directly, or cut off, the lease cannot see; so
        once it was taken, the connection is closed on release, never lent on.
        """
        connection = self._live()
        self._cut_off = "its raw websocket was taken"
        return connection.websocket

    def __getattr__(self, name: str) -> Any:
        # The connection's plain attributes (uri, headers, ...): looked up
        # here only because the lease does not have them itself.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._live(), name)

    # -- a lease dropped without release -------------------------------------------------

    def __del__(self) -> None:
        connection = self._connection
        if connection._lease_serial != self._serial:  # ended, as nearly every lease has
            return
        if connection._lifecycle.state is not BUSY:
            return
        pool, serial = self._lender, self._serial
        loop = pool._loop
        if loop is None or loop.is_closed():
            return
        message = (
            f"{self.id} was never released: its lease was garbage-collected while lent; "
            "its connection is closed (its state is unknown)"
        )
        warnings.warn(message, ResourceWarning, source=self, stacklevel=1)
        logger.warning("%s", message)
        loop.call_soon_threadsafe(pool._reclaim, connection, serial)

    def __repr__(self) -> str:
        connection = self._connection
        ended = "" if self._is_live else ", lease ended"
        return f"<ConnectionLease {self.id} {redact_uri(connection.uri)}{ended}>"

    def __str__(self) -> str:
        return f"ConnectionLease({self.id})"


def owed_reply(lease: ConnectionLease) -> str | None:
    """Why a reply may still come to a lease being released (see ``owes_reply``), or ``None``.

    websockets' own flag catches a receive begun on the raw websocket too.
    """
    if (owed := lease.owes_reply) is not None:
        return owed
    websocket = lease._connection.websocket
    if websocket is not None and is_receiving(websocket):
        return "a receive was still pending"
    return None
