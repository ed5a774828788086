"""The pool's background tasks: what runs them, names them, and ends them.

Two kinds, because the pool's close treats them differently:

* **workers** (handshakes, cleaning, deliveries, the sweep, the keeper) are
  cancelled by ``close_all()``;
* **closers** (closing handshakes of retired connections) are awaited by it,
  never cancelled: a socket whose peer never answers would otherwise stay open.
  Each holds its slot against ``max_connections`` until it ends, so the
  coordinator is told when one does.

Every task's end is reported through a weak reference: a pool nobody holds
any more must be collectable (and warn that it was left open), not kept alive
by its own background tasks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Final

from ._exceptions import WebsocketError

logger: Final = logging.getLogger("aio_websocket_pool")


def _forget_weakly(tasks: weakref.ref[BackgroundTasks], task: asyncio.Task[Any]) -> None:
    if (alive := tasks()) is not None:
        alive._forget(task)


class BackgroundTasks:
    """The running tasks of one pool.

    Args:
        owner: The pool's name, in every task's name.
        closed: Told the key of each closer that ended (the coordinator's
            ``socket_closed``).
    """

    def __init__(self, owner: str, closed: Callable[[Any], None]) -> None:
        self._owner = owner
        self._closed = closed
        self.workers: set[asyncio.Task[Any]] = set()
        self.closers: dict[Hashable, asyncio.Task[Any]] = {}
        self._weak_self = weakref.ref(self)

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a worker: cancelled by :meth:`cancel_workers`."""
        task = self._start(coroutine, name)
        self.workers.add(task)
        return task

    def spawn_closer(
        self, key: Hashable, coroutine: Coroutine[Any, Any, Any], name: str
    ) -> asyncio.Task[Any]:
        """Run the closing of what ``key`` names; awaited by :meth:`wait_all`, never cancelled."""
        task = self.closers[key] = self._start(coroutine, name)
        task.add_done_callback(functools.partial(self._closer_done, key))
        return task

    def closer_of(self, key: Hashable) -> asyncio.Task[Any] | None:
        """The closing of ``key`` still running, if any."""
        return self.closers.get(key)

    def cancel_workers(self) -> None:
        for task in self.workers:
            task.cancel()

    async def wait_all(self) -> None:
        """Wait until every task has ended, however many start meanwhile.

        ``asyncio.wait``, not ``gather``: cancelling this call must not cancel
        the closers themselves.
        """
        while self.workers or self.closers:
            await asyncio.wait({*self.workers, *self.closers.values()})

    def _start(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(
            coroutine, name=f"aio_websocket_pool {self._owner} {name}"
        )
        task.add_done_callback(functools.partial(_forget_weakly, self._weak_self))
        return task

    def _closer_done(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self.closers.get(key) is task:
            del self.closers[key]
            self._closed(key)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.workers.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so asyncio never warns about it
        if exc is not None and not isinstance(exc, WebsocketError):
            logger.error("background task %s failed", task.get_name(), exc_info=exc)
