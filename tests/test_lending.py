"""Where leases start and end (``_lending.Lending``): the fast path, the hand-out, the release.

What matters here is what no await may split: a warm acquire hands out
without yielding to the event loop (so no cancellation can land between the
grant and the lease), and a release decides in the same step. Against the
real loopback server.
"""

from __future__ import annotations

import logging

import pytest

from aio_websocket_pool import ConnectionLease, State
from helpers import pool_maker
from loopback import LoopbackServer

pytestmark = pytest.mark.timeout(30)
make_pool = pool_maker(health_check_interval=None, acquire_timeout=1.0, warmup_connections=1)


async def test_a_warm_acquire_hands_out_without_yielding_to_the_loop(
    server: LoopbackServer,
) -> None:
    async with make_pool(server) as pool:
        acquire = pool._lending.acquire(fresh=False, wait=None)
        # A coroutine that finishes on its first step never suspended.
        with pytest.raises(StopIteration) as finished:
            acquire.send(None)
        lease = finished.value.value
        assert isinstance(lease, ConnectionLease)
        assert lease.state is State.BUSY
        await pool.release(lease)


async def test_a_fast_hand_out_records_a_wait_of_zero(server: LoopbackServer) -> None:
    async with make_pool(server) as pool:
        for _ in range(3):
            await pool.release(await pool.acquire())
        waits = pool.stats().acquire_wait
        assert waits.count == 3
        assert waits.max == 0.0


async def test_each_hand_out_is_a_new_lease_and_ends_the_one_before(
    server: LoopbackServer,
) -> None:
    async with make_pool(server) as pool:
        first = await pool.acquire()
        await pool.release(first)
        second = await pool.acquire()
        assert second is not first
        assert second._connection is first._connection
        assert second._is_live
        assert not first._is_live
        await pool.release(second)


async def test_a_second_release_is_ignored_with_a_warning_and_changes_nothing(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        pool._lending.release_now(lease)
        taken = await pool.acquire()  # the same connection, lent again
        before = pool.stats()
        with caplog.at_level(logging.WARNING, logger="aio_websocket_pool"):
            pool._lending.release_now(lease)
        assert "has ended already" in caplog.text
        assert pool.stats() == before
        assert taken._is_live
        await pool.release(taken)


async def test_what_is_not_a_lease_is_ignored_with_a_warning(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_pool(server) as pool:
        before = pool.stats()
        with caplog.at_level(logging.WARNING, logger="aio_websocket_pool"):
            pool._lending.release_now(pool.connections[0])
        assert "not what a pool's acquire() handed out" in caplog.text
        assert pool.stats() == before
        assert pool.connections[0].state is State.IDLE
