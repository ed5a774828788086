"""The timeouts of a multiplexer's requests, on one timer of the event loop.

A timer handle per request (``loop.call_at``, which ``asyncio.timeout`` makes
too) cost a multiplexed call about 4 µs in the M1 benchmark: the handle, its
arguments and its context are three more objects for the garbage collector to
walk while the request waits, and every handle cancelled stays in the loop's
heap until the loop sweeps it. Here a request's deadline is one entry of a
heap of the multiplexer's own, and one loop timer is set for the earliest.

Rules:

* The timer is set for the earliest deadline, exactly: a request's time runs
  out when a timer of its own would have fired, never later.
* When it fires, every entry whose deadline has passed is taken out and given
  to ``expire``, which leaves a request that ended meanwhile as it is.
* An entry stays in the heap after its request ended (a heap has no cheap
  removal). The heap is swept of them when they are most of it, so it holds
  about twice the requests still waiting, at most, and each sweep is paid for
  by as many ends as it keeps entries.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

T = TypeVar("T")

#: The loop's clock (``time.monotonic``) ticks this finely; asyncio runs a timer this early.
_RESOLUTION: Final = time.get_clock_info("monotonic").resolution
#: Ended entries tolerated beyond half the heap before a sweep, so a small heap is not swept
#: at every end.
SWEEP_SLACK: Final = 64


class Deadlines(Generic[T]):
    """Deadlines of requests (any ``T``), on one timer of the running loop.

    Args:
        expire: Called with a request whose deadline passed.
        is_waiting: Whether a request still waits (its entry is worth keeping).
    """

    def __init__(self, expire: Callable[[T], None], is_waiting: Callable[[T], bool]) -> None:
        self._expire = expire
        self._is_waiting = is_waiting
        self._heap: list[tuple[float, int, T]] = []
        self._numbers = itertools.count()  # ties broken by age, never by comparing requests
        self._ended = 0  # ends told since the last sweep
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = math.inf  # when the alarm rings (its when(), a Python call less)

    def __len__(self) -> int:
        """Entries in the heap, ended requests' included."""
        return len(self._heap)

    def add(self, seconds: float, request: T) -> None:
        """Give ``request`` until ``seconds`` from now."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        heapq.heappush(self._heap, (deadline, next(self._numbers), request))
        if deadline < self._alarm_at:
            if self._alarm is not None:
                self._alarm.cancel()
            self._set_alarm(loop, deadline)

    def ended(self) -> None:
        """A request that was added ended; sweep the heap when ended ones are most of it."""
        self._ended += 1
        if 2 * self._ended > len(self._heap) + SWEEP_SLACK:
            waiting = self._is_waiting
            self._heap = heap = [entry for entry in self._heap if waiting(entry[2])]
            heapq.heapify(heap)
            self._ended = 0

    def close(self) -> None:
        """Forget every deadline and stop the timer."""
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm, self._alarm_at = None, math.inf
        self._heap.clear()

    def _set_alarm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self._alarm, self._alarm_at = loop.call_at(deadline, self._ring, loop), deadline

    def _ring(self, loop: asyncio.AbstractEventLoop) -> None:
        self._alarm, self._alarm_at = None, math.inf
        heap = self._heap
        now = loop.time() + _RESOLUTION
        while heap and heap[0][0] <= now:
            self._expire(heapq.heappop(heap)[2])
        if heap:
            self._set_alarm(loop, heap[0][0])
