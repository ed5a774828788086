"""The wiring behind a pool (``_machinery.Machinery``): the coordinator's driver and owner.

Each test follows one decision from the coordinator to the I/O it asks for,
on real connections to the loopback server: a new slot becomes a handshake
and a connection filed in the index, a transition reaches the index with no
adapter in between, and a user's close runs to the end in a pool task even
when the caller stops waiting.
"""

from __future__ import annotations

import asyncio

import pytest

from aio_websocket_pool import State
from helpers import assert_consistent, expect_cancelled, pool_maker, pooled, spawn, wait_until
from loopback import LoopbackServer

pytestmark = pytest.mark.timeout(30)
make_pool = pool_maker(health_check_interval=None, acquire_timeout=5.0, close_timeout=0.2)


async def test_a_new_slot_becomes_a_named_connection_filed_in_the_index(
    server: LoopbackServer,
) -> None:
    async with make_pool(server, name="wired") as pool:
        lease = await pool.acquire()
        connection = pooled(lease)
        assert connection.id.startswith("wired/conn-")
        assert connection._pool is not None
        assert connection._lifecycle.observer == pool._core.on_transition
        assert connection in pool._core.index.in_state(State.BUSY)
        await pool.release(lease)
        assert connection in pool._core.index.in_state(State.IDLE)
        assert_consistent(pool)


async def test_every_transition_reaches_the_pools_history_once(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=2) as pool:
        seen = set()
        for _ in range(3):
            first, second = await pool.acquire(), await pool.acquire()
            seen |= {pooled(first), pooled(second)}
            await pool.release(first)
            await pool.release(second, force_remove=True)
        records = [id(record) for record in pool.history]
        own = [id(record) for connection in seen for record in connection.history]
        assert len(set(records)) == len(records)  # each once
        assert sorted(records) == sorted(own)  # the same records, no other
        assert len(seen) == 4  # one kept, three replaced
        assert_consistent(pool)


async def test_a_users_close_finishes_in_a_pool_task_when_the_caller_stops_waiting(
    server: LoopbackServer,
) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        connection = pooled(lease)
        closing = spawn(lease.close())
        await asyncio.sleep(0)
        closing.cancel()
        await expect_cancelled(closing)
        assert connection.state is State.CLOSED
        await wait_until(lambda: pool._core.slots_in_use == 0, "the socket closed")
        assert connection.websocket is None
        assert_consistent(pool)
