"""The slow path of an acquire: waiting in line, and the checks before a hand-out.

The fast path (an idle connection that needs no I/O) is the pool's own. When
that does not apply, :meth:`HandOut.claim` waits for a grant, then proves the
connection fit: the handshake of a new one, the health-check ping of one idle
too long, the settling of messages the pool was taking, ``on_acquire``. A
connection that fails any of them is discarded and the acquirer served again,
with a new connection after a failed health check (the other idle ones went
as long unproven, and are checked in the background).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from ._exceptions import (
    ConnectionClosedError,
    ConnectionHookError,
    ConnectionPoolExhaustedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    TooManyWaitersError,
)
from ._fsm import BUSY
from ._hooks import run_hook
from ._redact import redact_uri
from ._websocket import is_receiving

if TYPE_CHECKING:
    from ._connection import WebsocketConnection
    from ._coordinator import Coordinator
    from ._maintenance import Maintenance
    from ._opening import Opening
    from ._ports import Grant

#: Seconds between two looks at a message half received when one is to be handed out.
_SETTLE_POLL: Final = 0.005


class HandOut:
    """Waits for a connection and makes it fit to be handed out."""

    def __init__(
        self,
        core: Coordinator[WebsocketConnection],
        opening: Opening,
        maintenance: Maintenance,
    ) -> None:
        self._core = core
        self._opening = opening
        self._maintenance = maintenance

    async def claim(
        self,
        grant: Grant[WebsocketConnection] | None,
        *,
        fresh: bool,
        wait: float | None,
        deadline: float | None,
    ) -> WebsocketConnection:
        """Claim a connection and make it fit for hand-out (busy, checked, settled)."""
        core = self._core
        while True:
            if grant is None:
                grant = await self._wait_for_grant(fresh=fresh, wait=wait, deadline=deadline)
            if grant.opening is not None:
                connection = await self._opening.take(grant)
                ready = await self._settle(connection) and await self._passes_on_acquire(
                    connection, reused=False
                )
            else:
                connection = grant.connection
                if core.health_check_due(connection) and not await self._passes_health_check(
                    connection
                ):
                    # The other idle ones went as long unproven: likely dead
                    # too. Check them in the background; open a new one now.
                    self._maintenance.check_idle_soon()
                    fresh = True
                    grant = core.try_grant(fresh=True)
                    continue
                if not await self._settle(connection):
                    # Another idle one may be as unsettled (a server trickling
                    # on all of them), and each costs a bound: open a new one.
                    fresh = True
                    grant = core.try_grant(fresh=True)
                    continue
                ready = await self._ready_for_reuse(connection)
            if ready and self._fit(connection):
                return connection
            # It was discarded, freeing a slot: ours, since we were already served.
            grant = core.try_grant(fresh=fresh)

    def exhausted(self, wait: float | None) -> ConnectionPoolExhaustedError:
        core = self._core
        what = "acquire_timeout" if wait == core.config.acquire_timeout else "timeout"
        return ConnectionPoolExhaustedError(
            f"no connection to {redact_uri(core.config.uri)} came free within "
            f"{what}={wait:g}s ({core.stats()})"
        )

    async def _wait_for_grant(
        self, *, fresh: bool, wait: float | None, deadline: float | None
    ) -> Grant[WebsocketConnection]:
        if wait == 0:
            raise self.exhausted(wait)
        core = self._core
        limit = core.config.max_waiting
        if limit is not None and core.waiting.live_count() >= limit:
            raise TooManyWaitersError(
                f"{limit} acquirers already wait for a connection to "
                f"{redact_uri(core.config.uri)} (max_waiting={limit})"
            )
        waiter = core.waiting.join(fresh)
        core.schedule_dispatch()
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter.future
        except TimeoutError:
            if waiter.was_granted:
                return waiter.future.result()  # granted just as time ran out
            raise self.exhausted(wait) from None
        except asyncio.CancelledError:
            if waiter.was_granted:
                core.abandon(waiter.future.result())
            raise
        finally:
            core.waiting.leave(waiter)

    def _fit(self, connection: WebsocketConnection) -> bool:
        """The last look before a hand-out: still ours, still open, the pool not closed.

        Raises:
            ConnectionPoolUnavailableError: ``close_all()`` ran while the
                connection was being made ready.
        """
        core = self._core
        # close_all() took everything; close() lets acquirers already served
        # have theirs, and closes it when it comes back.
        if core.closed:
            if connection.state is BUSY:
                core.discard(connection, "pool closed", abort=True)
            raise ConnectionPoolUnavailableError("the pool was closed")
        if connection.state is not BUSY:  # discarded meanwhile (a flood, a hook)
            return False
        websocket = connection.websocket
        if websocket is None or not connection.is_connected:
            core.retire_lost(connection)
            return False
        if is_receiving(websocket):  # someone (a hook's task) would read the borrower's reply
            core.discard(connection, "a receive was pending at hand-out", abort=True)
            return False
        return True

    async def _ready_for_reuse(self, connection: WebsocketConnection) -> bool:
        """Whether a reused connection (health-checked and settled already) may be handed out.

        If not, it was discarded. In order: it is still open; no policy
        retires it; ``on_acquire`` accepts it.
        """
        core = self._core
        if not connection.is_connected:
            core.retire_lost(connection)
            return False
        if (why := core.staleness(connection)) is not None:
            core.discard(connection, why)
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
            self._core.health_check_failed(connection, exc)
            return False
        except BaseException:
            self._core.return_unused(connection)  # cancelled mid-ping: nothing is owed, keep it
            raise
        return True

    async def _settle(self, connection: WebsocketConnection) -> bool:
        """Wait, up to ``health_check_timeout``, for what the pool took to be done with.

        A message half received belongs to nobody yet, and ``on_unsolicited``
        may still be talking on the connection: neither may meet a borrower.
        A connection that does not settle in time is discarded: a server
        trickling one message forever cannot hold an acquire.
        """
        core = self._core
        if core.is_settled(connection):
            return connection.state is BUSY
        inbox = connection._inbox
        assert inbox is not None  # noqa: S101  (unsettled implies an inbox)
        try:
            async with asyncio.timeout(core.config.health_check_timeout):
                while not core.is_settled(connection) and connection.state is BUSY:
                    if not connection.is_connected:
                        core.retire_lost(connection, during="hand-out")
                        return False
                    if (delivery := inbox.delivery) is not None:
                        await asyncio.wait({delivery})
                    else:
                        await asyncio.sleep(_SETTLE_POLL)
        except TimeoutError:
            core.discard(connection, "messages that arrived while it was idle were still "
                         "arriving or being delivered at hand-out", abort=True)  # fmt: skip
            return False
        except BaseException:
            core.return_unused(connection)
            raise
        return connection.state is BUSY

    async def _passes_on_acquire(self, connection: WebsocketConnection, *, reused: bool) -> bool:
        """Run ``on_acquire``. Its failure discards the connection, and is raised for a new one.

        A reused connection that fails is replaced by another; a new one that
        fails raises, or a hook that always fails would open connections forever.
        """
        core = self._core
        hook = core.config.on_acquire
        if hook is None or connection.state is not BUSY:
            return connection.state is BUSY
        connection._lend()  # the hook reads what comes now, as the borrower will
        try:
            with connection._hook_access("on_acquire"):
                await run_hook(
                    "on_acquire", hook(connection), seconds=core.config.hook_timeout,
                    where=connection.id, secrets=connection._secrets,
                )  # fmt: skip
        except ConnectionHookError as exc:
            core.totals.hooks_failed += 1
            core.discard(connection, str(exc), abort=True)
            if reused:
                return False
            raise
        except BaseException:
            # Cancelled mid-hook: what the hook left half done is unknown.
            core.discard(connection, "cancelled during on_acquire", abort=True)
            raise
        return True
