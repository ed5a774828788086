"""The timeouts of a multiplexer's requests, on one timer of the event loop.

A timer handle per request (``loop.call_at``, which ``asyncio.timeout`` makes
too) cost a multiplexed call about 4 µs in the M1 benchmark: the handle, its
arguments and its context are three more objects for the garbage collector to
walk while the request waits, and every handle cancelled stays in the loop's
heap until the loop sweeps it. Here a request's deadline is one entry of a
dict of the multiplexer's own, and one loop timer is set for the earliest.

Why dicts and not one heap of requests: requests given the same number of
seconds reach their deadlines in the order they were added (the loop's clock
never goes back), so one insertion-ordered dict per duration is a queue
already sorted, from which an ended request is taken out at once (``del``),
where a heap kept it until a sweep that asked each entry whether it still
waits (two Python calls per request, on top of the push: about 1 µs a call
in M1). Most multiplexers see one duration, their ``request_timeout``; a
caller may give each call a timeout of its own, so the queues' first
deadlines are kept in a small heap (one entry per duration, pushed when its
queue is made): a timer that rings looks at the durations that are due, not
at every one that waits.

Rules:

* The timer is set for the earliest deadline: a request's time runs out when
  a timer of its own would have fired, never later. (It may ring for a
  request that ended since; it then finds nothing due and is set again.)
* When it fires, every request whose deadline has passed and that was not
  told :meth:`Deadlines.ended` is taken out and given to ``expire``, earliest
  deadline first.
* A duration's dict goes when its last request does, and its heap entry
  when that entry comes to the top, or sooner: when the entries outnumber the
  live durations twice over (a timeout per call, each answered in time), the
  heap is made again from the live queues. An ended request never leaves
  more behind than a bounded share of what still waits.
* An ``expire`` that raises (a bug) is the loop's to report; the timer is
  set again all the same, so every other request still runs out in time.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

T = TypeVar("T", bound=Hashable)

#: The loop's clock (``time.monotonic``) ticks this finely; asyncio runs a timer this early.
_RESOLUTION: Final = time.get_clock_info("monotonic").resolution


#: Stale heap entries tolerated beyond the live durations' count, so that a
#: multiplexer with a handful of durations never pays for a rebuild.
_STALE_HEADS_ALLOWED: Final = 32


def _deadline_of(entry: tuple[float, float, object]) -> float:
    return entry[0]


class Deadlines(Generic[T]):
    """Deadlines of requests (any hashable ``T``, told apart by identity), on one loop timer.

    Args:
        expire: Called with a request whose deadline passed.
    """

    def __init__(self, expire: Callable[[T], None]) -> None:
        self._expire = expire
        #: By duration: each request's deadline (the loop's clock), in the order they come.
        self._queues: dict[float, dict[T, float]] = {}
        #: (no later than the first deadline of its queue, duration): a heap, one per duration
        #: in ``_headed``; an entry whose queue went stays until it comes to the top.
        self._heads: list[tuple[float, float]] = []
        self._headed: set[float] = set()
        #: The durations a running ring took off the heap; it pushes them back when done.
        self._rung: list[float] = []
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = math.inf  # when the alarm rings (its when(), a Python call less)

    def __len__(self) -> int:
        """Requests given a deadline and not ended."""
        return sum(map(len, self._queues.values()))

    def add(self, seconds: float, request: T) -> None:
        """Give ``request`` until ``seconds`` from now."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        queue = self._queues.get(seconds)
        if queue is None:
            queue = self._queues[seconds] = {}
            if seconds not in self._headed:  # else its entry is earlier still: a bound all the same
                self._headed.add(seconds)
                heapq.heappush(self._heads, (deadline, seconds))
        queue[request] = deadline
        if deadline < self._alarm_at:
            if self._alarm is not None:
                self._alarm.cancel()
            self._set_alarm(loop, deadline)

    def ended(self, seconds: float, request: T) -> None:
        """``request``, added with ``seconds``, ended (or expired): forget its deadline."""
        queue = self._queues.get(seconds)
        if queue is not None and queue.pop(request, None) is not None and not queue:
            del self._queues[seconds]
            if len(self._heads) > 2 * len(self._queues) + _STALE_HEADS_ALLOWED:
                self._compact()

    def _compact(self) -> None:
        """Make the heap again, one exact entry per live duration, the stale ones gone.

        In place: a running ring holds the list. The durations it took off
        the heap stay off (it pushes them back) and stay headed.
        """
        rung = set(self._rung)
        self._heads[:] = [
            (next(iter(queue.values())), seconds)
            for seconds, queue in self._queues.items()
            if seconds not in rung
        ]
        heapq.heapify(self._heads)
        self._headed = {seconds for _, seconds in self._heads}
        self._headed.update(rung)

    def close(self) -> None:
        """Forget every deadline and stop the timer."""
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm, self._alarm_at = None, math.inf
        self._queues.clear()
        self._heads.clear()
        self._headed.clear()

    def _set_alarm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self._alarm, self._alarm_at = loop.call_at(deadline, self._ring, loop), deadline

    def _ring(self, loop: asyncio.AbstractEventLoop) -> None:
        self._alarm, self._alarm_at = None, math.inf
        now = loop.time() + _RESOLUTION
        queues, heads = self._queues, self._heads
        due: list[tuple[float, float, T]] = []
        rung: list[float] = []  # durations whose entry left the heap: still in _headed
        self._rung = rung
        while heads and heads[0][0] <= now:
            seconds = heapq.heappop(heads)[1]
            rung.append(seconds)
            for request, deadline in queues.get(seconds, {}).items():  # oldest first
                if deadline > now:
                    break
                due.append((deadline, seconds, request))
        due.sort(key=_deadline_of)  # stable: in the order added, among equal deadlines
        try:
            for _, seconds, request in due:
                left = queues.get(seconds)
                if left is None or left.pop(request, None) is None:  # expire ended it meanwhile
                    continue
                if not left:
                    del queues[seconds]
                self._expire(request)
        finally:  # even if expire raised (the loop reports it): the rest must still run out
            for seconds in rung:  # requests expire added to these durations are in them
                queue = queues.get(seconds)
                if queue:
                    heapq.heappush(heads, (next(iter(queue.values())), seconds))
                else:
                    self._headed.discard(seconds)
            self._rung = []
            self._rearm(loop)

    def _rearm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the timer for the earliest deadline, first bringing the heap's top up to date."""
        queues, heads = self._queues, self._heads
        while heads:
            at, seconds = heads[0]
            queue = queues.get(seconds)
            if queue is None:
                heapq.heappop(heads)
                self._headed.discard(seconds)
            elif (first := next(iter(queue.values()))) != at:
                heapq.heapreplace(heads, (first, seconds))
            else:
                break
        if heads and heads[0][0] < self._alarm_at:  # expire may have set it, adding one
            if self._alarm is not None:
                self._alarm.cancel()
            self._set_alarm(loop, heads[0][0])
