"""The machinery behind a pool: its coordinator, and the I/O modules that carry its decisions out.

The coordinator decides and never awaits; what it decides is done by the
modules built here (opening, cleaning, maintenance, background tasks), to
which :class:`Machinery`, the coordinator's
:class:`~aio_websocket_pool._ports.Driver`, hands each decision. It is also
what every pooled connection knows of its pool (the
:class:`~aio_websocket_pool._connection_base.ConnectionOwner`): its transitions
go straight to the coordinator's index, and a close its user asks for comes
here. It also carries out the pool's own lifecycle (the warm-up, a resize,
the graceful and the hard close), so that the public pool class is left with
its API.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._cleaning import Cleaning
from ._connection import WebsocketConnection
from ._coordinator import Coordinator
from ._handout import HandOut
from ._maintenance import Maintenance
from ._opening import Opening
from ._tasks import BackgroundTasks

if TYPE_CHECKING:
    from ._config import PoolConfig
    from ._ports import Grant

logger: Final = logging.getLogger("aio_websocket_pool")


class Machinery:
    """One pool's coordinator and I/O modules, wired together.

    Args:
        config: The pool's checked settings.
        name: The pool's name: its connections' ids start with it.
    """

    def __init__(self, config: PoolConfig, *, name: str) -> None:
        self._name = name
        self._connection_numbers = itertools.count(1)
        self.core = core = Coordinator(
            config, name=name, make_connection=self._new_connection, driver=self
        )
        self.tasks = BackgroundTasks(name, core.socket_closed)
        self.cleaning = Cleaning(core, self.tasks)
        self.opening = Opening(core, self.tasks, self.cleaning)
        self.maintenance = Maintenance(core, self.tasks, self.opening)
        self.handout = HandOut(core, self.opening, self.maintenance)
        #: Set once a graceful close finds nothing in use.
        self.quiescent = asyncio.Event()

    def _new_connection(self, generation: int, lifetime: float | None) -> WebsocketConnection:
        core = self.core
        return WebsocketConnection._for_pool(
            core.config,
            self,
            observer=core.on_transition,
            connection_id=f"{self._name}/conn-{next(self._connection_numbers)}",
            gate=core.backoff,
            generation=generation,
            lifetime=lifetime,
        )

    # -- the pool's own lifecycle ---------------------------------------------------------

    def warm_up(self) -> asyncio.Task[None] | None:
        """Start the upkeep and the warm-up handshakes; return the task that reports on them."""
        self.maintenance.start()
        config = self.core.config
        warm_up = min(config.warmup_connections, config.max_connections)
        openings = [self.opening.for_nobody() for _ in range(warm_up)]
        if not openings:
            return None
        return self.tasks.spawn(self.opening.report(openings, "warm-up"), "warm-up")

    def resize(
        self, max_connections: int | None, min_connections: int | None, *, running: bool
    ) -> None:
        """Take new size limits (``None`` keeps one); ``running``: the pool has started.

        Raises:
            TypeError, ValueError: As the constructor raises for these arguments.
        """
        core = self.core
        config = core.config
        core.resize(
            config.resized(
                max_connections=config.max_connections
                if max_connections is None
                else max_connections,
                min_connections=config.min_connections
                if min_connections is None
                else min_connections,
            )
        )
        if running and not (core.closed or core.closing):
            self.maintenance.ensure_keeper()

    async def close(self, timeout: float | None) -> None:  # noqa: ASYNC109  (the pool's close)
        """The graceful close: wait up to ``timeout`` for the borrowers, then :meth:`close_all`."""
        core = self.core
        if not core.closed and not core.closing:
            core.begin_closing()
            self.opening.cancel_for_nobody()
        if not core.closed:
            try:
                async with asyncio.timeout(timeout):
                    await self.quiescent.wait()
            except asyncio.CancelledError:
                await self.close_all()  # a caller that gives up must not leave the pool half-shut
                raise
            except TimeoutError:
                logger.warning(
                    "%s: close(timeout=%g): %d connections still in use; closing them",
                    self._name, timeout, core.in_use,
                )  # fmt: skip
        await self.close_all()

    async def close_all(self) -> None:
        """The hard close: retire everything, cancel the pool's tasks, wait for every socket."""
        if not self.core.closed:
            self.core.shut()
            self.tasks.cancel_workers()
        await self.tasks.wait_all()

    # -- what its connections ask of it (ConnectionOwner) -----------------------------------

    async def _close_for_user(self, connection: WebsocketConnection) -> None:
        """Close a connection its borrower (or a hook) closed: retire it, close its socket.

        The close runs in a pool task, so that a caller who stops waiting
        (a timeout) leaves it to finish, counted against ``max_connections``.
        """
        self.core.discard(connection, "closed by its user")
        closer = self.tasks.closer_of(connection)
        if closer is not None:
            await asyncio.shield(closer)

    # -- how the coordinator's decisions are carried out (its Driver) ----------------------

    def _start_opening(self, grant: Grant[WebsocketConnection]) -> None:
        self.opening.start(grant)

    def _start_cleaning(self, connection: WebsocketConnection) -> None:
        self.cleaning.start(connection)

    def _close_socket(self, connection: WebsocketConnection) -> None:
        self.tasks.spawn_closer(connection, connection._close_socket(), f"close {connection.id}")

    def _stop_delivery(self, connection: WebsocketConnection) -> None:
        self.cleaning.stop_delivery(connection)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(callback)

    def _wake_keeper(self) -> None:
        self.maintenance.wake_keeper()

    def _quiescent(self) -> None:
        self.quiescent.set()
