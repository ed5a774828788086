"""The pool-wide backoff gate (``_backoff``): its schedule, echoes, Retry-After and cap.

On a real event loop, with a seeded random source for the jitter; the pool's
use of the gate against real servers (503s, close code 1013) is in
``tests/test_server_signals.py``.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from aio_websocket_pool._backoff import BASE_DELAY, MAX_DELAY, Backoff


def gate() -> Backoff:
    return Backoff(random.Random(7))


async def test_an_open_gate_lets_a_handshake_through_at_once() -> None:
    backoff = gate()
    assert backoff.remaining == 0
    async with asyncio.timeout(0.5):
        await backoff.wait()


async def test_signals_in_a_row_double_the_delay_with_equal_jitter() -> None:
    """Each new signal (the gate open again) doubles the ceiling; jitter keeps the upper half."""
    backoff = gate()
    loop = asyncio.get_running_loop()
    for signals in range(1, 8):
        backoff._open_at = loop.time()  # the gate opened: the next signal is a new one
        ceiling = min(MAX_DELAY, BASE_DELAY * 2 ** (signals - 1))
        delay = backoff.trip()
        assert ceiling / 2 <= delay <= ceiling, signals


async def test_echoes_of_one_signal_do_not_push_the_gate_further() -> None:
    """The other refusals of a burst sent before the first came back are the same signal."""
    backoff = gate()
    first = backoff.trip()
    for _ in range(20):
        assert backoff.trip() <= first
    assert backoff._signals == 1


async def test_a_success_starts_the_schedule_from_the_bottom_again() -> None:
    backoff = gate()
    loop = asyncio.get_running_loop()
    for _ in range(5):
        backoff._open_at = loop.time()
        backoff.trip()
    backoff.reset()
    backoff._open_at = loop.time()
    assert backoff.trip() <= BASE_DELAY


@pytest.mark.parametrize(("retry_after", "at_least"), [(2.0, 2.0), (3600.0, MAX_DELAY)])
async def test_retry_after_is_honoured_up_to_the_cap(retry_after: float, at_least: float) -> None:
    backoff = gate()
    delay = backoff.trip(retry_after=retry_after)
    assert at_least <= delay <= MAX_DELAY
    assert backoff.remaining <= MAX_DELAY


async def test_waiting_returns_once_the_gate_opens_and_not_before() -> None:
    backoff = gate()
    loop = asyncio.get_running_loop()
    opens = loop.time() + backoff.trip()
    async with asyncio.timeout(BASE_DELAY * 10):
        await backoff.wait()
    assert loop.time() >= opens
    assert backoff.remaining == 0


@pytest.mark.regression
async def test_the_backoff_stays_capped_however_many_signals_come_in_a_row() -> None:
    """A server down for hours (about 1000 failed keeper rounds) still gets MAX_DELAY."""
    backoff = Backoff()
    # What 1024 earlier signals in a row leave behind; each waits up to MAX_DELAY
    # (10 s), so a server down for about three hours gets the keeper this far.
    backoff._signals = 1024
    assert 0 < backoff.trip() <= MAX_DELAY  # actual: OverflowError
