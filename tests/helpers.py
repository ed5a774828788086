"""Helpers shared by the pool tests: making pools, bounded waits, consistency checks.

The test files import what they need from here instead of keeping their own
copies. Nothing here mocks anything: pools talk to the loopback server of
``tests/loopback.py`` (or to any URI a test passes), and every wait is bounded
by :data:`BOUND`, so a test fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import pytest
import trustme

from aio_websocket_pool import (
    ConnectionLease,
    PoolStats,
    State,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from loopback import LoopbackServer

#: Upper bound, in seconds, on any single wait in the tests (they take far less).
BOUND = 5.0
#: Seconds between two checks of the condition in :func:`wait_until`.
POLL_INTERVAL = 0.001
#: The states of a connection that holds a slot of its pool.
LIVE_STATES = (State.CONNECTING, State.IDLE, State.BUSY, State.DRAINING)

T = TypeVar("T")


# -- making pools ------------------------------------------------------------------------


class PoolMaker(Protocol):
    """Makes a pool on the loopback server, or on any URI, with a test file's defaults."""

    def __call__(
        self, target: LoopbackServer | str, /, **options: Any
    ) -> WebsocketConnectionPool: ...


def pool_maker(**defaults: Any) -> PoolMaker:
    """A ``make_pool`` whose pools get ``defaults`` for every option a test leaves out.

    Each test file states its own defaults once, for example
    ``make_pool = pool_maker(health_check_interval=None)``; a test that names an
    option overrides the default. Options named nowhere keep the library's
    defaults.
    """

    def make_pool(target: LoopbackServer | str, /, **options: Any) -> WebsocketConnectionPool:
        uri = target if isinstance(target, str) else target.uri
        return WebsocketConnectionPool(uri, **{**defaults, **options})

    return make_pool


#: Bounded acquires; no health-check pings unless a test asks for them.
unpinged_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND)
#: No pings (a ping is traffic, and would read what the tests leave buffered),
#: a slow sweep unless a test wants one, bounded acquires and closes.
quiet_pool = pool_maker(
    health_check_interval=None, cleanup_interval=60.0, acquire_timeout=BOUND, close_timeout=0.5
)


# -- waiting -----------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], bool], what: str, *, within: float = BOUND) -> None:
    """Poll ``predicate`` until it holds; fail the test if it does not within ``within`` s.

    Args:
        predicate: The condition, checked at once and then every
            :data:`POLL_INTERVAL` seconds.
        what: The condition in words, for the failure message.
        within: Seconds to wait at most.

    Raises:
        AssertionError: ``predicate`` did not hold within ``within`` seconds.
    """
    try:
        async with asyncio.timeout(within):
            while True:
                if predicate():
                    return
                await asyncio.sleep(POLL_INTERVAL)
    except TimeoutError:
        raise AssertionError(f"not reached within {within:g}s: {what}") from None


async def settle(turns: int = 5) -> None:
    """Let the event loop run ``turns`` iterations: scheduled dispatches, done-callbacks."""
    for _ in range(turns):
        await asyncio.sleep(0)


def spawn(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task for a test coroutine, named so that the leak check does not take it for the pool's."""
    return asyncio.create_task(coroutine, name="test task")


async def expect_cancelled(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and check that it ends cancelled."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


# -- checks ------------------------------------------------------------------------------


def assert_consistent(pool: WebsocketConnectionPool) -> PoolStats:
    """The counters are what the connection states say, counted every way there is.

    Returns:
        The pool's stats, as checked.
    """
    pool._core.index.check()
    stats = pool.stats()
    assert stats.total == stats.connecting + stats.idle + stats.busy + stats.draining
    assert stats.total <= stats.max_connections
    counted = Counter(conn.state for conn in pool.connections)
    assert counted[State.CLOSED] == 0, "a closed connection still holds a slot"
    assert {state: counted[state] for state in LIVE_STATES} == {
        State.CONNECTING: stats.connecting,
        State.IDLE: stats.idle,
        State.BUSY: stats.busy,
        State.DRAINING: stats.draining,
    }
    assert len(pool.connections) == len(pool) == pool.total_connections == stats.total
    assert pool.available_connections == stats.idle
    assert pool.busy_connections == stats.busy
    assert pool.pending_connections == stats.draining
    # Every open connection that is no longer live was closed exactly once.
    assert stats.opened - stats.closed == stats.idle + stats.busy + stats.draining
    assert stats.reused <= stats.acquired
    return stats


async def round_trip(conn: WebsocketConnection, message: str) -> None:
    """Send ``message`` and check that the very next message received is its echo."""
    await conn.send(message)
    assert await conn.recv() == message


def pooled(lease: WebsocketConnection) -> WebsocketConnection:
    """The pooled connection behind a lease, for inspecting it after the lease ended.

    A lease raises ``LeaseEndedError`` once it ended; what happened to its
    connection afterwards (closed, kept, its history) is read here. Typed
    as the 0.1.0 API hands out (a ``WebsocketConnection``), and checked.
    """
    assert isinstance(lease, ConnectionLease), f"{lease!r} is not what acquire() hands out"
    return lease._connection


def triggers(conn: WebsocketConnection) -> list[str]:
    """The events a connection went through, oldest first (as far as its history goes)."""
    return [record.trigger for record in conn.history]


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or while handling, each once.

    Both links of every exception are followed, its ``__cause__`` and its
    ``__context__``, so nothing chained anywhere is missed.
    """
    seen: set[int] = set()
    todo = [exc]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        todo.extend(e for e in (link.__cause__, link.__context__) if e is not None)


class Unsolicited:
    """An ``on_unsolicited`` hook that keeps the messages it is given, in order."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []

    async def __call__(self, conn: WebsocketConnection, message: str | bytes) -> None:
        del conn
        self.messages.append(message)


# -- messages the server sends -------------------------------------------------------


def partial_in_inbox(connection: WebsocketConnection) -> bool:
    """Whether the pool has taken the first fragment of a message, and not its end."""
    inbox = connection._inbox
    return inbox is not None and inbox.partial


async def send_in_two_fragments(
    server: LoopbackServer, first: str, last: str, go_on: asyncio.Event
) -> asyncio.Task[None]:
    """Have the server send ``first + last`` as one message of two frames, the last at ``go_on``."""

    async def fragments() -> AsyncIterator[str]:
        yield first
        await go_on.wait()
        yield last

    (server_side,) = server.connections
    return asyncio.create_task(server_side.send(fragments()))


#: The environment variables websockets (through urllib) reads a proxy from.
PROXY_VARIABLES = ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY",
                   "https_proxy", "WS_PROXY", "ws_proxy", "ALL_PROXY", "all_proxy")  # fmt: skip


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable set, whatever the machine running the tests has (for this test)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


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


async def queue_acquirers(
    pool: WebsocketConnectionPool, count: int
) -> list[asyncio.Task[ConnectionLease]]:
    """Start ``count`` more acquirers and wait until they all queue."""
    queued = pool.stats().waiting
    tasks = [spawn(pool.acquire()) for _ in range(count)]
    await wait_until(lambda: pool.stats().waiting == queued + count, f"{count} more queued")
    return tasks


async def server_closed_all(server: LoopbackServer) -> None:
    await wait_until(lambda: server.open_connections == 0, "the server saw every socket close")


# -- plain HTTP on loopback --------------------------------------------------------------


@contextlib.asynccontextmanager
async def http_server(answer: Callable[[bytes], bytes]) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A one-shot HTTP server on loopback: each request gets ``answer(request)``, then EOF.

    Yields its port and the requests it received (to prove what was sent).
    """
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            request = await reader.readuntil(b"\r\n\r\n")
            requests.append(request)
            writer.write(answer(request))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], requests


def redirect_to(location: str) -> Callable[[bytes], bytes]:
    """An answer for :func:`http_server`: a 302 to ``location``."""

    def answer(request: bytes) -> bytes:
        del request
        return f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()

    return answer


# -- TLS with a throwaway certificate authority ------------------------------------------


def server_context(ca: trustme.CA, host: str) -> ssl.SSLContext:
    """A server's TLS context, with a certificate for ``host`` signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client's TLS context that verifies certificates against ``ca`` (and only it)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
