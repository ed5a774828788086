"""The requests' deadlines on one timer (``_deadlines``), on a real event loop.

No socket: the multiplexer's own tests time requests out against servers;
these pin down the rules of its queues, which those cannot see: the order,
never early, an earlier deadline that comes later, ended requests leaving at
once, and the closing.
"""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass, field
from types import FrameType

from aio_websocket_pool import _deadlines
from aio_websocket_pool._deadlines import Deadlines


@dataclass(eq=False)
class Request:
    """A stand-in request: its name, and when it expired."""

    name: str
    expired_at: list[float] = field(default_factory=list)


class Recorder:
    """The ``expire`` of a :class:`Deadlines`, keeping the order it was called in."""

    def __init__(self) -> None:
        self.expired: list[Request] = []

    def __call__(self, request: Request) -> None:
        request.expired_at.append(asyncio.get_running_loop().time())
        self.expired.append(request)


def deadlines_for(recorder: Recorder) -> Deadlines[Request]:
    return Deadlines(recorder)


async def test_deadlines_pass_in_order_and_never_early() -> None:
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    loop = asyncio.get_running_loop()
    late, early = Request("late"), Request("early")
    added = loop.time()
    deadlines.add(0.06, late)
    deadlines.add(0.02, early)  # earlier than the timer set so far: the timer moves
    await asyncio.sleep(0.1)
    assert recorder.expired == [early, late]
    assert early.expired_at[0] >= added + 0.02
    assert late.expired_at[0] >= added + 0.06
    assert len(deadlines) == 0


async def test_a_request_never_told_ended_is_given_to_expire() -> None:
    """Whether it still waits is for ``expire`` to tell (the multiplexer asks its state)."""
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    answered = Request("answered")
    deadlines.add(0.01, answered)
    await asyncio.sleep(0.03)
    assert recorder.expired == [answered]


async def test_an_ended_request_leaves_at_once_and_so_does_its_duration() -> None:
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    waiting = Request("waiting")
    deadlines.add(0.02, waiting)
    for n in range(1000):
        request = Request(str(n))
        deadlines.add(30.0, request)
        deadlines.ended(30.0, request)
        assert len(deadlines) == 1
    assert list(deadlines._queues) == [0.02]  # no queue left behind for 30 s
    deadlines.ended(30.0, waiting)  # not the duration it was added with: nothing happens
    await asyncio.sleep(0.05)
    assert recorder.expired == [waiting]
    assert deadlines._queues == {}


async def test_a_shorter_duration_added_later_expires_first() -> None:
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    slow, fast, slow_too = Request("slow"), Request("fast"), Request("slow too")
    deadlines.add(0.06, slow)
    deadlines.add(0.01, fast)
    deadlines.add(0.06, slow_too)
    await asyncio.sleep(0.1)  # however late the loop runs the timer, the order is by deadline
    assert recorder.expired == [fast, slow, slow_too]


async def test_expire_may_end_other_requests_due_at_the_same_time() -> None:
    """As the multiplexer's does, through the callers it wakes: each leaves its queue once."""
    first, second, third = Request("first"), Request("second"), Request("third")
    expired: list[Request] = []

    def expire(request: Request) -> None:
        expired.append(request)
        if request is first:
            deadlines.ended(0.01, second)

    deadlines: Deadlines[Request] = Deadlines(expire)
    for request in (first, second, third):
        deadlines.add(0.01, request)
    await asyncio.sleep(0.03)
    assert expired == [first, third]
    assert len(deadlines) == 0


async def test_an_expire_that_raises_leaves_the_other_deadlines_running() -> None:
    """A bug in one expiry must not leave every later request without a timeout."""
    broken, after, later = Request("broken"), Request("after"), Request("later")
    expired: list[Request] = []

    def expire(request: Request) -> None:
        expired.append(request)
        if request is broken:
            raise RuntimeError("a bug in expire")

    loop = asyncio.get_running_loop()
    reported: list[object] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
    try:
        deadlines: Deadlines[Request] = Deadlines(expire)
        deadlines.add(0.01, broken)
        deadlines.add(0.01, after)
        deadlines.add(0.03, later)
        await asyncio.sleep(0.08)
    finally:
        loop.set_exception_handler(None)
    assert expired == [broken, after, later]
    assert [type(error) for error in reported] == [RuntimeError]
    assert len(deadlines) == 0


async def test_closing_stops_the_timer_and_forgets_every_deadline() -> None:
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    deadlines.add(0.01, Request("forgotten"))
    deadlines.close()
    await asyncio.sleep(0.03)
    assert recorder.expired == []
    assert len(deadlines) == 0


async def test_many_durations_expire_in_deadline_order_and_never_early() -> None:
    """A timeout per call, as a caller may give: the heap of durations keeps the order."""
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    loop = asyncio.get_running_loop()
    shuffle = random.Random(11)
    durations = [0.001 * k for k in range(1, 121)]
    shuffle.shuffle(durations)
    added: dict[str, float] = {}
    for seconds in durations:
        request = Request(f"{seconds:.3f}")
        added[request.name] = loop.time() + seconds
        deadlines.add(seconds, request)
        if shuffle.random() < 0.25:  # answered in time: never expires
            deadlines.ended(seconds, request)
            del added[request.name]
    await asyncio.sleep(0.2)
    assert [request.name for request in recorder.expired] == sorted(added, key=added.__getitem__)
    assert all(request.expired_at[0] >= added[request.name] for request in recorder.expired)
    assert len(deadlines) == 0
    assert deadlines._heads == []


async def test_a_request_expire_adds_with_a_duration_being_rung_still_runs_out() -> None:
    recorder = Recorder()
    first, again = Request("first"), Request("again")

    def expire(request: Request) -> None:
        recorder(request)
        if request is first:
            deadlines.add(0.01, again)  # the duration whose queue the ring is emptying

    deadlines: Deadlines[Request] = Deadlines(expire)
    deadlines.add(0.01, first)
    await asyncio.sleep(0.06)
    assert recorder.expired == [first, again]
    assert len(deadlines) == 0


async def ring_work(waiting_durations: int) -> int:
    """Calls the deadlines' code makes while one deadline rings, ``waiting_durations`` waiting.

    Counted, not timed: every Python call into ``_deadlines`` and every C call
    made from it, through ``sys.setprofile``, on the real loop.
    """
    deadlines = deadlines_for(Recorder())
    for n in range(waiting_durations):
        deadlines.add(30.0 + n, Request(str(n)))
    deadlines.add(0.005, Request("due"))
    calls = 0

    def count(frame: FrameType, event: str, _: object) -> None:
        nonlocal calls
        if event in ("call", "c_call") and frame.f_code.co_filename == _deadlines.__file__:
            calls += 1

    sys.setprofile(count)
    try:
        await asyncio.sleep(0.03)
    finally:
        sys.setprofile(None)
    deadlines.close()
    return calls


async def test_a_ring_costs_what_is_due_not_every_duration_that_waits() -> None:
    """With a timeout per call, a ring that looked at every duration made each call O(n)."""
    few, many = await ring_work(10), await ring_work(3000)
    assert few > 0
    assert many <= few + 5, (few, many)


async def test_durations_ended_in_time_leave_a_bounded_heap_behind() -> None:
    """A timeout per call, every call answered: the heap kept one entry per duration ever used.

    The review measured 200k entries after 200k calls, and one re-arm that
    then stalled the loop for a second sweeping them.
    """
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    waiting = Request("waiting")
    deadlines.add(0.05, waiting)
    allowed = _deadlines._STALE_HEADS_ALLOWED + 1  # the entry of the duration just ended
    for n in range(5000):
        request = Request(str(n))
        deadlines.add(10.0 + n / 1000, request)
        deadlines.ended(10.0 + n / 1000, request)
        assert len(deadlines._heads) <= 2 * len(deadlines._queues) + allowed
    assert deadlines._headed >= {seconds for _, seconds in deadlines._heads}
    await asyncio.sleep(0.1)
    assert recorder.expired == [waiting]  # the rebuilt heap still rings on time
    assert deadlines._heads == []


async def test_a_rebuild_inside_a_ring_keeps_every_deadline() -> None:
    """``expire`` ending many requests of other durations makes the heap again mid-ring."""
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    others = [(0.03 + n / 10_000, Request(f"other {n}")) for n in range(200)]
    due_now = [Request(f"due {n}") for n in range(3)]
    later = Request("later")

    def expire(request: Request) -> None:
        recorder(request)
        if request is due_now[0]:
            for seconds, other in others:
                deadlines.ended(seconds, other)
            deadlines.add(0.01, Request("added mid-ring"))  # to a duration being rung

    deadlines: Deadlines[Request] = Deadlines(expire)
    added = loop.time()
    for request in due_now:
        deadlines.add(0.01, request)
    for seconds, other in others:
        deadlines.add(seconds, other)
    deadlines.add(0.05, later)
    await asyncio.sleep(0.12)
    assert [request.name for request in recorder.expired] == [
        "due 0",
        "due 1",
        "due 2",
        "added mid-ring",
        "later",
    ]
    assert later.expired_at[0] >= added + 0.05
    assert len(deadlines) == 0
    assert deadlines._heads == []
    assert deadlines._headed == set()
