"""Per-call ``timeout=`` on the four ways to borrow, and the forms ``acquire()`` takes.

asyncpg and psycopg_pool users pass a timeout to each acquire; code written
for httpx or psycopg catches a pool timeout as ``TimeoutError``; asyncpg code
writes ``async with pool.acquire() as conn:``; 0.1.0 code hands
``pool.acquire()`` to ``asyncio.create_task`` and ``asyncio.wait_for``. Each
test holds the pool's only connection so that a borrower has to wait, on the
real loopback server.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from aio_websocket_pool import (
    ConnectionLease,
    ConnectionPoolExhaustedError,
    LeaseEndedError,
    WebsocketConnectionPool,
    WebsocketError,
)
from helpers import assert_consistent, pool_maker, pooled, round_trip, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None, max_connections=1, close_timeout=0.1)

#: How long a borrower whose wait should not have run out is watched still waiting.
STILL_WAITING = 0.2

Borrow = Callable[..., Coroutine[Any, Any, str]]


async def by_acquire(pool: WebsocketConnectionPool, **timeout: Any) -> str:
    lease = await pool.acquire(**timeout)
    await pool.release(lease)
    return lease.id


async def by_acquire_new(pool: WebsocketConnectionPool, **timeout: Any) -> str:
    lease = await pool.acquire_new(**timeout)
    await pool.release(lease)
    return lease.id


async def by_get_connection(pool: WebsocketConnectionPool, **timeout: Any) -> str:
    async with pool.get_connection(**timeout) as lease:
        return lease.id


async def by_get_new_connection(pool: WebsocketConnectionPool, **timeout: Any) -> str:
    async with pool.get_new_connection(**timeout) as lease:
        return lease.id


BORROWS = pytest.mark.parametrize(
    "borrow", [by_acquire, by_acquire_new, by_get_connection, by_get_new_connection]
)


async def holding_the_only_connection(pool: WebsocketConnectionPool) -> ConnectionLease:
    """Borrow the pool's one connection, so that the next borrower must wait."""
    lease = await pool.acquire()
    assert pool.busy_connections == pool.stats().max_connections == 1
    return lease


async def still_waiting(task: asyncio.Task[Any], pool: WebsocketConnectionPool) -> None:
    """``task`` is queued for a connection and stays so for :data:`STILL_WAITING` seconds."""
    await wait_until(lambda: pool.stats().waiting == 1 or task.done(), "the borrower queues")
    await asyncio.sleep(STILL_WAITING)
    assert not task.done(), f"the borrower gave up: {task}"
    assert pool.stats().waiting == 1


# -- the timeout of one call --------------------------------------------------------------


@BORROWS
async def test_a_shorter_timeout_gives_up_before_acquire_timeout(
    server: LoopbackServer, borrow: Borrow
) -> None:
    async with make_pool(server, acquire_timeout=5.0) as pool:
        held = await holding_the_only_connection(pool)
        started = time.monotonic()
        with pytest.raises(ConnectionPoolExhaustedError, match=r"timeout=0\.1s"):
            await borrow(pool, timeout=0.1)
        assert 0.1 <= time.monotonic() - started < 1.0
        assert pool.stats().waiting == 0  # it left the queue
        await pool.release(held)
        assert_consistent(pool)


@BORROWS
async def test_a_longer_timeout_outwaits_acquire_timeout(
    server: LoopbackServer, borrow: Borrow
) -> None:
    async with make_pool(server, acquire_timeout=0.05) as pool:
        held = await holding_the_only_connection(pool)
        task = asyncio.create_task(borrow(pool, timeout=2.0))
        await still_waiting(task, pool)  # four times acquire_timeout
        await pool.release(held)
        async with asyncio.timeout(1):
            await task
        assert pool.stats().acquired == 2
        assert_consistent(pool)


@BORROWS
@pytest.mark.parametrize("forever", [None, math.inf])
async def test_timeout_none_or_infinite_waits_until_served(
    server: LoopbackServer, borrow: Borrow, forever: float | None
) -> None:
    async with make_pool(server, acquire_timeout=0.05) as pool:
        held = await holding_the_only_connection(pool)
        task = asyncio.create_task(borrow(pool, timeout=forever))
        await still_waiting(task, pool)
        await pool.release(held)
        async with asyncio.timeout(1):
            await task
        assert_consistent(pool)


@BORROWS
async def test_timeout_zero_fails_at_once_whatever_acquire_timeout(
    server: LoopbackServer, borrow: Borrow
) -> None:
    async with make_pool(server, acquire_timeout=5.0) as pool:
        held = await holding_the_only_connection(pool)
        started = time.monotonic()
        with pytest.raises(ConnectionPoolExhaustedError):
            await borrow(pool, timeout=0)
        assert time.monotonic() - started < 0.5
        await pool.release(held)


@BORROWS
async def test_without_timeout_the_pools_acquire_timeout_applies(
    server: LoopbackServer, borrow: Borrow
) -> None:
    async with make_pool(server, acquire_timeout=0.1) as pool:
        held = await holding_the_only_connection(pool)
        started = time.monotonic()
        with pytest.raises(ConnectionPoolExhaustedError, match=r"acquire_timeout=0\.1s"):
            await borrow(pool)
        assert 0.1 <= time.monotonic() - started < 1.0
        await pool.release(held)


@BORROWS
async def test_a_free_connection_is_handed_out_whatever_the_timeout(
    server: LoopbackServer, borrow: Borrow
) -> None:
    """``timeout=0`` bounds the wait, not the hand-out: nothing to wait for, no failure."""
    async with make_pool(server) as pool:
        async with asyncio.timeout(1):
            await borrow(pool, timeout=0)
        assert pool.stats().acquired == 1


# -- refused at the call ------------------------------------------------------------------

METHODS = ["acquire", "acquire_new", "get_connection", "get_new_connection"]
BAD_TIMEOUTS = [
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(math.nan, ValueError, id="nan"),
    pytest.param("1", TypeError, id="str"),
    pytest.param(True, TypeError, id="bool"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("timeout", "error"), BAD_TIMEOUTS)
def test_a_bad_timeout_is_refused_at_the_call_before_any_await(
    server: LoopbackServer, method: str, timeout: object, error: type[Exception]
) -> None:
    """Raised by the call itself, with no event loop running: not when awaited or entered.

    (A synchronous test: had the call made a coroutine first, the unawaited
    coroutine would warn, and warnings fail the run.)
    """
    pool = make_pool(server)
    with pytest.raises(error, match="timeout"):
        getattr(pool, method)(timeout=timeout)
    assert not pool.is_started


# -- what the timeout is -------------------------------------------------------------------


async def test_except_timeout_error_catches_an_exhausted_pool(server: LoopbackServer) -> None:
    async with make_pool(server, acquire_timeout=0.05) as pool:
        held = await holding_the_only_connection(pool)
        caught: TimeoutError | None = None
        try:
            await pool.acquire()
        except TimeoutError as exc:  # what httpx and psycopg users write
            caught = exc
        assert isinstance(caught, ConnectionPoolExhaustedError)
        assert isinstance(caught, WebsocketError)  # 0.1.0's except clauses still catch it
        await pool.release(held)


# -- the forms of acquire() -------------------------------------------------------------------


async def test_create_task_takes_acquire(server: LoopbackServer) -> None:
    """``create_task`` accepts only a coroutine: what ``acquire()`` returns must be one."""
    async with make_pool(server, acquire_timeout=1.0) as pool:
        task = asyncio.create_task(pool.acquire())
        async with asyncio.timeout(1):
            lease = await task
        await round_trip(lease, "from a task")
        await pool.release(lease)
        assert_consistent(pool)


async def test_wait_for_takes_acquire(server: LoopbackServer) -> None:
    async with make_pool(server, acquire_timeout=5.0) as pool:
        lease = await asyncio.wait_for(pool.acquire(), 1)
        await round_trip(lease, "from wait_for")
        # Timing out in wait_for while queued: the borrower leaves the queue, nothing leaks.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.acquire(), 0.1)
        assert pool.stats().waiting == 0
        await pool.release(lease)
        assert_consistent(pool)
        assert pool.available_connections == 1


async def test_async_with_acquire_releases_on_exit(server: LoopbackServer) -> None:
    async with make_pool(server, acquire_timeout=1.0) as pool:
        async with pool.acquire() as lease:
            assert isinstance(lease, ConnectionLease)
            await round_trip(lease, "in the block")
            assert pool.busy_connections == 1
        assert (pool.busy_connections, pool.available_connections) == (0, 1)
        with pytest.raises(LeaseEndedError):
            await lease.send("after the block")
        async with pool.acquire() as again:  # the same connection, reused
            assert again.id == lease.id
        assert pool.stats().opened == 1
        assert_consistent(pool)


async def test_async_with_acquire_takes_a_timeout(server: LoopbackServer) -> None:
    async with make_pool(server, acquire_timeout=5.0) as pool:
        held = await holding_the_only_connection(pool)
        with pytest.raises(ConnectionPoolExhaustedError):
            async with pool.acquire(timeout=0.05):
                pytest.fail("entered the block without a connection")
        await pool.release(held)
        assert_consistent(pool)


async def test_a_block_that_raises_closes_its_connection(server: LoopbackServer) -> None:
    """A reply may still be on its way: the connection is not lent to the next borrower."""
    async with make_pool(server, acquire_timeout=1.0) as pool:
        with pytest.raises(RuntimeError, match="the borrower failed"):  # noqa: PT012  (the block)
            async with pool.acquire() as lease:
                await lease.send("a request whose reply nobody reads")
                raise RuntimeError("the borrower failed")
        await wait_until(lambda: pooled(lease).is_closed, "the connection is closed")
        assert pool.total_connections == 0
        async with pool.acquire() as other:
            assert other.id != lease.id
            await round_trip(other, "a fresh connection")  # never the stale reply
        assert_consistent(pool)


async def test_a_block_cancelled_closes_its_connection(server: LoopbackServer) -> None:
    async with make_pool(server, acquire_timeout=1.0) as pool:
        entered = asyncio.Event()
        leases: list[ConnectionLease] = []

        async def borrower() -> None:
            async with pool.acquire() as lease:
                leases.append(lease)
                entered.set()
                await lease.recv()  # a reply that never comes

        task = asyncio.create_task(borrower())
        async with asyncio.timeout(1):
            await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: pooled(leases[0]).is_closed, "the connection is closed")
        assert pool.busy_connections == pool.total_connections == 0
