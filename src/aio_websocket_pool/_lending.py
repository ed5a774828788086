"""Lending: where every acquire starts and every lease ends.

The fast path of an acquire (a warm idle connection that needs no I/O and no
hook) and the whole of a release run here without an await, so that a
cancellation cannot interrupt either half-way: a lease is either handed out
whole or not at all, and a connection given back is decided on in the same
step. What needs waiting (a queue, a handshake, a health check, a hook) is
:mod:`._handout`'s; what a release decides is the coordinator's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

from ._borrow import AcquireTimeout, PoolTimeout
from ._lease import ConnectionLease, owed_reply

if TYPE_CHECKING:
    from ._connection import WebsocketConnection
    from ._coordinator import Coordinator
    from ._handout import HandOut
    from ._pool import WebsocketConnectionPool

logger: Final = logging.getLogger("aio_websocket_pool")


class Lending:
    """Starts and ends the leases of one pool (the borrow objects' ``Lender``).

    Args:
        pool: What every lease names as its lender: a release goes back to it.
        core: The pool's coordinator.
        handout: The slow path of an acquire.
    """

    def __init__(
        self,
        pool: WebsocketConnectionPool,
        core: Coordinator[WebsocketConnection],
        handout: HandOut,
    ) -> None:
        self._pool = pool
        self._core = core
        self._handout = handout

    def lend_at_once(self, fresh: bool) -> ConnectionLease | None:
        """The fast path of an acquire: a lease on a warm idle connection, or ``None``.

        Taken by most acquires of a warm pool: an idle connection that needs
        no I/O and no hook before it is handed out. Synchronous, so that the
        awaitables of :mod:`._borrow` hand out without a coroutine of their
        own; ``None`` sends the caller to :meth:`acquire`. One clock read (for
        the health check); it waited for nothing.
        """
        loop = asyncio.get_running_loop()
        pool = self._pool
        if loop is not pool._loop:
            pool._check_loop(loop)
        if fresh:  # a new connection means a handshake: never at once
            return None
        core = self._core
        connection = core.claim_ready(time.monotonic())
        if connection is None:
            return None
        core.totals.record("acquire_wait", 0.0)
        return self.hand_out(connection)

    async def acquire(self, *, fresh: bool, wait: AcquireTimeout) -> ConnectionLease:
        """Hand out a connection: at once if a warm one is free, else through the slow path."""
        lease = self.lend_at_once(fresh)
        if lease is not None:
            return lease
        loop = asyncio.get_running_loop()
        core = self._core
        grant = None if core.waiting else core.try_grant(fresh=fresh)
        started = loop.time()
        config = core.config
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
                connection = await self._handout.claim(
                    grant, fresh=fresh, wait=wait, deadline=deadline
                )
        except TimeoutError:
            if scope.expired():
                raise self._handout.exhausted(wait) from None
            raise
        core.totals.record("acquire_wait", loop.time() - started)
        return self.hand_out(connection)

    def hand_out(self, connection: WebsocketConnection) -> ConnectionLease:
        """Start a lease: the connection's messages are the borrower's from now on."""
        connection._end_lease()
        connection._lend()
        return ConnectionLease(connection, self._pool)

    def release_now(
        self,
        lease: WebsocketConnection,
        *,
        force_remove: bool = False,
        dirty: bool = False,
        block: bool = False,
    ) -> None:
        """End a lease without awaiting anything, so that cancellation cannot interrupt it.

        ``dirty``: the borrower's block raised. ``block``: given back by the
        end of an ``async with`` block, which says nothing if the lease ended
        inside it (``conn.close()``).
        """
        pool = self._pool
        if not isinstance(lease, ConnectionLease):  # e.g. None from a failed acquire
            logger.warning("%s: release of %r ignored: not what a pool's acquire() handed out",
                           pool.name, lease)  # fmt: skip
            return
        owner = lease._lender
        if owner is not pool:
            logger.warning("release of %r into %s ignored: it is %s's; given back to it instead",
                           lease, pool.name, owner.name)  # fmt: skip
            owner._lending.release_now(lease, force_remove=force_remove, dirty=dirty, block=block)
            return
        if not lease._is_live:
            if not (block or self._core.closed):
                logger.warning("release of %r ignored: that lease has ended already", lease)
            return
        self._core.end_lease(
            lease._connection, force_remove=force_remove, dirty=dirty, owed=owed_reply(lease)
        )
