"""Opening connections: the handshakes the coordinator asks for, run as pool tasks.

A handshake belongs to the pool, not to the acquirer it is for: an acquirer
cancelled mid-handshake leaves the connection to the next waiter instead of
wasting it, and ``close_all()`` can cancel every handshake in flight. Warm-up
and ``min_connections`` open connections for nobody (abandoned grants),
which go idle once open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from ._exceptions import ConnectionHookError, ConnectionPoolUnavailableError
from ._fsm import BUSY
from ._redact import describe_error, redact_uri

if TYPE_CHECKING:
    from ._cleaning import Cleaning
    from ._connection import WebsocketConnection
    from ._coordinator import Coordinator
    from ._ports import Grant
    from ._tasks import BackgroundTasks

logger: Final = logging.getLogger("aio_websocket_pool")


class Opening:
    """Runs the pool's handshakes and hands their outcome to the coordinator."""

    def __init__(
        self,
        core: Coordinator[WebsocketConnection],
        tasks: BackgroundTasks,
        cleaning: Cleaning,
    ) -> None:
        self._core = core
        self._tasks = tasks
        self._cleaning = cleaning

    def start(self, grant: Grant[WebsocketConnection]) -> None:
        """Run the handshake of a grant's new connection in a pool task."""
        connection = grant.connection
        opening = grant.opening = self._tasks.spawn(self._open(grant), f"open {connection.id}")
        core = self._core

        def opened(_: asyncio.Task[None]) -> None:
            core.opening.discard(grant)
            # A task cancelled before its first step never runs connect(), which
            # is what fails a handshake that did not finish: do it here instead.
            connection._fail("cancelled before it began")

        opening.add_done_callback(opened)

    def for_nobody(self) -> asyncio.Task[None]:
        """Open a connection in a free slot for nobody; return the handshake's task."""
        opening = self._core.new_grant(abandoned=True).opening
        assert opening is not None  # noqa: S101
        return opening

    def cancel_for_nobody(self) -> None:
        """Cancel the handshakes nobody waits for (warm-up, ``min_connections``)."""
        for grant in self._core.opening:
            if grant.abandoned and grant.opening is not None:
                grant.opening.cancel()

    async def _open(self, grant: Grant[WebsocketConnection]) -> None:
        connection = grant.connection
        totals = self._core.totals
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await connection.connect()
        except ConnectionHookError:
            totals.hooks_failed += 1
            raise
        totals.record("connect_time", loop.time() - started)
        self._cleaning.adopt(connection)
        self._core.opened(grant)

    async def take(self, grant: Grant[WebsocketConnection]) -> WebsocketConnection:
        """Wait for a grant's handshake; the connection, busy for the caller.

        Raises:
            ConnectionPoolUnavailableError: The pool closed meanwhile.
            ConnectionUnavailableError: The handshake failed.
        """
        opening = grant.opening
        assert opening is not None  # noqa: S101
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if opening.cancelled() and current is not None and not current.cancelling():
                raise ConnectionPoolUnavailableError("the pool was closed") from None
            self._core.abandon(grant)
            raise
        if grant.connection.state is not BUSY:  # close_all() retired it before we woke
            raise ConnectionPoolUnavailableError("the pool was closed")
        return grant.connection

    async def report(self, openings: list[asyncio.Task[None]], what: str) -> bool:
        """Wait for background handshakes; log their failures; return whether all opened."""
        await asyncio.wait(openings)
        outcomes = [task.exception() for task in openings if not task.cancelled()]
        failures = [exc for exc in outcomes if exc is not None]
        if failures:
            core = self._core
            logger.warning(
                "%s: %s opened %d of %d connections to %s; first failure: %s",
                core.name, what, len(openings) - len(failures), len(openings),
                redact_uri(core.config.uri), describe_error(failures[0].__cause__ or failures[0]),
            )  # fmt: skip
        return not failures
