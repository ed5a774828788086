"""What the server tells the pool, and how much it may send: close codes, 503s, floods, max_size.

Every test talks to the real loopback echo server (``tests/loopback.py``), or
to a tiny ``websockets`` server of its own where the loopback one cannot say
it (a 503 with ``Retry-After``). The signals:

* close code 1001/1012 on one connection: the server is going away as a whole,
  so the pool retires that connection's idle siblings at once;
* close code 1013 and HTTP 503 or 429: the server is overloaded, so every new
  handshake of the pool waits behind one gate (``pool._core.backoff``);
* a flood during a drain or while a connection sits idle, and a message over
  ``max_size``: the connection is discarded, never handed to a borrower.

Timing is checked only from below (a handshake request reached the server no
earlier than the gate opened, on the event loop's clock), which holds however
slow the machine is. Each scenario ends with :func:`shut_down`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections.abc import AsyncIterator
from typing import Any

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
    WebsocketConnectionPool,
)
from aio_websocket_pool._backoff import BASE_DELAY, MAX_DELAY
from aio_websocket_pool._retry import server_says_not_now
from helpers import BOUND, assert_consistent, pool_maker, pooled, round_trip, triggers, wait_until
from loopback import LoopbackServer

# -- helpers -----------------------------------------------------------------------------


#: No pings (a ping is traffic, and would read what the tests leave buffered),
#: a slow sweep unless a test wants one, bounded acquires and closes.
make_pool = pool_maker(
    health_check_interval=None, cleanup_interval=60.0, acquire_timeout=BOUND, close_timeout=0.5
)


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


async def idle_connections(pool: WebsocketConnectionPool, count: int) -> list[WebsocketConnection]:
    """Open ``count`` connections, use each, and give them back in order (the last is newest).

    Returns:
        The pooled connections (the leases have ended), to inspect and to compare.
    """
    leases = [await pool.acquire() for _ in range(count)]
    for n, lease in enumerate(leases):
        await round_trip(lease, f"request {n}")
    for lease in leases:
        await pool.release(lease)
    assert pool.available_connections == count
    return [pooled(lease) for lease in leases]


async def use_once(pool: WebsocketConnectionPool) -> WebsocketConnection:
    """Borrow a connection for one round trip and give it back; the pooled connection.

    Unlike :func:`idle_connections`, it does not require the connection to be kept.
    """
    lease = await pool.acquire()
    await round_trip(lease, "request")
    await pool.release(lease)
    return pooled(lease)


def assert_closed(
    conn: WebsocketConnection, source: State | tuple[State, ...], *reason_parts: str
) -> None:
    """``conn`` was retired from ``source`` (or one of them) with a reason naming every part."""
    assert conn.is_closed
    record = conn.history[-1]
    sources = source if isinstance(source, tuple) else (source,)
    assert (record.trigger, record.dest) == ("close", State.CLOSED)
    assert record.source in sources, record
    assert record.reason is not None
    for part in reason_parts:
        assert part in record.reason, f"{part!r} not in {record.reason!r}"


async def shut_down(pool: WebsocketConnectionPool, server: LoopbackServer | None = None) -> None:
    """close_all(), then nothing is left: no slot, no waiter, no task, no socket."""
    await pool.close_all()
    stats = assert_consistent(pool)
    counters = (stats.connecting, stats.idle, stats.busy, stats.draining, stats.total)
    assert counters == (0, 0, 0, 0, 0), stats
    assert stats.waiting == 0
    assert not pool._tasks.workers
    assert not pool._tasks.closers
    if server is not None:
        await wait_until(lambda: server.open_connections == 0, "the server saw every close")


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


# -- floods ----------------------------------------------------------------------------------


def draining_pool(server: LoopbackServer, **options: Any) -> WebsocketConnectionPool:
    """A pool that drains each released connection until 0.1 s of silence."""
    return make_pool(
        server,
        check_server_data_on_release=True,
        drain_quiet_period=0.1,
        drain_timeout=2.0,
        **options,
    )


async def assert_drain_outcome(
    pool: WebsocketConnectionPool,
    conn: WebsocketConnection,
    *,
    drained: int,
    flood: str | None,
) -> None:
    """Once the drain of ``conn`` ends: it took ``drained`` messages, and settled or flooded."""
    await wait_until(lambda: not conn.is_draining, "the drain ended")
    assert pool.stats().messages_drained == drained
    if flood is None:
        assert conn.state is State.IDLE
        assert triggers(conn) == ["open", "acquire", "drain", "settle"]
        assert conn.history[-1].reason == f"{drained} messages drained"
    else:
        assert_closed(conn, State.DRAINING, flood)
        assert triggers(conn) == ["open", "acquire", "drain", "close"]
    assert_consistent(pool)


async def assert_next_borrower_is_served_cleanly(
    pool: WebsocketConnectionPool, server: LoopbackServer, previous: WebsocketConnection
) -> None:
    """The next acquire gets ``previous`` back if it is still live, else a new one; it works."""
    server.stray_messages = 0
    conn = await pool.acquire()
    assert (pooled(conn) is previous) is (not previous.is_closed)
    await round_trip(conn, "next request")
    await pool.release(conn)


@pytest.mark.parametrize(
    ("strays", "drained", "flood"),
    [
        (5, 5, None),  # at the cap: drained, and kept
        (6, 5, "flooded: 6 messages, 42 bytes"),
        (50, 5, "flooded: 6 messages, 42 bytes"),
    ],
    ids=["at-cap", "one-over", "flood"],
)
async def test_drain_discards_a_connection_sent_more_than_drain_max_messages(
    server: LoopbackServer, strays: int, drained: int, flood: str | None
) -> None:
    """Taking stops at the message past the cap, however many more the server sends."""
    server.stray_messages = strays  # "stray 0", "stray 1", ...: 7 characters each
    async with draining_pool(server, drain_max_messages=5) as pool:
        conn = await use_once(pool)
        await assert_drain_outcome(pool, conn, drained=drained, flood=flood)
        await assert_next_borrower_is_served_cleanly(pool, server, conn)
        await shut_down(pool, server)


@pytest.mark.parametrize("payload", ["x" * 500, b"x" * 500], ids=["text", "binary"])
@pytest.mark.parametrize(
    ("replies", "flood"),
    [(3, None), (4, "flooded: 4 messages, 2000 bytes")],
    ids=["at-cap", "over"],
)
async def test_drain_discards_a_connection_sent_more_than_drain_max_bytes(
    server: LoopbackServer, payload: str | bytes, replies: int, flood: str | None
) -> None:
    """A few big messages flood as surely as many small ones: the bytes on the wire count."""
    async with draining_pool(server, drain_max_bytes=1500) as pool:
        lease = await pool.acquire()
        for _ in range(replies):  # a borrower that never reads its replies: the drain does
            await lease.send(payload)
        await pool.release(lease)

        conn = pooled(lease)
        drained = replies if flood is None else replies - 1  # the one past the cap is not
        await assert_drain_outcome(pool, conn, drained=drained, flood=flood)
        await assert_next_borrower_is_served_cleanly(pool, server, conn)
        await shut_down(pool, server)


async def test_messages_that_arrive_while_idle_never_reach_the_next_borrower(
    server: LoopbackServer,
) -> None:
    """Without draining, strays that came while idle go to on_unsolicited, not to recv().

    As they arrive, while the connection sits idle: no acquire is needed for it.
    """
    seen: list[str | bytes] = []
    states: list[State] = []

    async def on_unsolicited(conn: WebsocketConnection, message: str | bytes) -> None:
        states.append(conn.state)
        seen.append(message)

    server.stray_messages = 3
    async with make_pool(server, on_unsolicited=on_unsolicited) as pool:
        [conn] = await idle_connections(pool, 1)
        await wait_until(lambda: len(seen) == 3, "the strays went to on_unsolicited while idle")
        assert states == [State.IDLE] * 3  # given at once, not at the next hand-out
        assert pool.stats().unsolicited_messages == 3
        assert conn._buffered_frames() == 0

        again = await pool.acquire()

        assert pooled(again) is conn
        assert seen == ["stray 0", "stray 1", "stray 2"]
        await round_trip(again, "second request")  # its own echo, not "stray 0"
        stats = assert_consistent(pool)
        assert (stats.unsolicited_messages, stats.messages_drained, stats.reused) == (3, 0, 1)
        await pool.release(again)
        await shut_down(pool, server)


@pytest.mark.parametrize(("strays", "kept"), [(5, True), (6, False), (12, False)])
async def test_a_flood_while_idle_beyond_drain_max_messages_discards_the_connection(
    server: LoopbackServer, strays: int, kept: bool
) -> None:
    """The pool takes at most drain_max_messages strays, then gives up on the connection.

    At once, as the one past the cap arrives: no acquire is needed to notice the flood.
    """
    server.stray_messages = strays
    async with make_pool(server, drain_max_messages=5) as pool:
        conn = await use_once(pool)
        if kept:
            await wait_until(lambda: pool.stats().unsolicited_messages == 5, "the strays came")
        else:
            await wait_until(lambda: conn.is_closed, "the flood closed it with no acquire")
            # The strays may have come before the release (left unread) or after.
            assert_closed(conn, (State.BUSY, State.IDLE), "flooded: 6 messages")
        server.stray_messages = 0

        again = await pool.acquire()

        assert (pooled(again) is conn) is kept
        await round_trip(again, "second request")
        stats = assert_consistent(pool)
        assert stats.unsolicited_messages == 5  # never the one past the cap
        if not kept:
            assert (stats.closed, stats.opened, stats.connections_lost) == (1, 2, 0)
        await pool.release(again)
        await shut_down(pool, server)


@pytest.mark.parametrize(("cap", "kept"), [(21, True), (20, False), (7, False)])
async def test_a_flood_while_idle_beyond_drain_max_bytes_discards_the_connection(
    server: LoopbackServer, cap: int, kept: bool
) -> None:
    """What arrived while idle counts against drain_max_bytes, the message that crosses it too."""
    server.stray_messages = 3  # "stray 0", "stray 1", "stray 2": 21 bytes
    async with make_pool(server, drain_max_bytes=cap) as pool:
        conn = await use_once(pool)
        if kept:
            await wait_until(lambda: pool.stats().unsolicited_messages == 3, "the strays came")
        else:
            await wait_until(lambda: conn.is_closed, "the flood closed it with no acquire")
            crossing = cap // 7 + 1  # the message that crosses the cap
            assert_closed(conn, (State.BUSY, State.IDLE), f"flooded: {crossing} messages")
            assert pool.stats().unsolicited_messages == crossing - 1
        server.stray_messages = 0

        again = await pool.acquire()

        assert (pooled(again) is conn) is kept
        await round_trip(again, "second request")
        assert_consistent(pool)
        await pool.release(again)
        await shut_down(pool, server)


@pytest.mark.parametrize("where", ["drain", "idle"])
async def test_a_flooded_connection_frees_its_slot_at_once(
    server: LoopbackServer, where: str
) -> None:
    """A hostile server cannot pin a slot by flooding: the flooded socket is dropped, not closed."""
    server.stray_messages = 50  # more than websockets buffers before it stops reading
    async with make_pool(
        server,
        max_connections=1,
        acquire_timeout=0.5,
        close_timeout=1.0,  # what the slot is held for with the bug (keeps the test short)
        drain_max_messages=5,
        check_server_data_on_release=where == "drain",
        drain_quiet_period=0.1,
        drain_timeout=2.0,
    ) as pool:
        conn = await use_once(pool)
        # Drained or idle, the flood is noticed as it arrives: no acquire is needed.
        await wait_until(lambda: conn.is_closed, "the pool gave up on the connection")
        server.stray_messages = 0

        fresh = await pool.acquire()  # the only slot: free at once if the socket was dropped

        assert pooled(fresh) is not conn
        if where == "drain":
            assert_closed(conn, State.DRAINING, "flooded: 6 messages")
        else:
            # The flood may have begun before the release (left unread) or after.
            assert_closed(conn, (State.BUSY, State.IDLE), "flooded: 6 messages")
        await round_trip(fresh, "next request")
        await pool.release(fresh)
        await shut_down(pool, server)


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
