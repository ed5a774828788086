"""The cleaning after a release, and the messages nobody asked for (``_cleaning``): real servers.

While nobody holds a connection its messages are the pool's: a drain after a
release takes strays until the server is quiet, and an idle connection's
inbox takes them as they come. Either way ``drain_max_messages`` and
``drain_max_bytes`` bound what a server may send before the connection is
discarded, and nothing of it reaches the next borrower.
"""

from __future__ import annotations

from typing import Any

import pytest

from aio_websocket_pool import State, WebsocketConnection, WebsocketConnectionPool
from helpers import (
    assert_closed,
    assert_consistent,
    idle_connections,
    pooled,
    round_trip,
    shut_down,
    triggers,
    use_once,
    wait_until,
)
from helpers import (
    quiet_pool as make_pool,
)
from loopback import LoopbackServer

# -- floods, during a drain and while idle -------------------------------------------------


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
