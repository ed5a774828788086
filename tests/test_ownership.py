"""A borrower only ever sees its own messages, whatever it or the server did (issue 10).

The five ways a borrower was handed another's message, each against a real
server: a burst the server pushed while the connection sat idle (against
websockets and aiohttp alike: websockets stops reading at ``max_queue``
frames, so what is left in the socket must be taken too), a receive that
timed out inside the block, a receive still pending at release, a handle
used after its lease ended, and one ``get_connection()`` object entered by
two tasks at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from aio_websocket_pool import (
    ConnectionBusyError,
    ConnectionClosedError,
    ConnectionHookError,
    ConnectionLease,
    ConnectionPoolExhaustedError,
    LeaseEndedError,
    State,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from helpers import (
    BOUND,
    Unsolicited,
    assert_consistent,
    partial_in_inbox,
    pool_maker,
    pooled,
    round_trip,
    send_in_two_fragments,
    settle,
    spawn,
    wait_until,
)
from loopback import LoopbackServer
from servers import PushingServer

pytestmark = pytest.mark.usefixtures("quiet_logs")

#: Short bounds, so that a test that fails (as these do before the fix) fails in a second.
make_pool = pool_maker(
    health_check_interval=None, acquire_timeout=1.0, max_connections=2, close_timeout=0.1
)

#: What the servers push while the connection is idle (the loopback server's stray prefix).
PUSH = "stray push"
#: A burst well beyond websockets' ``max_queue`` (16 frames by default).
BURST = 100


async def use_once(pool: WebsocketConnectionPool) -> str:
    """Borrow a connection for one round trip and give it back; return its id."""
    async with pool.get_connection() as conn:
        await round_trip(conn, "first")
        return conn.id


async def push_burst(server: PushingServer, count: int) -> None:
    """Push ``count`` messages in two halves, a moment apart: more than one read of the socket.

    A burst that the client reads in one go lands in websockets' queue whole;
    one that spans reads (as any real burst may) is partly left in the socket
    once websockets pauses reading at ``max_queue``: the case that matters.
    """
    await server.push(PUSH, count // 2)
    await asyncio.sleep(0.05)
    await server.push(PUSH, count - count // 2)


def is_live(pool: WebsocketConnectionPool, connection_id: str) -> bool:
    """Whether the pool still holds that connection, open (read from the pool, not a handle)."""
    return any(c.id == connection_id and c.state is not State.CLOSED for c in pool.connections)


# -- 1. a burst while idle -------------------------------------------------------------------


@pytest.mark.parametrize("burst", [BURST, 3000])
async def test_a_burst_pushed_while_idle_never_reaches_the_next_borrower(
    any_server: PushingServer, burst: int
) -> None:
    pool = make_pool(any_server.uri, max_connections=1, drain_max_messages=10_000)
    async with pool:
        await use_once(pool)
        await push_burst(any_server, burst)
        await asyncio.sleep(0.2)
        async with asyncio.timeout(1), pool.get_connection() as conn:
            await conn.send("tag")
            assert await conn.recv() == "tag"


async def test_on_unsolicited_gets_every_idle_message_as_it_arrives(
    any_server: PushingServer,
) -> None:
    """Within moments of arrival, with no acquire to trigger it."""
    on_unsolicited = Unsolicited()
    received = on_unsolicited.messages

    async with make_pool(any_server.uri, on_unsolicited=on_unsolicited) as pool:
        await use_once(pool)
        await push_burst(any_server, BURST)
        await wait_until(lambda: len(received) >= BURST, "the hook got the burst", within=0.5)
        assert received == [PUSH] * BURST
        assert pool.stats().unsolicited_messages == BURST


async def test_idle_messages_without_a_hook_are_dropped_and_counted_as_they_arrive(
    any_server: PushingServer,
) -> None:
    async with make_pool(any_server.uri) as pool:
        await use_once(pool)
        await push_burst(any_server, BURST)
        await wait_until(
            lambda: pool.stats().unsolicited_messages >= BURST, "all counted", within=0.5
        )
        await settle()
        assert pool.stats().unsolicited_messages == BURST


async def test_a_flood_while_idle_is_counted_in_full_and_discards_the_connection(
    any_server: PushingServer,
) -> None:
    """Every message counts towards ``drain_max_messages``, not only those websockets buffered."""
    async with make_pool(any_server.uri, drain_max_messages=100) as pool:
        flooded = await use_once(pool)
        await push_burst(any_server, 3000)
        await wait_until(lambda: not is_live(pool, flooded), "the flooded one discarded", within=1)
        assert pool.total_connections == 0
        assert_consistent(pool)


async def test_a_health_check_after_a_burst_keeps_the_healthy_connection(
    any_server: PushingServer,
) -> None:
    """The pong must not wait behind unread data for the whole ``health_check_timeout``."""
    pool = make_pool(any_server.uri, health_check_interval=0, health_check_timeout=0.3)
    async with pool:
        checked = await use_once(pool)
        await push_burst(any_server, BURST)
        await asyncio.sleep(0.2)
        async with asyncio.timeout(1), pool.get_connection() as conn:
            assert conn.id == checked
            await round_trip(conn, "tag")
        assert pool.stats().health_checks_failed == 0


# -- 2. a receive that timed out inside the block ----------------------------------------------


async def test_a_receive_timed_out_inside_the_block_ends_that_connections_reuse(
    server: LoopbackServer,
) -> None:
    """The borrower caught the timeout and left normally: the late reply must go nowhere."""
    server.reply_delay = 0.1
    async with make_pool(server) as pool:
        async with pool.get_connection() as conn:
            late = conn.id
            await conn.send("late")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.recv(), 0.05)
        server.reply_delay = 0
        await asyncio.sleep(0.1)  # the late reply has arrived by now
        async with asyncio.timeout(1), pool.get_connection() as conn:
            assert conn.id != late
            await round_trip(conn, "mine")


@pytest.mark.regression
async def test_a_reply_owed_to_a_cancelled_borrower_never_reaches_the_next_one(
    server: LoopbackServer,
) -> None:
    pool = make_pool(
        server, max_connections=1, check_server_data_on_release=True,
        drain_quiet_period=0.1, drain_timeout=1.0,
    )  # fmt: skip
    try:
        conn = await pool.acquire()
        await pool.release(conn)
        await wait_until(lambda: pool.available_connections == 1, "the first drain settled")
        server.freeze()  # a slow server: the reply comes after drain_quiet_period
        with pytest.raises(TimeoutError):  # noqa: PT012  (the borrower's whole block times out)
            async with asyncio.timeout(0.05), pool.get_connection() as conn:
                await conn.send("old request")
                await conn.recv()  # the borrower gives up waiting for its reply
        # Closed rather than drained: a drain cannot tell a late reply from silence.
        assert pooled(conn).is_closed
        server.thaw()  # the reply owed to the first borrower is on its way
        async with pool.get_connection() as conn:
            await conn.send("new request")
            reply = await asyncio.wait_for(conn.recv(), BOUND)
    finally:
        await pool.close_all()
    # README: the pool "never hands a borrower another borrower's reply".
    assert reply == "new request"


# -- 3. a receive still pending at release --------------------------------------------------------


async def test_a_receive_pending_at_release_ends_with_a_typed_error_and_reads_nothing_more(
    server: LoopbackServer,
) -> None:
    async with make_pool(server) as pool:
        async with pool.get_connection() as conn:
            pending = asyncio.create_task(conn.recv())
            await settle()
        try:
            async with asyncio.timeout(1):
                async with pool.get_connection() as next_one:
                    await round_trip(next_one, "mine")  # not websockets' ConcurrencyError
                with pytest.raises((ConnectionBusyError, ConnectionClosedError)):
                    await pending
        finally:
            pending.cancel()
            await asyncio.wait({pending})


# -- 4. a handle used after its lease ----------------------------------------------------------


async def stale_and_current(
    pool: WebsocketConnectionPool,
) -> tuple[WebsocketConnection, WebsocketConnection]:
    """A's handle, released, and B's lease of the same connection, lent again to B."""
    old = await pool.acquire()
    await round_trip(old, "A")
    await pool.release(old)
    current = await pool.acquire()
    assert current.id == old.id  # the very same socket: max_connections=1
    return old, current


#: Every method of a 0.1.0 connection, called as a former borrower might.
METHODS: dict[str, Callable[[WebsocketConnection], Awaitable[object]]] = {
    "send": lambda conn: conn.send("from A"),
    "recv": lambda conn: conn.recv(),
    "ping": lambda conn: conn.ping(),
    "close": lambda conn: conn.close(),
    "release": lambda conn: conn.release(),
    "connect": lambda conn: conn.connect(),
}
#: Every property and attribute of a 0.1.0 connection but ``id``.
PROPERTIES = (
    "uri",
    "headers",
    "state",
    "history",
    "is_busy",
    "is_draining",
    "is_closed",
    "is_connected",
    "last_activity",
    "websocket",
)


@pytest.mark.parametrize("method", sorted(METHODS))
async def test_every_method_of_a_stale_handle_raises_lease_ended(
    server: LoopbackServer, method: str
) -> None:
    async with make_pool(server, max_connections=1) as pool:
        old, current = await stale_and_current(pool)
        with pytest.raises(LeaseEndedError, match=old.id):
            async with asyncio.timeout(0.5):  # today, recv() on it waits for B's reply
                await METHODS[method](old)
        await round_trip(current, "B")  # B's lease is untouched
        assert current.state is State.BUSY


@pytest.mark.parametrize("name", PROPERTIES)
async def test_every_property_of_a_stale_handle_raises_lease_ended(
    server: LoopbackServer, name: str
) -> None:
    async with make_pool(server, max_connections=1) as pool:
        old, current = await stale_and_current(pool)
        with pytest.raises(LeaseEndedError, match=old.id):
            getattr(old, name)
        assert old.id == current.id
        assert old.id in repr(old)


async def test_a_second_release_of_a_stale_handle_changes_nothing_and_warns(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_pool(server, max_connections=1, acquire_timeout=0.1) as pool:
        old, current = await stale_and_current(pool)
        caplog.clear()
        await pool.release(old)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any(old.id in r.getMessage() for r in warnings), caplog.text
        assert pool.busy_connections == 1
        await round_trip(current, "B still holds it")
        with pytest.raises(ConnectionPoolExhaustedError):  # no third borrower gets the socket
            await pool.acquire()
        await pool.release(current)


# -- 5. one get_connection() object entered by two tasks ------------------------------------------


@pytest.mark.parametrize(
    "borrowing",
    [
        pytest.param(WebsocketConnectionPool.get_connection, id="get_connection"),
        pytest.param(WebsocketConnectionPool.acquire, id="acquire"),
    ],
)
async def test_a_second_concurrent_entry_of_one_borrowing_object_raises_at_once(
    server: LoopbackServer,
    borrowing: Callable[[WebsocketConnectionPool], AbstractAsyncContextManager[ConnectionLease]],
) -> None:
    """One ``get_connection()`` or ``acquire()`` entered by two tasks: the second fails."""
    async with make_pool(server) as pool:
        borrowed = borrowing(pool)
        leave = asyncio.Event()

        async def borrow(tag: str) -> None:
            async with borrowed as conn:
                await round_trip(conn, tag)
                await leave.wait()

        first = asyncio.create_task(borrow("first"))
        await asyncio.sleep(0)  # the first entry is under way: awaiting its handshake
        second = asyncio.create_task(borrow("second"))
        try:
            async with asyncio.timeout(0.5):
                with pytest.raises(ConnectionBusyError):
                    await second
            await wait_until(lambda: pool.busy_connections == 1, "the first one borrowed", within=1)
            leave.set()
            async with asyncio.timeout(1):
                await first
            assert pool.busy_connections == 0
            assert pool.total_connections == 1
            assert_consistent(pool)
        finally:
            leave.set()
            for task in (first, second):
                task.cancel()
            await asyncio.gather(first, second, return_exceptions=True)


@pytest.mark.regression
async def test_one_get_connection_object_entered_by_two_tasks_keeps_their_connections_apart(
    server: LoopbackServer,
) -> None:
    """Each exit gives back its own connection (or the second entry is refused)."""
    async with make_pool(server) as pool:
        borrow = pool.get_connection()
        entered: list[WebsocketConnection] = []
        second_may_leave = asyncio.Event()

        async def first() -> None:
            async with borrow as conn:
                entered.append(conn)
                await wait_until(lambda: len(entered) == 2, "both entered")

        async def second() -> None:
            await wait_until(lambda: len(entered) == 1, "the first entered")
            try:
                async with borrow as conn:
                    entered.append(conn)
                    await second_may_leave.wait()
                    assert conn.is_busy, "released under its borrower by the other exit"
            except ConnectionBusyError:  # a refused second entry is correct as well
                entered.append(entered[0])

        tasks = [spawn(first()), spawn(second())]
        await wait_until(tasks[0].done, "the first left its block")
        second_may_leave.set()
        async with asyncio.timeout(BOUND):
            await asyncio.gather(*tasks)
        assert pool.busy_connections == 0  # actual: the first borrower's stays busy
        assert_consistent(pool)


# -- adversarial review: what hooks, raw access and the server can still do --------------------


async def give_up_on_reply(conn: WebsocketConnection, request: str) -> None:
    """Send ``request`` and wait only briefly for its reply, as a tolerant hook may."""
    await conn.send(request)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(conn.recv(), 0.03)


@pytest.mark.parametrize("hook", ["on_connect", "on_acquire"])
async def test_a_reply_a_hook_gave_up_on_never_reaches_the_borrower(
    server: LoopbackServer, hook: str
) -> None:
    """The hook failed as if it raised: its connection, owed a reply, is never handed out."""

    async def gives_up(conn: WebsocketConnection) -> None:
        await give_up_on_reply(conn, "hook's request")

    server.reply_delay = 0.1
    async with make_pool(server, **{hook: gives_up}) as pool:
        with pytest.raises(ConnectionHookError, match=f"{hook} left a receive"):
            async with asyncio.timeout(1), pool.get_connection():
                pytest.fail("handed out a connection that owes the hook a reply")
        assert pool.stats().hooks_failed == 1
        assert pool.total_connections == 0


async def test_a_reply_on_release_gave_up_on_never_reaches_the_next_borrower(
    server: LoopbackServer,
) -> None:
    async def on_release(conn: WebsocketConnection) -> None:
        await give_up_on_reply(conn, "hook's request")

    async with make_pool(server, on_release=on_release, max_connections=1) as pool:
        server.reply_delay = 0.3  # the hook gives up long before it comes
        await use_once(pool)
        await wait_until(lambda: pool.stats().hooks_failed == 1, "on_release failed", within=1)
        assert pool.total_connections == 0  # closed, not kept
        async with asyncio.timeout(1), pool.get_connection() as conn:
            await round_trip(conn, "mine")


async def hook_leaves_a_reader(conn: WebsocketConnection, readers: list[asyncio.Task[Any]]) -> None:
    """Start a task that receives on the hook's connection, let it begin, and return."""
    readers.append(asyncio.create_task(conn.recv()))
    await asyncio.sleep(0.01)


async def test_a_receive_on_acquire_left_pending_never_reads_the_borrowers_reply(
    server: LoopbackServer,
) -> None:
    readers: list[asyncio.Task[Any]] = []

    async def on_acquire(conn: WebsocketConnection) -> None:
        await hook_leaves_a_reader(conn, readers)

    try:
        async with make_pool(server, on_acquire=on_acquire) as pool:
            with pytest.raises(ConnectionHookError, match="on_acquire left a receive"):
                async with asyncio.timeout(1), pool.get_connection():
                    pytest.fail("handed out a connection a hook's task still reads")
            assert pool.total_connections == 0
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def test_a_receive_on_unsolicited_left_pending_never_reads_a_borrowers_reply(
    server: LoopbackServer,
) -> None:
    readers: list[asyncio.Task[Any]] = []

    async def on_unsolicited(conn: WebsocketConnection, message: str | bytes) -> None:
        await hook_leaves_a_reader(conn, readers)

    try:
        async with make_pool(server, on_unsolicited=on_unsolicited, max_connections=1) as pool:
            await use_once(pool)
            await server.push()
            await wait_until(lambda: bool(readers), "the hook ran", within=1)
            await settle()
            async with asyncio.timeout(1), pool.get_connection() as conn:
                await round_trip(conn, "mine")
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def test_the_connection_a_hook_kept_cannot_close_it_under_a_borrower(
    server: LoopbackServer,
) -> None:
    kept: list[WebsocketConnection] = []

    async def on_connect(conn: WebsocketConnection) -> None:
        kept.append(conn)

    async with make_pool(server, on_connect=on_connect) as pool, pool.get_connection() as conn:
        with pytest.raises(ConnectionBusyError):
            await kept[0].close()
        await round_trip(conn, "still mine")


async def test_a_timed_out_receive_on_the_raw_websocket_ends_reuse_too(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.3  # it comes after the next borrower has the connection
    async with make_pool(server, max_connections=1) as pool:
        async with pool.get_connection() as conn:
            await conn.send("late")
            raw = conn.websocket
            assert raw is not None
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(raw.recv(), 0.03)
        async with asyncio.timeout(1), pool.get_connection() as conn:
            await round_trip(conn, "mine")


def the_pooled(pool: WebsocketConnectionPool) -> WebsocketConnection:
    """The pool's only connection (its inbox is read by the fragment tests)."""
    (connection,) = pool.connections
    return connection


async def test_a_message_straddling_the_release_goes_whole_to_on_unsolicited(
    server: LoopbackServer,
) -> None:
    """Its first fragment came while lent (unread); its end after: the pool's, in one piece."""
    on_unsolicited = Unsolicited()
    received = on_unsolicited.messages

    go_on = asyncio.Event()
    async with make_pool(server, on_unsolicited=on_unsolicited, max_connections=1) as pool:
        async with pool.get_connection() as conn:
            await round_trip(conn, "first")
            sending = await send_in_two_fragments(server, f"{PUSH} begun ", "and ended", go_on)
            await wait_until(lambda: the_pooled(pool)._buffered_frames() == 1, "begun", within=1)
        go_on.set()
        await asyncio.wait_for(sending, 1)
        await wait_until(lambda: bool(received), "the hook got it", within=1)
        assert received == [f"{PUSH} begun and ended"]
        async with asyncio.timeout(1), pool.get_connection() as conn:
            await round_trip(conn, "mine")


async def test_a_message_straddling_the_hand_out_is_the_pools_not_the_borrowers(
    server: LoopbackServer,
) -> None:
    """Begun while idle, ended while the acquire waits for it: the borrower never sees it."""
    on_unsolicited = Unsolicited()
    received = on_unsolicited.messages

    go_on = asyncio.Event()
    pool = make_pool(
        server, on_unsolicited=on_unsolicited, max_connections=1, health_check_timeout=1
    )
    async with pool:
        idle = await use_once(pool)
        sending = await send_in_two_fragments(server, f"{PUSH} begun ", "and ended", go_on)
        await wait_until(lambda: partial_in_inbox(the_pooled(pool)), "begun", within=1)
        asyncio.get_running_loop().call_later(0.05, go_on.set)
        async with asyncio.timeout(1), pool.get_connection() as conn:
            assert go_on.is_set()  # the acquire waited for the message to end
            assert conn.id == idle  # and kept the connection
            await round_trip(conn, "mine")
        await asyncio.wait_for(sending, 1)
        assert received == [f"{PUSH} begun and ended"]


@pytest.mark.regression
async def test_a_message_that_arrives_during_the_health_check_never_reaches_the_borrower(
    server: LoopbackServer,
) -> None:
    """A push received before acquire() returned is unsolicited, even if it came mid-ping."""
    async with make_pool(server, max_connections=1, health_check_interval=0) as pool:
        conn = await pool.acquire()
        await round_trip(conn, "first")
        await pool.release(conn)
        server.freeze()  # the pong of the coming health check waits for thaw()
        acquirer = spawn(pool.acquire())
        await wait_until(
            lambda: pooled(conn).is_busy, "the acquirer was granted the idle connection"
        )
        await settle()  # its ping is sent
        assert await server.push() == 1  # the server sends while the pool checks it
        await wait_until(
            lambda: pool.stats().unsolicited_messages == 1, "the push was taken as unsolicited"
        )
        assert not acquirer.done()
        server.thaw()  # the pong comes: the health check passes
        async with asyncio.timeout(BOUND):
            borrowed = await acquirer
        assert pooled(borrowed) is pooled(conn)
        await borrowed.send("second")
        reply = await asyncio.wait_for(borrowed.recv(), BOUND)  # actual: "stray push"
        await pool.release(borrowed)
    assert reply == "second"


async def test_idle_connections_that_never_settle_do_not_exhaust_an_acquire(
    server: LoopbackServer,
) -> None:
    """A server trickling a message on every idle connection: one failed wait, then a new one."""
    pool = make_pool(
        server, max_connections=3, acquire_timeout=0.2, connection_timeout=0.2,
        health_check_timeout=0.2,
    )  # fmt: skip
    never = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield f"{PUSH} that never ends"
        await never.wait()

    async with pool:
        leases = [await pool.acquire() for _ in range(3)]
        for lease in leases:
            await pool.release(lease)
        senders = [asyncio.create_task(side.send(fragments())) for side in server.connections]
        try:
            await wait_until(
                lambda: all(partial_in_inbox(c) for c in pool.connections), "all begun", within=1
            )
            async with asyncio.timeout(1), pool.get_connection() as conn:
                await round_trip(conn, "mine")
        finally:
            for sender in senders:
                sender.cancel()
            await asyncio.gather(*senders, return_exceptions=True)


async def test_invalid_utf8_while_idle_discards_the_connection_not_the_next_borrower(
    server: LoopbackServer,
) -> None:
    async with make_pool(server, max_connections=1) as pool:
        spoiled = await use_once(pool)
        (server_side,) = server.connections
        server_side.transport.write(b"\x81\x02\xff\xfe")  # a text frame that is not UTF-8
        await wait_until(lambda: not is_live(pool, spoiled), "the spoiled one gone", within=1)
        async with asyncio.timeout(1), pool.get_connection() as conn:
            assert conn.id != spoiled
            await round_trip(conn, "mine")


async def test_what_came_before_the_first_hand_out_waits_for_it_when_the_first_acquirer_left(
    server: LoopbackServer,
) -> None:
    """No on_connect: the greeting is the first borrower's, even one who came second."""
    async with make_pool(server, max_connections=1) as pool:
        server.hold_handshakes()
        first = asyncio.create_task(pool.acquire())
        await wait_until(lambda: server.handshakes_in_flight == 1, "handshaking", within=1)
        first.cancel()
        server.release_handshakes()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await wait_until(lambda: server.open_connections == 1, "open", within=1)
        await server.push(f"{PUSH} greeting")
        await wait_until(lambda: pool.available_connections == 1, "parked", within=1)
        async with asyncio.timeout(1), pool.get_connection() as conn:
            assert await conn.recv() == f"{PUSH} greeting"
            await round_trip(conn, "mine")
        assert pool.stats().unsolicited_messages == 0


async def test_a_flood_during_on_release_is_the_pools_not_the_next_borrowers(
    server: LoopbackServer,
) -> None:
    """Pushed while the hook runs (websockets buffers and stops reading): all taken after it."""

    async def on_release(conn: WebsocketConnection) -> None:
        for _ in range(BURST):
            await server.push(PUSH)
        await asyncio.sleep(0.05)  # the burst has arrived, beyond websockets' max_queue

    async with make_pool(server, on_release=on_release, max_connections=1) as pool:
        kept = await use_once(pool)
        await wait_until(lambda: pool.available_connections == 1, "on_release done", within=1)
        await wait_until(lambda: pool.stats().unsolicited_messages >= BURST, "all taken", within=1)
        async with asyncio.timeout(1), pool.get_connection() as conn:
            assert conn.id == kept
            await round_trip(conn, "mine")
        assert pool.stats().unsolicited_messages == BURST


async def test_a_lease_iterator_kept_after_release_raises_lease_ended(
    server: LoopbackServer,
) -> None:
    """``async for`` left with ``break``: the iterator outlives the lease, its messages do not."""
    async with make_pool(server, max_connections=1) as pool:
        async with pool.get_connection() as conn:
            await conn.send("one")
            messages = aiter(conn)  # type: ignore[call-overload,unused-ignore]
            async for message in messages:
                assert message == "one"
                break
        async with asyncio.timeout(1), pool.get_connection() as current:
            with pytest.raises(LeaseEndedError):
                await anext(messages)
            await round_trip(current, "mine")


async def test_an_async_for_cut_off_by_a_timeout_ends_that_connections_reuse(
    server: LoopbackServer,
) -> None:
    server.reply_delay = 0.1
    async with make_pool(server, max_connections=1) as pool:
        async with pool.get_connection() as conn:
            cut = conn.id
            await conn.send("late")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.03):
                    async for _ in conn:  # type: ignore[attr-defined,unused-ignore]
                        pass
        server.reply_delay = 0
        async with asyncio.timeout(1), pool.get_connection() as conn:
            assert conn.id != cut
            await round_trip(conn, "mine")


async def test_a_reply_left_unread_at_release_is_drained_with_draining_on(
    server: LoopbackServer,
) -> None:
    """Fire and forget: only a drain, or closing, keeps that reply from the next borrower.

    The pool cannot tell a request whose reply is owed from a notification,
    and with no receive begun nothing says a reply is owed: the README tells
    such borrowers to drain (as here) or to release with ``force_remove``.
    """
    server.reply_delay = 0.05
    async with make_pool(
        server, max_connections=1, check_server_data_on_release=True, drain_quiet_period=0.2
    ) as pool:
        async with pool.get_connection() as conn:
            await conn.send("A's request, its reply never read")
        async with asyncio.timeout(1), pool.get_connection() as conn:
            await round_trip(conn, "B's request")


async def test_a_connection_lost_mid_message_at_hand_out_is_replaced_at_once(
    server: LoopbackServer,
) -> None:
    go_on = asyncio.Event()
    pool = make_pool(server, max_connections=1, health_check_timeout=0.8)
    async with pool:
        lost = await use_once(pool)
        sending = await send_in_two_fragments(server, f"{PUSH} begun ", "never sent", go_on)
        await wait_until(lambda: partial_in_inbox(the_pooled(pool)), "begun", within=1)
        (server_side,) = server.connections
        asyncio.get_running_loop().call_later(0.05, server_side.transport.abort)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with asyncio.timeout(1.5), pool.get_connection() as conn:
                assert conn.id != lost
                await round_trip(conn, "mine")
            assert loop.time() - began < 0.4  # not the whole health_check_timeout
            assert pool.stats().connections_lost == 1
        finally:
            sending.cancel()
            await asyncio.wait({sending})
