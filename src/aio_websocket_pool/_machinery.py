"""The machinery behind a pool: its coordinator, and the I/O modules that carry its decisions out.

The coordinator decides and never awaits; what it decides is done by the
modules built here (opening, cleaning, maintenance, background tasks), to
which :class:`Machinery`, the coordinator's
:class:`~aio_websocket_pool._ports.Driver`, hands each decision. It is also
what every pooled connection knows of its pool (the
:class:`~aio_websocket_pool._connection_base.ConnectionOwner`): its transitions
go straight to the coordinator's index, and a close its user asks for comes
here. The public pool class is left with its API.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

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
