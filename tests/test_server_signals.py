"""What the server tells the pool: close codes, 503s and 429s, and messages over max_size.

Every test talks to the real loopback echo server (``tests/loopback.py``), or
to a tiny ``websockets`` server of its own where the loopback one cannot say
it (a 503 with ``Retry-After``). The signals:

* close code 1001/1012 on one connection: the server is going away as a whole,
  so the pool retires that connection's idle siblings at once;
* close code 1013 and HTTP 503 or 429: the server is overloaded, so every new
  handshake of the pool waits behind one gate (``pool._core.backoff``);
* a message over ``max_size``: the connection is discarded, never handed to a
  borrower. (Floods, during a drain or while idle, are ``tests/test_cleaning.py``'s.)

Timing is checked only from below (a handshake request reached the server no
earlier than the gate opened, on the event loop's clock), which holds however
slow the machine is. Each scenario ends with :func:`shut_down`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request, Response

from aio_websocket_pool import (
    ConnectionClosedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    HandshakeRejectedError,
    State,
    WebsocketConnection,
)
from aio_websocket_pool._backoff import BASE_DELAY, MAX_DELAY
from aio_websocket_pool._retry import server_says_not_now
from helpers import (
    BOUND,
    assert_closed,
    assert_consistent,
    idle_connections,
    pooled,
    round_trip,
    shut_down,
    triggers,
    wait_until,
)
from helpers import (
    quiet_pool as make_pool,
)
from loopback import LoopbackServer

# -- helpers -----------------------------------------------------------------------------


class ArrivalTimes(list[Headers]):
    """The server's ``request_headers`` list, also noting when each handshake request arrived.

    Installed in place of ``LoopbackServer.request_headers`` (which the server
    appends to as each request comes in), it gives the event loop time at which
    every handshake request reached the server: the instant the pool's gate let
    it through, or later.
    """

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, headers: Headers) -> None:
        self.times.append(asyncio.get_running_loop().time())
        super().append(headers)


def clock_handshakes(server: LoopbackServer) -> ArrivalTimes:
    """Start noting when handshake requests reach ``server`` (call before the first one)."""
    assert not server.request_headers
    server.request_headers = arrivals = ArrivalTimes()
    return arrivals


async def close_from_server(server: LoopbackServer, conn: WebsocketConnection, code: int) -> None:
    """Close the server's end of ``conn``, and of no other connection, with ``code``."""
    assert conn.websocket is not None
    local = conn.websocket.local_address
    [peer] = [peer for peer in server.connections if peer.remote_address == local]
    await peer.close(code)
    await wait_until(lambda: not conn.is_connected, "the client saw the close")


@contextlib.asynccontextmanager
async def refusing_server(retry_after: str | None, status: int = 503) -> AsyncIterator[str]:
    """A server that answers every handshake with ``status`` (and ``Retry-After``); its URI.

    The loopback server's refusals carry no headers, hence this one.
    """

    def refuse(conn: ServerConnection, request: Request) -> Response:
        del request
        response = conn.respond(http.HTTPStatus(status), "not now\n")
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        return response

    async def never_called(conn: ServerConnection) -> None:
        raise AssertionError("no handshake is accepted")

    async with serve(never_called, "127.0.0.1", 0, process_request=refuse) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


# -- 1001 and 1012: the server is going away --------------------------------------------


@pytest.mark.parametrize("code", [1001, 1012])
async def test_going_away_on_one_connection_retires_its_idle_siblings_at_hand_out(
    server: LoopbackServer, code: int
) -> None:
    """The acquire that finds the closed one retires the others too, and opens a new one."""
    async with make_pool(server) as pool:
        first, second, newest = await idle_connections(pool, 3)
        await close_from_server(server, newest, code)

        conn = await pool.acquire()  # finds the newest first (LIFO): it is closed

        assert pooled(conn) not in (first, second, newest)
        await round_trip(conn, "after the restart")
        assert_closed(newest, State.IDLE, f"closed by peer: close code {code}")
        for sibling in (first, second):
            assert_closed(sibling, State.IDLE, "sibling", f"code {code}", "going away")
            assert triggers(sibling) == ["open", "acquire", "release", "close"]
        stats = assert_consistent(pool)
        assert (stats.connections_lost, stats.closed, stats.total, stats.busy) == (1, 3, 1, 1)
        assert server.handshakes == 4
        await wait_until(lambda: server.open_connections == 1, "the siblings' sockets closed")
        await pool.release(conn)
        await shut_down(pool, server)


@pytest.mark.parametrize("code", [1000, 1011, 1013])
async def test_other_close_codes_on_one_connection_leave_its_siblings_alone(
    server: LoopbackServer, code: int
) -> None:
    """Normal closure, an internal error or "try again later" concern that connection only."""
    async with make_pool(server) as pool:
        first, second, newest = await idle_connections(pool, 3)
        await close_from_server(server, newest, code)

        conn = await pool.acquire()

        assert pooled(conn) is second  # the newest live idle one, reused: no handshake
        await round_trip(conn, "reused")
        assert_closed(newest, State.IDLE, f"close code {code}")
        assert first.state is State.IDLE
        assert first.is_connected
        stats = assert_consistent(pool)
        assert (stats.connections_lost, stats.closed, stats.idle, stats.busy) == (1, 1, 1, 1)
        assert server.handshakes == 3
        await pool.release(conn)
        await shut_down(pool, server)


@pytest.mark.parametrize(
    "closed",
    [0, 2],
    ids=["newest", "oldest"],
)
async def test_sweep_retires_the_idle_siblings_of_a_connection_closed_with_1012(
    server: LoopbackServer, closed: int
) -> None:
    """The sweep notices a going-away close without any acquire, wherever it sits in line."""
    async with make_pool(server, cleanup_interval=0.02) as pool:
        conns = await idle_connections(pool, 3)  # oldest first: the sweep's order
        lost = conns[-1 - closed]
        await close_from_server(server, lost, 1012)

        await wait_until(lambda: pool.total_connections == 0, "the sweep retired all three")

        assert_closed(lost, State.IDLE, "closed by peer: close code 1012")
        for sibling in conns:
            if sibling is not lost:
                assert_closed(sibling, State.IDLE, "sibling", "code 1012")
        stats = assert_consistent(pool)
        assert (stats.connections_lost, stats.closed) == (1, 3)
        await wait_until(lambda: server.open_connections == 0, "every socket closed")
        conn = await pool.acquire()
        await round_trip(conn, "after the sweep")
        await pool.release(conn)
        await shut_down(pool, server)


# -- 1013 and 503: the server is overloaded ----------------------------------------------


async def test_close_code_1013_shuts_the_gate_for_new_handshakes(server: LoopbackServer) -> None:
    """After a 1013, no handshake reaches the server before the gate opens; success resets it."""
    arrivals = clock_handshakes(server)
    loop = asyncio.get_running_loop()
    async with make_pool(server) as pool:
        [conn] = await idle_connections(pool, 1)
        await close_from_server(server, conn, 1013)
        assert (pool._core.backoff._signals, pool._core.backoff.remaining) == (0, 0.0)

        before = loop.time()
        acquiring = asyncio.create_task(pool.acquire())  # finds it closed: trips the gate
        await wait_until(lambda: pool._core.backoff._signals == 1, "the 1013 tripped the gate")

        open_at = pool._core.backoff._open_at
        assert pool._core.backoff.remaining > 0
        assert before + BASE_DELAY / 2 <= open_at <= loop.time() + BASE_DELAY
        assert len(arrivals) == 1  # the replacement's handshake waits at the gate
        fresh = await acquiring
        assert arrivals.times[1] >= open_at
        assert loop.time() >= open_at
        assert pool._core.backoff._signals == 0  # the handshake succeeded
        assert pooled(fresh) is not conn
        await round_trip(fresh, "after the backoff")
        assert_closed(conn, State.IDLE, "close code 1013")
        stats = assert_consistent(pool)
        assert (stats.connections_lost, stats.opened, stats.failed_connects) == (1, 2, 0)
        assert server.handshakes == 2
        await pool.release(fresh)
        await shut_down(pool, server)


async def test_a_503_makes_every_acquirer_of_the_pool_wait_at_the_gate(
    server: LoopbackServer,
) -> None:
    """20 acquirers after one refusal: each makes one attempt, none before the gate opens."""
    arrivals = clock_handshakes(server)
    server.refuse(1, 503)
    async with make_pool(server, max_connections=20, max_retries=3) as pool:
        refused = asyncio.create_task(pool.acquire())
        await wait_until(lambda: pool._core.backoff._signals == 1, "the 503 tripped the gate")
        open_at = pool._core.backoff._open_at
        assert len(arrivals) == 1

        others = [asyncio.create_task(pool.acquire()) for _ in range(19)]
        async with asyncio.timeout(BOUND):
            conns = await asyncio.gather(refused, *others)

        # One refusal, its one retry, 19 first attempts: no storm, and none early.
        assert len(arrivals) == 21
        assert all(arrived >= open_at for arrived in arrivals.times[1:])
        assert server.handshakes == 20
        assert pool._core.backoff._signals == 0
        assert len({pooled(conn) for conn in conns}) == 20
        assert triggers(conns[0]) == ["open", "acquire"]  # retried inside one connection
        for n, conn in enumerate(conns):
            await round_trip(conn, f"request {n}")
        stats = assert_consistent(pool)
        assert (stats.opened, stats.failed_connects, stats.busy) == (20, 0, 20)
        for conn in conns:
            await pool.release(conn)
        await shut_down(pool, server)


@pytest.mark.parametrize(("status", "trips"), [(503, True), (429, True), (500, False)])
async def test_refusals_until_retries_run_out_raise_unavailable_then_the_pool_recovers(
    server: LoopbackServer, status: int, trips: bool
) -> None:
    """A typed error after max_retries; only a 503 or 429 shuts the gate; the next acquire works."""
    arrivals = clock_handshakes(server)
    server.refuse(3, status)
    async with make_pool(server, max_connections=1, max_retries=3) as pool:
        with pytest.raises(ConnectionUnavailableError) as excinfo:
            await pool.acquire()

        error = excinfo.value
        assert not isinstance(error, HandshakeRejectedError)
        assert "3 attempts" in str(error)
        assert isinstance(error.__cause__, InvalidStatus)
        assert error.__cause__.response.status_code == status
        assert pool._core.backoff._signals == (3 if trips else 0)
        open_at = pool._core.backoff._open_at
        assert (open_at > 0) is trips
        stats = assert_consistent(pool)
        assert (stats.failed_connects, stats.opened, stats.total) == (1, 0, 0)

        conn = await pool.acquire()  # the server accepts again

        await round_trip(conn, "recovered")
        assert len(arrivals) == 4
        assert arrivals.times[3] >= open_at
        assert pool._core.backoff._signals == 0
        await pool.release(conn)
        await shut_down(pool, server)


async def test_one_wave_of_refusals_backs_off_like_one_signal(server: LoopbackServer) -> None:
    """Refusals of handshakes that all began before the first one came back are one signal."""
    server.refuse(20, 503)
    server.hold_handshakes()
    async with make_pool(server, max_connections=20, max_retries=1) as pool:
        acquiring = [asyncio.create_task(pool.acquire()) for _ in range(20)]
        await wait_until(lambda: server.handshakes_in_flight == 20, "the wave is in flight")
        server.release_handshakes()

        async with asyncio.timeout(BOUND):
            results = await asyncio.gather(*acquiring, return_exceptions=True)

        assert all(isinstance(result, ConnectionUnavailableError) for result in results)
        assert pool._core.backoff.remaining <= BASE_DELAY
        await shut_down(pool, server)


@pytest.mark.parametrize("status", [503, 429])
@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [("1", 1.0), ("0", 0.0), (None, 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("-1", 0.0)],
    ids=["1s", "0s", "absent", "http-date", "negative"],
)
async def test_server_says_not_now_reads_retry_after_of_a_real_503_or_429(
    retry_after: str | None, seconds: float, status: int
) -> None:
    """Only the delay-seconds form counts; anything else is a refusal without a wish."""
    async with refusing_server(retry_after, status) as uri:
        with pytest.raises(InvalidStatus) as excinfo:
            async with connect(uri, open_timeout=BOUND):
                pass

    assert excinfo.value.response.status_code == status
    assert server_says_not_now(excinfo.value) == seconds


async def test_server_says_not_now_ignores_other_refusals(server: LoopbackServer) -> None:
    """A 502 or 403 is not the overload signal the gate heeds (and neither is an OSError)."""
    server.refuse(1, 502)
    server.refuse(1, 403)
    for status in (502, 403):
        with pytest.raises(InvalidStatus) as excinfo:
            async with connect(server.uri, open_timeout=BOUND):
                pass
        assert excinfo.value.response.status_code == status
        assert server_says_not_now(excinfo.value) is None
    assert server_says_not_now(ConnectionRefusedError()) is None


@pytest.mark.parametrize(
    ("retry_after", "seconds", "status"),
    [("1", 1.0, 503), ("3600", MAX_DELAY, 503), ("1", 1.0, 429)],
)
async def test_gate_honours_retry_after_up_to_max_delay_and_close_all_does_not_wait(
    retry_after: str, seconds: float, status: int
) -> None:
    """A 503's or 429's Retry-After sets the gate (capped); close_all() cancels a wait there."""
    loop = asyncio.get_running_loop()
    async with (
        refusing_server(retry_after, status) as uri,
        make_pool(uri, max_retries=1) as pool,
    ):
        before = loop.time()
        with pytest.raises(ConnectionUnavailableError) as excinfo:
            await pool.acquire()
        after = loop.time()

        assert isinstance(excinfo.value.__cause__, InvalidStatus)
        assert before + seconds <= pool._core.backoff._open_at <= after + seconds
        assert pool._core.backoff.remaining > seconds - (loop.time() - before)
        waiting = asyncio.create_task(pool.acquire())
        await wait_until(lambda: pool.stats().connecting == 1, "a handshake waits at the gate")

        closed_at = loop.time()
        await shut_down(pool)

        assert loop.time() < pool._core.backoff._open_at  # it did not wait for the gate
        assert loop.time() - closed_at < seconds
        with pytest.raises(ConnectionPoolUnavailableError):
            await waiting
        assert pool.stats().failed_connects == 2


# -- max_size --------------------------------------------------------------------------------


async def test_a_message_over_max_size_closes_the_connection_and_frees_its_slot(
    server: LoopbackServer,
) -> None:
    """The borrower gets a typed ConnectionClosedError; the slot is free; the pool works on."""
    async with make_pool(server, max_size=1024, max_connections=1) as pool:
        async with pool.get_connection() as conn:
            await conn.send("x" * 2048)  # the server echoes 2 KiB back
            with pytest.raises(ConnectionClosedError) as excinfo:
                await conn.recv()

        assert "1009" in str(excinfo.value)  # message too big
        assert_closed(pooled(conn), State.BUSY)
        assert triggers(pooled(conn)) == ["open", "acquire", "close"]
        stats = assert_consistent(pool)
        assert (stats.total, stats.closed, stats.connections_lost) == (0, 1, 1)

        async with pool.get_connection() as fresh:  # the only slot is free again
            await round_trip(fresh, "x" * 1024)  # at the limit: fine
        assert pooled(fresh) is not pooled(conn)
        assert server.handshakes == 2
        await shut_down(pool, server)
