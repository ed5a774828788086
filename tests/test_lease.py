"""What the pool hands out is a lease: a fresh handle per hand-out, dead once given back.

0.1.0 code keeps working with it (it is a :class:`WebsocketConnection` with
every 0.1.0 property and method); what changes is that a handle stands for
one hand-out only, so a former borrower can no longer talk on a connection
lent to someone else, and a lease nobody gave back comes back by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from aio_websocket_pool import (
    ConnectionBusyError,
    ConnectionClosedError,
    LeaseEndedError,
    State,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from aio_websocket_pool.testing import TcpProxy
from helpers import pool_maker, round_trip, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None, acquire_timeout=1.0, close_timeout=0.1)


async def test_a_lease_is_a_websocket_connection(server: LoopbackServer) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        assert isinstance(lease, WebsocketConnection)
        await pool.release(lease)


async def test_each_hand_out_is_a_new_handle_even_of_the_same_connection(
    server: LoopbackServer,
) -> None:
    async with make_pool(server, max_connections=1) as pool:
        first = await pool.acquire()
        await pool.release(first)
        second = await pool.acquire()
        assert second.id == first.id
        assert second is not first
        await pool.release(second)


async def test_a_lease_has_every_property_and_method_of_0_1_0(server: LoopbackServer) -> None:
    """Read and called while the lease lasts, they say what the connection is."""
    async with make_pool(server, headers={"X-Client": "tests"}) as pool:
        lease = await pool.acquire()
        assert lease.uri == server.uri
        assert lease.headers == {"X-Client": "tests"}
        assert lease.state is State.BUSY
        assert (lease.is_busy, lease.is_draining, lease.is_closed) == (True, False, False)
        assert lease.is_connected
        assert lease.history[-1].dest is State.BUSY
        assert lease.last_activity > 0
        assert lease.websocket is not None
        await lease.connect()  # already open: does nothing
        await round_trip(lease, "request")
        assert await lease.ping() >= 0
        for method in ("send", "recv", "ping", "close", "release", "connect"):
            assert callable(getattr(lease, method))
        await lease.release()


def drop(references: list[Any]) -> None:
    """Let go of the only references to these objects, and collect them now."""
    references.clear()
    gc.collect()


async def end_by_pool_release(pool: WebsocketConnectionPool, lease: WebsocketConnection) -> None:
    await pool.release(lease)


async def end_by_own_release(pool: WebsocketConnectionPool, lease: WebsocketConnection) -> None:
    await lease.release()


async def end_by_force_remove(pool: WebsocketConnectionPool, lease: WebsocketConnection) -> None:
    await pool.release(lease, force_remove=True)


async def end_by_close(pool: WebsocketConnectionPool, lease: WebsocketConnection) -> None:
    await lease.close()


async def end_by_close_all(pool: WebsocketConnectionPool, lease: WebsocketConnection) -> None:
    await pool.close_all()


ENDINGS: dict[str, Callable[[WebsocketConnectionPool, WebsocketConnection], Awaitable[None]]] = {
    "pool.release": end_by_pool_release,
    "lease.release": end_by_own_release,
    "force_remove": end_by_force_remove,
    "lease.close": end_by_close,
    "close_all": end_by_close_all,
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
async def test_every_way_a_lease_ends_makes_its_handle_raise_lease_ended(
    server: LoopbackServer, ending: str
) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        await round_trip(lease, "during")
        await ENDINGS[ending](pool, lease)
        with pytest.raises(LeaseEndedError, match=lease.id):
            await lease.send("after")
        assert pool.busy_connections == 0


async def test_two_concurrent_receives_on_one_lease_are_a_busy_error(
    server: LoopbackServer,
) -> None:
    """Not websockets' ConcurrencyError: the pool's own, typed error."""
    async with make_pool(server) as pool, pool.get_connection() as lease:
        first = asyncio.create_task(lease.recv())
        await asyncio.sleep(0)
        try:
            with pytest.raises(ConnectionBusyError):
                async with asyncio.timeout(0.5):
                    await lease.recv()
            await lease.send("for the first")
            async with asyncio.timeout(1):
                assert await first == "for the first"
        finally:
            first.cancel()
            await asyncio.wait({first})


async def test_a_lease_dropped_without_release_comes_back_and_warns(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_pool(server) as pool:
        held = [await pool.acquire()]
        dropped = held[0].id
        with pytest.warns(ResourceWarning, match=dropped):
            drop(held)
        await wait_until(lambda: pool.busy_connections == 0, "the slot came back", within=1)
        assert pool.total_connections == 0  # closed, not reused: its state was unknown
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any(dropped in r.getMessage() for r in warnings), caplog.text


async def test_a_pool_dropped_while_open_warns(server: LoopbackServer) -> None:
    held = [make_pool(server)]
    await held[0].start()
    alive = weakref.ref(held[0])
    try:
        with pytest.warns(ResourceWarning):
            drop(held)
    finally:
        if (left := alive()) is not None:  # not collected (today: its sweep task holds it)
            await left.close_all()


async def test_async_for_over_a_lease_iterates_its_messages(server: LoopbackServer) -> None:
    async with make_pool(server) as pool, pool.get_connection() as lease:
        for n in range(3):
            await lease.send(f"message {n}")
        received: list[str | bytes] = []
        async with asyncio.timeout(1):
            async for message in lease:  # type: ignore[attr-defined,unused-ignore]
                received.append(message)
                if len(received) == 3:
                    break
        assert received == ["message 0", "message 1", "message 2"]


@pytest.mark.regression
async def test_closing_the_connection_inside_get_connection_is_not_release_misuse(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``conn.close()`` in the block gives the slot back; leaving the block warns of nothing."""
    caplog.set_level(logging.WARNING, logger="aio_websocket_pool")
    async with make_pool(server) as pool:
        async with pool.get_connection() as conn:
            await conn.close()
        assert pool.total_connections == 0
        assert not [r for r in caplog.records if r.name == "aio_websocket_pool"]
        async with pool.get_connection() as again:
            await round_trip(again, "after")


# -- adversarial review: a lease shared between tasks, a close cut short ---------------------


@contextlib.asynccontextmanager
async def a_send_stuck_at_release(
    proxy: TcpProxy,
) -> AsyncIterator[tuple[WebsocketConnectionPool, asyncio.Task[None]]]:
    """A send stuck on a frozen peer when a second task, handed the lease, gives it back.

    Yields the pool and the sending task, which sends until a send returns
    after the release.
    """
    async with make_pool(proxy.uri) as pool:
        lease = await pool.acquire()
        released = asyncio.Event()

        async def send_until_stuck() -> None:
            while not released.is_set():
                await lease.send(os.urandom(500_000))  # random: compression cannot shrink it

        proxy.freeze()
        sending = asyncio.create_task(send_until_stuck())
        try:
            await wait_until(lambda: lease._sending > 0, "sending", within=0.5)
            await asyncio.sleep(0.1)
            assert not sending.done()  # stuck: the peer reads nothing, every buffer is full
            await asyncio.create_task(pool.release(lease))
            released.set()
            yield pool, sending
        finally:
            sending.cancel()
            await asyncio.wait({sending})
            proxy.thaw()


async def test_a_release_from_another_task_ends_a_send_stuck_on_a_frozen_peer(
    websocket_proxy: TcpProxy,
) -> None:
    async with a_send_stuck_at_release(websocket_proxy) as (pool, sending):
        await asyncio.wait({sending}, timeout=0.5)
        assert sending.done()
        assert pool.total_connections == 0  # closed, never lent on half sent


async def test_a_send_stuck_at_release_raises_instead_of_returning_as_if_sent(
    websocket_proxy: TcpProxy,
) -> None:
    async with a_send_stuck_at_release(websocket_proxy) as (_, sending):
        with pytest.raises((ConnectionBusyError, ConnectionClosedError)):
            async with asyncio.timeout(0.5):
                await sending


async def test_a_close_of_a_lease_cut_short_still_closes_its_socket(
    websocket_proxy: TcpProxy,
) -> None:
    async with make_pool(websocket_proxy.uri) as pool:
        lease = await pool.acquire()
        raw = lease.websocket
        assert raw is not None
        websocket_proxy.freeze()
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(lease.close(), 0.01)
            await wait_until(raw.transport.is_closing, "its socket closed", within=0.5)
        finally:
            websocket_proxy.thaw()
