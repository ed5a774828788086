"""``async for message in lease:``, as on a websockets connection.

The loop yields each message as it comes and ends when the peer closes
normally (1000, or 1001 going away); any other close is an error the
borrower sees. Against the real loopback echo server, which closes a
connection on cue instead of answering a request.
"""

from __future__ import annotations

import asyncio

import pytest

from aio_websocket_pool import ConnectionClosedError, ConnectionLease, LeaseEndedError
from helpers import pool_maker, pooled, wait_until
from loopback import LoopbackServer

make_pool = pool_maker(health_check_interval=None, acquire_timeout=1.0, close_timeout=0.1)

REQUESTS = ["first", "second", "third"]


async def iterate_until_closed(
    server: LoopbackServer, lease: ConnectionLease, code: int
) -> list[str | bytes]:
    """Send :data:`REQUESTS`, iterate over the replies, and have the server close with ``code``.

    The close is asked for only once every reply was received, so none is lost
    to it: the loop must then end (or raise) by itself.
    """
    for request in REQUESTS:
        await lease.send(request)
    received: list[str | bytes] = []
    async with asyncio.timeout(1):  # a loop that never ends fails here
        async for message in lease:
            received.append(message)
            if len(received) == len(REQUESTS):
                server.close_instead_of_replying(1, code=code)
                await lease.send("close now")
    return received


@pytest.mark.parametrize("code", [1000, 1001])
async def test_iteration_ends_when_the_peer_closes_normally(
    server: LoopbackServer, code: int
) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        assert await iterate_until_closed(server, lease, code) == REQUESTS
        await pool.release(lease)
        await wait_until(lambda: pool.total_connections == 0, "the closed connection is retired")


async def test_iteration_raises_when_the_peer_closes_abnormally(server: LoopbackServer) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        with pytest.raises(ConnectionClosedError, match="1011"):
            await iterate_until_closed(server, lease, 1011)
        await pool.release(lease)
        await wait_until(lambda: pooled(lease).is_closed, "the connection is closed")


async def test_iteration_yields_text_and_bytes_as_sent(server: LoopbackServer) -> None:
    async with make_pool(server) as pool, pool.get_connection() as lease:
        await lease.send("text")
        await lease.send(b"\x00bytes")
        received: list[str | bytes] = []
        async with asyncio.timeout(1):
            async for message in lease:
                received.append(message)
                if len(received) == 2:
                    break
        assert received == ["text", b"\x00bytes"]


async def test_an_ended_lease_refuses_iteration(server: LoopbackServer) -> None:
    async with make_pool(server) as pool:
        lease = await pool.acquire()
        await pool.release(lease)
        with pytest.raises(LeaseEndedError):
            aiter(lease)  # what "async for" calls first
