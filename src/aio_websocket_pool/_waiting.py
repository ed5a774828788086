"""The line of acquirers waiting for a connection: first come, first served.

Synchronous bookkeeping only. An acquirer that finds nothing free joins the
line with a future; :meth:`WaitingLine.serve` (run by the coordinator whenever
something came free) resolves the futures at the front, in order, for as long
as the coordinator can grant something. An acquirer that gives up (a timeout,
a cancellation) leaves a dead entry behind, removed in bulk, never one by one
from the middle (see :meth:`WaitingLine.leave`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ._exceptions import ConnectionPoolUnavailableError

G = TypeVar("G")


class Waiter(Generic[G]):
    """An acquirer in line. Its two flags keep the count of dead entries exact.

    Attributes:
        fresh: It wants a newly opened connection (``acquire_new``).
        future: Resolved with its grant, or failed when the pool shuts.
        queued: Still in the line (not yet popped or swept out).
        departed: Counted as a dead entry: its acquirer left unserved.
    """

    __slots__ = ("departed", "fresh", "future", "queued")

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh
        self.future: asyncio.Future[G] = asyncio.get_running_loop().create_future()
        self.queued = True
        self.departed = False

    @property
    def was_granted(self) -> bool:
        """Whether the line handed it a grant (not cancelled, not failed)."""
        future = self.future
        return future.done() and not future.cancelled() and future.exception() is None


class WaitingLine(deque[Waiter[G]], Generic[G]):
    """The FIFO of :class:`Waiter` s, with dead entries swept out in amortised O(1).

    A deque itself, so that "is anyone in line?" (``bool(line)``, asked on every
    acquire and every reply of a multiplexer) and ``len(line)`` are the deque's
    own, with no Python call; its entries include dead ones (what a newcomer
    queues behind). Change it only through the methods below.
    """

    __slots__ = ("_departed",)

    def __init__(self) -> None:
        super().__init__()
        self._departed = 0  # entries whose acquirer left unserved

    @property
    def departed(self) -> int:
        """Dead entries still in line: acquirers that left unserved."""
        return self._departed

    def join(self, fresh: bool) -> Waiter[G]:
        """Queue a new acquirer at the back."""
        waiter: Waiter[G] = Waiter(fresh)
        self.append(waiter)
        return waiter

    def live_count(self) -> int:
        """Acquirers in line now, exactly (one cancelled this very step is not).

        O(n): for stats() and the max_waiting check of an acquirer about to
        queue, never on the fast path. ``tuple()`` copies the line in one
        step, so that an OpenTelemetry reader on another thread can call this.
        """
        return sum(not waiter.future.done() for waiter in tuple(self))

    def leave(self, waiter: Waiter[G]) -> None:
        """Note that ``waiter`` left; called by its acquirer on every way out.

        A waiter that left unserved while still queued becomes a dead entry.
        Removing each from the middle of the line would cost O(n) per timeout,
        and leaving them all to :meth:`serve` (which pops them from the front)
        would let them pile up behind a waiter that waits long: a leak while
        the pool stays exhausted. Sweeping them all once they are half the line
        keeps both costs amortised O(1).
        """
        if not waiter.future.done():
            waiter.future.cancel()
        if not (waiter.future.cancelled() and waiter.queued):
            return
        waiter.departed = True
        self._departed += 1
        if self._departed * 2 > len(self):
            live = []
            for entry in self:
                if entry.future.done():
                    entry.queued = False
                else:
                    live.append(entry)
            self.clear()
            self.extend(live)
            self._departed = 0

    def serve(self, grant: Callable[[bool], G | None]) -> None:
        """Hand grants to the waiters at the front while ``grant(fresh)`` finds one."""
        while self:
            waiter = self[0]
            if waiter.future.done():
                self.popleft()
                waiter.queued = False
                if waiter.departed:  # else its acquirer has yet to notice, and won't count it
                    self._departed -= 1
                continue
            granted = grant(waiter.fresh)
            if granted is None:
                return
            self.popleft()
            waiter.queued = False
            waiter.future.set_result(granted)

    def fail_all(
        self, why: str, error: Callable[[str], Exception] = ConnectionPoolUnavailableError
    ) -> None:
        """Empty the line: each waiter in it gets ``error(why)`` (the pool's: unavailable)."""
        while self:
            waiter = self.popleft()
            waiter.queued = False
            if not waiter.future.done():
                waiter.future.set_exception(error(why))
        self._departed = 0
