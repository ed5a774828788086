"""The requests' deadlines on one timer (``_deadlines``), on a real event loop.

No socket: the multiplexer's own tests time requests out against servers;
these pin down the heap's rules, which those cannot see: the order, never
early, an earlier deadline that comes later, the sweep and the closing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aio_websocket_pool._deadlines import SWEEP_SLACK, Deadlines


@dataclass(eq=False)
class Request:
    """A stand-in request: its name, whether it still waits, and when it expired."""

    name: str
    waiting: bool = True
    expired_at: list[float] = field(default_factory=list)


class Recorder:
    """The ``expire`` of a :class:`Deadlines`, keeping the order it was called in."""

    def __init__(self) -> None:
        self.expired: list[Request] = []

    def __call__(self, request: Request) -> None:
        request.expired_at.append(asyncio.get_running_loop().time())
        self.expired.append(request)


def deadlines_for(recorder: Recorder) -> Deadlines[Request]:
    return Deadlines(recorder, lambda request: request.waiting)


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


async def test_every_entry_is_given_to_expire_which_tells_the_ended_apart() -> None:
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    answered = Request("answered", waiting=False)
    deadlines.add(0.01, answered)
    await asyncio.sleep(0.03)
    assert recorder.expired == [answered]


async def test_ended_requests_are_swept_so_the_heap_stays_bounded() -> None:
    deadlines = deadlines_for(Recorder())
    waiting = Request("waiting")
    deadlines.add(30.0, waiting)
    for n in range(10 * SWEEP_SLACK):
        request = Request(str(n))
        deadlines.add(30.0, request)
        request.waiting = False
        deadlines.ended()
        assert len(deadlines) <= 1 + 2 * SWEEP_SLACK
    deadlines.close()


async def test_a_sweep_keeps_the_requests_still_waiting() -> None:
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    kept = [Request(f"kept-{n}") for n in range(3)]
    for request in kept:
        deadlines.add(0.02, request)
    for _ in range(SWEEP_SLACK + 1):  # enough ends for a sweep, none of them in the heap
        deadlines.ended()
    assert len(deadlines) == len(kept)
    await asyncio.sleep(0.05)
    assert recorder.expired == kept


async def test_closing_stops_the_timer_and_forgets_every_deadline() -> None:
    recorder = Recorder()
    deadlines = deadlines_for(recorder)
    deadlines.add(0.01, Request("forgotten"))
    deadlines.close()
    await asyncio.sleep(0.03)
    assert recorder.expired == []
    assert len(deadlines) == 0
