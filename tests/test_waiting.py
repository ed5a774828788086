"""The line of acquirers (``_waiting``): first come first served, and no dead entries piling up.

On a real event loop, with plain values for grants: the coordinator's use of
the line is in ``tests/test_coordinator.py``, the pool's against servers in
``tests/test_pool_acquire.py`` and ``tests/test_acquire_bounds.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from aio_websocket_pool import ConnectionPoolUnavailableError
from aio_websocket_pool._waiting import WaitingLine


def grants(*values: str) -> Callable[[bool], str | None]:
    """A ``grant(fresh)`` that hands out ``values`` in order, then nothing."""
    left: Iterator[str] = iter(values)
    return lambda fresh: next(left, None)


async def test_waiters_are_served_in_the_order_they_came() -> None:
    line: WaitingLine[str] = WaitingLine()
    waiters = [line.join(fresh=False) for _ in range(4)]
    line.serve(grants("a", "b"))
    assert [w.future.result() for w in waiters[:2]] == ["a", "b"]
    assert not waiters[2].future.done()
    assert (len(line), line.live_count()) == (2, 2)
    line.serve(grants("c"))
    assert waiters[2].future.result() == "c"
    assert [w.queued for w in waiters] == [False, False, False, True]


async def test_a_waiter_that_left_is_skipped_and_not_counted() -> None:
    line: WaitingLine[str] = WaitingLine()
    first, second = line.join(fresh=False), line.join(fresh=True)
    line.leave(first)  # a timeout or a cancellation
    assert first.future.cancelled()
    assert (bool(line), line.live_count(), line.departed) == (True, 1, 1)
    asked: list[bool] = []

    def grant(fresh: bool) -> str:
        asked.append(fresh)
        return "x"

    line.serve(grant)
    assert second.future.result() == "x"
    assert asked == [True]  # the one who left was never offered anything
    assert (bool(line), line.departed) == (False, 0)


async def test_dead_entries_are_swept_once_they_are_half_the_line() -> None:
    """A line that is never served (the pool exhausted) must not grow with every timeout."""
    line: WaitingLine[str] = WaitingLine()
    keeper = line.join(fresh=False)  # waits all along
    for _ in range(1000):
        line.leave(line.join(fresh=False))
        assert len(line) <= 3
    assert line.live_count() == 1
    line.serve(grants("kept"))
    assert keeper.future.result() == "kept"


async def test_leaving_after_being_served_keeps_the_grant() -> None:
    line: WaitingLine[str] = WaitingLine()
    waiter = line.join(fresh=False)
    line.serve(grants("g"))
    line.leave(waiter)
    assert waiter.was_granted
    assert waiter.future.result() == "g"
    assert line.departed == 0


async def test_failing_all_empties_the_line_with_the_pools_error() -> None:
    line: WaitingLine[str] = WaitingLine()
    waiting, left = line.join(fresh=False), line.join(fresh=False)
    line.leave(left)
    line.fail_all("the pool was closed")
    with pytest.raises(ConnectionPoolUnavailableError, match="the pool was closed"):
        waiting.future.result()
    assert not waiting.was_granted
    assert (len(line), line.departed) == (0, 0)


async def test_a_waiter_whose_acquirer_was_cancelled_is_never_granted() -> None:
    """The future a task awaits is cancelled with it: serve must pass it over."""
    line: WaitingLine[str] = WaitingLine()
    waiter = line.join(fresh=False)
    task = asyncio.create_task(asyncio.wait_for(waiter.future, 5.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    line.serve(grants("unused"))
    assert not waiter.was_granted
    assert len(line) == 0
