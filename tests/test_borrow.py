"""What the borrow methods return (``_borrow``): the awaitable acquire and the ``async with`` block.

Against the loopback echo server. The race of two tasks entering one object is
in ``tests/test_ownership.py`` (the ownership promise, end to end); here: each
object's own contract, the ways it can be used, and the per-call timeout.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from aio_websocket_pool import ConnectionBusyError, ConnectionPoolExhaustedError, State
from helpers import BOUND, assert_consistent, pool_maker, pooled, round_trip
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)


async def test_an_acquire_is_an_awaitable_a_task_and_a_block(server: LoopbackServer) -> None:
    """The three ways 0.1.0 code and asyncpg-style code use ``pool.acquire()``."""
    async with make_pool(server) as pool:
        awaited = await pool.acquire()
        await pool.release(awaited)
        tasked = await asyncio.create_task(pool.acquire())  # create_task takes only coroutines
        await pool.release(tasked)
        bounded = await asyncio.wait_for(pool.acquire(), BOUND)
        await pool.release(bounded)
        async with pool.acquire() as conn:
            await round_trip(conn, "in a block")
            assert pooled(conn).state is State.BUSY
        assert pooled(conn).state is State.IDLE  # released by the block's end
        assert pool.total_connections == 1
        assert_consistent(pool)


async def test_one_acquire_awaited_twice_is_refused(server: LoopbackServer) -> None:
    async with make_pool(server) as pool:
        acquiring = pool.acquire()
        lease = await acquiring
        with pytest.raises(ConnectionBusyError, match=r"call pool\.acquire\(\) for each hand-out"):
            await acquiring
        await pool.release(lease)
        assert pool.busy_connections == 0


async def test_an_acquire_never_awaited_claims_nothing(server: LoopbackServer) -> None:
    async with make_pool(server, warmup_connections=1) as pool:
        acquiring = pool.acquire()
        assert pool.busy_connections == 0
        acquiring.close()  # what the garbage collector would do: no warning, nothing held
        assert pool.busy_connections == 0
        assert pool.available_connections == 1


async def test_a_get_connection_object_may_be_used_again_once_its_block_ended(
    server: LoopbackServer,
) -> None:
    async with make_pool(server) as pool:
        borrowing = pool.get_connection()
        for n in range(3):
            async with borrowing as conn:
                await round_trip(conn, f"block {n}")
        assert pool.total_connections == 1
        assert pool.busy_connections == 0


async def test_a_block_that_raised_gives_its_connection_up(server: LoopbackServer) -> None:
    """A reply may still be owed to a block that raised: the next borrower never gets it."""
    async with make_pool(server) as pool:
        borrowing = pool.get_connection()
        conn = await borrowing.__aenter__()
        await conn.send("its reply may still come")
        await borrowing.__aexit__(ZeroDivisionError, ZeroDivisionError(), None)  # the block raised
        assert pooled(conn).state is State.CLOSED
        assert "borrower left on an error" in (pooled(conn).history[-1].reason or "")
        assert_consistent(pool)


@pytest.mark.parametrize("bad", [-1.0, math.nan, "1"])
async def test_a_bad_per_call_timeout_is_refused_at_the_call(
    server: LoopbackServer, bad: object
) -> None:
    async with make_pool(server) as pool:
        with pytest.raises((ValueError, TypeError), match="timeout"):
            pool.acquire(timeout=bad)  # type: ignore[arg-type]
        with pytest.raises((ValueError, TypeError), match="timeout"):
            pool.get_connection(timeout=bad)  # type: ignore[arg-type]
        assert pool.total_connections == 0


async def test_a_per_call_timeout_overrides_the_pools(server: LoopbackServer) -> None:
    async with make_pool(server, max_connections=1) as pool:
        held = await pool.acquire()
        with pytest.raises(ConnectionPoolExhaustedError, match=r"timeout=0\.05s"):
            await pool.acquire(timeout=0.05)
        await pool.release(held)
        async with pool.get_connection(timeout=None) as conn:  # None: wait as long as it takes
            await round_trip(conn, "free again")
