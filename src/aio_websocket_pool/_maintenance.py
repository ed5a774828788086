"""Upkeep in the background: the idle sweep, ``min_connections``, health checks of idle ones.

Each is a pool task that wakes up, asks the coordinator what to do, and does
it. The sweep holds the coordinator weakly, so that a pool left open can still
be garbage-collected (and warn).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Final

from ._backoff import Backoff
from ._exceptions import (
    ConnectionClosedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
)
from ._fsm import IDLE
from ._redact import redact_uri

if TYPE_CHECKING:
    from ._connection import WebsocketConnection
    from ._coordinator import Coordinator
    from ._opening import Opening
    from ._tasks import BackgroundTasks

#: Seconds between two looks at the open connections in :meth:`Maintenance.wait_open`.
_WAIT_POLL: Final = 0.01


async def _sweep_forever(
    core: weakref.ref[Coordinator[WebsocketConnection]], interval: float
) -> None:
    """Sweep every ``interval`` seconds while the pool exists (a weak reference, as above)."""
    while True:
        await asyncio.sleep(interval)
        if (alive := core()) is None:
            return
        alive.sweep()
        del alive


class Maintenance:
    """The pool's background upkeep."""

    def __init__(
        self, core: Coordinator[WebsocketConnection], tasks: BackgroundTasks, opening: Opening
    ) -> None:
        self._core = core
        self._tasks = tasks
        self._opening = opening
        self._below_minimum = asyncio.Event()  # wakes the min_connections keeper
        self._keeper: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None  # the background health check

    def start(self) -> None:
        """Start the idle sweep and, if there is a minimum, its keeper."""
        core = self._core
        self._tasks.spawn(_sweep_forever(weakref.ref(core), core.config.cleanup_interval), "sweep")
        self.ensure_keeper()

    # -- min_connections ------------------------------------------------------------------

    def ensure_keeper(self) -> None:
        """Run the ``min_connections`` keeper while there is a minimum to keep."""
        if self._core.config.min_connections and (self._keeper is None or self._keeper.done()):
            self._keeper = self._tasks.spawn(self._keep_minimum(), "keep min_connections")

    def wake_keeper(self) -> None:
        self._below_minimum.set()

    async def _keep_minimum(self) -> None:
        """Keep ``min_connections`` open: re-open what idle cleanup, expiry or failures closed.

        Woken whenever a connection closes below the minimum. Failed openings
        are retried with exponential backoff and jitter, so a server that is
        down gets no storm from an idle pool.
        """
        core = self._core
        backoff = Backoff(core.random)
        self._below_minimum.set()
        while True:
            await self._below_minimum.wait()
            self._below_minimum.clear()
            if core.closing:
                return
            missing = min(core.missing_minimum, core.config.max_connections - core.slots_in_use)
            if missing <= 0:
                continue
            openings = [self._opening.for_nobody() for _ in range(missing)]
            if await self._opening.report(openings, "min_connections"):
                backoff.reset()
            else:
                backoff.trip()
                await backoff.wait()
                self._below_minimum.set()

    async def wait_open(self, wanted: int, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until ``wanted`` connections are open.

        Raises:
            ConnectionPoolUnavailableError: The pool closed meanwhile.
            ConnectionUnavailableError: They were not open within ``timeout`` seconds.
        """
        core = self._core
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while core.open_connections < wanted:
            if core.closed or core.closing:
                raise ConnectionPoolUnavailableError("the pool was closed")
            if loop.time() >= give_up:
                raise ConnectionUnavailableError(
                    f"{core.name}: {core.open_connections} of {wanted} connections to "
                    f"{redact_uri(core.config.uri)} opened within {timeout:g}s"
                )
            await asyncio.sleep(_WAIT_POLL)

    # -- health checks of idle connections --------------------------------------------------

    def check_idle_soon(self) -> None:
        """Health-check, in the background, every idle connection that is due a check."""
        if self._checking is None or self._checking.done():
            self._checking = self._tasks.spawn(
                self.check_idle(), "health check of idle connections"
            )

    async def check_idle(self, *, due_only: bool = True) -> None:
        """Ping the idle connections (those due a check), all at once; discard those that fail.

        They stay idle meanwhile: an acquirer may take one, and then checks
        it again itself if it is still due.
        """
        core = self._core
        due = [c for c in core.index.in_state(IDLE) if not due_only or core.health_check_due(c)]
        outcomes = await asyncio.gather(*(c._ping() for c in due), return_exceptions=True)
        for connection, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, ConnectionUnavailableError | ConnectionClosedError) and (
                connection.state is IDLE
            ):
                core.health_check_failed(connection, outcome)
