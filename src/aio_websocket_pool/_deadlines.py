"""The timeouts of a multiplexer's requests, on one timer of the event loop.

A timer handle per request (``loop.call_at``, which ``asyncio.timeout`` makes
too) cost a multiplexed call about 4 µs in the M1 benchmark: the handle, its
arguments and its context are three more objects for the garbage collector to
walk while the request waits, and every handle cancelled stays in the loop's
heap until the loop sweeps it. Here a request's deadline is one entry of a
dict of the multiplexer's own, and one loop timer is set for the earliest.

Why dicts and not a heap: requests given the same number of seconds reach
their deadlines in the order they were added (the loop's clock never goes
back), so one insertion-ordered dict per duration is a queue already sorted,
from which an ended request is taken out at once (``del``), where a heap
kept it until a sweep that asked each entry whether it still waits (two
Python calls per request, on top of the push: about 1 µs a call in M1).
Most multiplexers see one duration, their ``request_timeout``.

Rules:

* The timer is set for the earliest deadline, exactly: a request's time runs
  out when a timer of its own would have fired, never later.
* When it fires, every request whose deadline has passed and that was not
  told :meth:`Deadlines.ended` is taken out and given to ``expire``, earliest
  deadline first.
* A duration's dict goes when its last request does, so the durations kept
  are at most the requests waiting.
* An ``expire`` that raises (a bug) is the loop's to report; the timer is
  set again all the same, so every other request still runs out in time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

T = TypeVar("T", bound=Hashable)

#: The loop's clock (``time.monotonic``) ticks this finely; asyncio runs a timer this early.
_RESOLUTION: Final = time.get_clock_info("monotonic").resolution


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

    def close(self) -> None:
        """Forget every deadline and stop the timer."""
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm, self._alarm_at = None, math.inf
        self._queues.clear()

    def _set_alarm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self._alarm, self._alarm_at = loop.call_at(deadline, self._ring, loop), deadline

    def _ring(self, loop: asyncio.AbstractEventLoop) -> None:
        self._alarm, self._alarm_at = None, math.inf
        now = loop.time() + _RESOLUTION
        queues = self._queues
        due: list[tuple[float, float, T]] = []
        for seconds, queue in queues.items():
            for request, deadline in queue.items():  # oldest first: stop at the first not due
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
            self._rearm(loop)

    def _rearm(self, loop: asyncio.AbstractEventLoop) -> None:
        queues = self._queues
        earliest = min((next(iter(queue.values())) for queue in queues.values()), default=None)
        if earliest is not None and earliest < self._alarm_at:  # expire may have added one
            if self._alarm is not None:
                self._alarm.cancel()
            self._set_alarm(loop, earliest)
