"""Borrowing a lone connection, as in 0.1.0: ``acquire``, ``release``, ``session``.

A :class:`~aio_websocket_pool.WebsocketConnection` made by its user (not by a
pool) is its own lender: acquiring it opens it if needed and marks it busy,
releasing it marks it idle again, and there is nothing to wait for, since it
has one borrower at a time and a second one is refused. A pooled connection
refuses both: its pool lends it, and what ``pool.acquire()`` handed out (a
lease) is what is given back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exceptions import ConnectionBusyError, ConnectionUnavailableError
from ._fsm import BUSY, CLOSED, DRAINING

if TYPE_CHECKING:
    from ._connection import WebsocketConnection


async def acquire(connection: WebsocketConnection) -> None:
    """Mark a standalone connection busy, opening it first if needed.

    Raises:
        ConnectionBusyError: It is busy or draining, or belongs to a pool.
        ConnectionUnavailableError: It is closed or could not be opened.
    """
    if connection._pool is not None:
        raise ConnectionBusyError(f"{connection.id} belongs to a pool: use pool.acquire()")
    await connection.connect()
    state = connection.state
    if state is BUSY:
        raise ConnectionBusyError("Connection is already busy")
    if state is DRAINING:
        raise ConnectionBusyError("Connection is currently draining")
    if state is CLOSED:
        raise ConnectionUnavailableError(f"{connection.id} has been closed")
    connection._claim()


def release(connection: WebsocketConnection) -> None:
    """Mark a standalone connection idle again (if it was busy).

    Raises:
        ConnectionBusyError: It belongs to a pool.
    """
    if connection._pool is not None:
        raise ConnectionBusyError(
            f"{connection.id} belongs to a pool: release what pool.acquire() handed out"
        )
    if connection.state is BUSY:
        connection._come_back()
