"""The cancellation rules as one table: a task cancelled during X leaves Y.

Each row is driven against the loopback server: a task is cancelled at
exactly that point, then the outcome the row states is checked, along with
the counters (:func:`helpers.assert_consistent`) and, by the autouse leak
check, that no task of the pool is left running. The same table is in
``docs/state-machine.md``; a test below keeps the two the same.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aio_websocket_pool import State, WebsocketConnection, WebsocketConnectionPool
from helpers import (
    BOUND,
    assert_consistent,
    expect_cancelled,
    partial_in_inbox,
    pool_maker,
    pooled,
    round_trip,
    send_in_two_fragments,
    settle,
    spawn,
    triggers,
    wait_until,
)
from loopback import LoopbackServer

DOCS = Path(__file__).resolve().parent.parent / "docs" / "state-machine.md"

#: Bounded waits and hooks, quick closes; no health check unless a row asks for one.
make_pool = pool_maker(
    health_check_interval=None, acquire_timeout=BOUND, hook_timeout=BOUND, close_timeout=0.2
)

#: Makes a pool on the row's server with the row's options, and closes it after the row.
Make = Callable[..., WebsocketConnectionPool]


def last_reason(conn: WebsocketConnection) -> str:
    return conn.history[-1].reason or ""


# -- the rows ------------------------------------------------------------------------------


async def waiting_in_line(server: LoopbackServer, make: Make) -> None:
    pool = make(max_connections=1, max_waiting=1)
    held = await pool.acquire()
    await expect_cancelled_when(pool, spawn(pool.acquire()), lambda: pool.stats().waiting == 1)
    assert pool.stats().waiting == 0
    after = spawn(pool.acquire())  # max_waiting=1: it may queue only if the place was freed
    await wait_until(lambda: pool.stats().waiting == 1, "the next acquirer waits in line")
    await pool.release(held)
    got = await asyncio.wait_for(after, BOUND)
    assert pooled(got) is pooled(held)
    assert triggers(pooled(held)) == ["open", "acquire", "release", "acquire"]
    await pool.release(got)


async def granted_before_it_woke(server: LoopbackServer, make: Make) -> None:
    pool = make(max_connections=1)
    held = await pool.acquire()
    conn = pooled(held)
    waiter = spawn(pool.acquire())
    await wait_until(lambda: pool.stats().waiting == 1, "it waits in line")
    await pool.release(held)
    await asyncio.sleep(0)  # the dispatch grants it the connection; it has not woken yet
    assert conn.is_busy
    assert not waiter.done()
    await expect_cancelled(waiter)
    assert conn.state is State.IDLE
    assert triggers(conn) == ["open", "acquire", "release", "acquire", "release"]


async def the_handshake(server: LoopbackServer, make: Make) -> None:
    server.hold_handshakes()
    pool = make()
    await expect_cancelled_when(
        pool, spawn(pool.acquire()), lambda: server.handshakes_in_flight == 1
    )
    assert pool.stats().connecting == 1  # the handshake goes on
    server.release_handshakes()
    await wait_until(lambda: pool.available_connections == 1, "the new connection went idle")
    (conn,) = pool.connections
    assert triggers(conn) == ["open"]
    assert server.handshakes == 1


async def on_connect(server: LoopbackServer, make: Make) -> None:
    entered, go_on = asyncio.Event(), asyncio.Event()

    async def hook(conn: WebsocketConnection) -> None:
        entered.set()
        await go_on.wait()

    pool = make(on_connect=hook)
    await expect_cancelled_when(pool, spawn(pool.acquire()), entered.is_set)
    go_on.set()
    await wait_until(lambda: pool.available_connections == 1, "the new connection went idle")
    (conn,) = pool.connections
    assert triggers(conn) == ["open"]


async def the_health_check(server: LoopbackServer, make: Make) -> None:
    pool = make(health_check_interval=0.1, health_check_timeout=BOUND)
    lease = await pool.acquire()
    await pool.release(lease)
    conn = pooled(lease)
    await wait_until(lambda: conn.idle_for > 0.1, "idle past health_check_interval")
    server.freeze()  # the ping gets no pong
    # Granted it, the acquirer's one await before the hand-out is the ping.
    await expect_cancelled_when(pool, spawn(pool.acquire()), lambda: conn.state is State.BUSY)
    assert conn.state is State.IDLE
    assert triggers(conn)[-2:] == ["acquire", "release"]
    assert pool._core.health_check_due(conn), "a ping cut short counted as a check"


async def settling(server: LoopbackServer, make: Make) -> None:
    pool = make(max_connections=1, health_check_timeout=BOUND)
    lease = await pool.acquire()
    await pool.release(lease)
    conn = pooled(lease)
    go_on = asyncio.Event()
    sending = await send_in_two_fragments(server, "stray begun ", "and ended", go_on)
    await wait_until(lambda: partial_in_inbox(conn), "a message half received while idle")
    acquirer = spawn(pool.acquire())
    await expect_cancelled_when(pool, acquirer, lambda: conn.state is State.BUSY)
    assert conn.state is State.IDLE
    go_on.set()
    await asyncio.wait_for(sending, BOUND)
    async with pool.get_connection() as again:
        assert pooled(again) is conn
        await round_trip(again, "mine, not the stray")


async def on_acquire(server: LoopbackServer, make: Make) -> None:
    entered: list[WebsocketConnection] = []

    async def hook(conn: WebsocketConnection) -> None:
        entered.append(conn)
        await asyncio.Event().wait()

    pool = make(on_acquire=hook)
    await expect_cancelled_when(pool, spawn(pool.acquire()), lambda: bool(entered))
    [conn] = entered
    assert conn.is_closed
    assert "cancelled during on_acquire" in last_reason(conn)
    assert pool.total_connections == 0


async def a_receive(server: LoopbackServer, make: Make) -> None:
    pool = make()
    lease = await pool.acquire()
    await expect_cancelled_when(pool, spawn(lease.recv()), lambda: True)
    conn = pooled(lease)
    assert conn.state is State.BUSY  # nothing happens before the release
    await pool.release(lease)
    assert conn.is_closed
    assert last_reason(conn) == "a receive was cut off at release; a reply may still come"


async def a_send(server: LoopbackServer, make: Make) -> None:
    pool = make()
    lease = await pool.acquire()
    server.freeze()  # the server reads nothing: the send gets stuck once the buffers are full

    async def send_until_stuck() -> None:
        while True:
            await lease.send(os.urandom(500_000))  # random: compression cannot shrink it

    await expect_cancelled_when(pool, spawn(send_until_stuck()), lambda: lease._sending > 0)
    conn = pooled(lease)
    await pool.release(lease)
    assert conn.is_closed
    assert last_reason(conn) == "a send was cut off at release; a reply may still come"


async def a_get_connection_block(server: LoopbackServer, make: Make) -> None:
    pool = make()
    borrowed: list[WebsocketConnection] = []

    async def borrower() -> None:
        async with pool.get_connection() as conn:
            borrowed.append(pooled(conn))
            await asyncio.Event().wait()

    await expect_cancelled_when(pool, spawn(borrower()), lambda: bool(borrowed))
    [conn] = borrowed
    assert conn.is_closed
    assert "a reply may still be owed" in last_reason(conn)


async def release(server: LoopbackServer, make: Make) -> None:
    pool = make()
    lease = await pool.acquire()

    async def cancelled_releaser() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the cancellation lands at the first await, after release()
        await pool.release(lease)
        await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        await spawn(cancelled_releaser())
    assert pooled(lease).state is State.IDLE


async def close(server: LoopbackServer, make: Make) -> None:
    pool = make()
    lease = await pool.acquire()
    await expect_cancelled_when(pool, spawn(pool.close()), lambda: pool._core.closing)
    assert pool.is_closed
    assert pooled(lease).is_closed
    assert not pool._tasks.closers
    assert not pool._tasks.workers


async def close_all(server: LoopbackServer, make: Make) -> None:
    pool = make(close_timeout=BOUND)
    lease = await pool.acquire()
    await pool.release(lease)
    server.freeze()  # the closing handshake gets no answer for now
    await expect_cancelled_when(pool, spawn(pool.close_all()), lambda: bool(pool._tasks.closers))
    assert pool.is_closed
    assert pool._tasks.closers, "the socket stopped closing"
    server.thaw()
    await asyncio.wait_for(pool.close_all(), BOUND)  # waits for that socket
    assert not pool._tasks.closers
    assert server.open_connections == 0


async def start(server: LoopbackServer, make: Make) -> None:
    server.hold_handshakes()
    pool = make(warmup_connections=1)
    await expect_cancelled_when(pool, spawn(pool.start()), lambda: server.handshakes_in_flight == 1)
    server.release_handshakes()
    await wait_until(lambda: pool.available_connections == 1, "the warm-up connection went idle")


async def entering_async_with_pool(server: LoopbackServer, make: Make) -> None:
    server.hold_handshakes()
    pool = make(warmup_connections=1)

    async def enter() -> None:
        async with pool:
            pass

    await expect_cancelled_when(pool, spawn(enter()), lambda: server.handshakes_in_flight == 1)
    assert pool.is_closed
    assert pool.total_connections == 0
    assert not pool._tasks.workers


# -- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One row: where the task was when it was cancelled, and what that leaves."""

    during: str
    leaves: str
    drive: Callable[[LoopbackServer, Make], Awaitable[None]]


RULES = [
    Rule("`acquire()`, waiting in line",
         "nothing: its place in line is freed (`max_waiting` counts it no more)",
         waiting_in_line),
    Rule("`acquire()`, granted an idle connection but not yet woken",
         "the connection goes back idle, to the next waiter", granted_before_it_woke),
    Rule("`acquire()`, in the handshake of a connection opened for it",
         "the handshake goes on for the pool; the connection goes to the next waiter, "
         "or idle", the_handshake),
    Rule("`acquire()`, in `on_connect`",
         "the hook runs to its end for the pool; the connection goes to the next waiter, "
         "or idle", on_connect),
    Rule("`acquire()`, in the health check's ping",
         "the connection goes back idle, still due a check", the_health_check),
    Rule("`acquire()`, waiting for a message half received while idle to end",
         "the connection goes back idle", settling),
    Rule("`acquire()`, in `on_acquire`",
         "the connection is closed: what the hook left half done is unknown", on_acquire),
    Rule("a lease's `recv()`",
         "the lease goes on; at release the connection is closed: the reply may still come",
         a_receive),
    Rule("a lease's `send()`",
         "the lease goes on; at release the connection is closed: part of the message "
         "may have gone out", a_send),
    Rule("the body of `async with pool.get_connection()`",
         "the connection is closed at the block's end: a reply may still be owed",
         a_get_connection_block),
    Rule("`release()`",
         "nothing: it ends the lease without an await, so it always completes", release),
    Rule("`close()`, waiting for borrowers",
         "`close_all()` runs to its end: the pool is closed, held connections too", close),
    Rule("`close_all()`, waiting for sockets to close",
         "the pool is closed; the sockets go on closing; the next `close_all()` waits "
         "for them", close_all),
    Rule("`start()`, in the warm-up",
         "the warm-up goes on for the pool; its connections go idle", start),
    Rule("`async with pool`, entering (the warm-up)",
         "`close_all()` runs: the pool is closed, no handshake is left", entering_async_with_pool),
]  # fmt: skip


async def expect_cancelled_when(
    pool: WebsocketConnectionPool, task: asyncio.Task[Any], reached: Callable[[], bool]
) -> None:
    """Once ``task`` is at the point ``reached`` tells, cancel it: it ends cancelled."""
    await wait_until(reached, "the task reached the point where it is cancelled")
    await settle()
    assert not task.done(), "the task ended before it could be cancelled"
    await expect_cancelled(task)
    assert_consistent(pool)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.drive.__name__)
async def test_what_a_cancellation_leaves(rule: Rule, server: LoopbackServer) -> None:
    pools: list[WebsocketConnectionPool] = []

    def make(**options: Any) -> WebsocketConnectionPool:
        pools.append(make_pool(server, **options))
        return pools[-1]

    try:
        await rule.drive(server, make)
        for pool in pools:
            assert_consistent(pool)
    finally:
        server.thaw()
        server.release_handshakes()
        for pool in pools:
            await pool.close_all()


def test_the_docs_show_this_table() -> None:
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", DOCS.read_text(), re.MULTILINE)
    start = rows.index(("cancelled during", "leaves"))
    assert rows[start + 2 : start + 2 + len(RULES)] == [
        (rule.during, rule.leaves) for rule in RULES
    ]
