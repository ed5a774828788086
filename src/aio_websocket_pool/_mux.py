"""Many concurrent requests over a few pooled connections, each reply matched by a key.

An exclusive lease serves one request at a time: a thousand calls in flight
would need a thousand sockets, or a queue. A :class:`Multiplexer` holds a few
leases of its pool instead, for its whole life, and runs one reader task per
connection. A request is registered under its correlation key on the
connection with the fewest requests in flight, then sent; the reader parses
each message, finds the request its key names, and resolves the caller's
future. No task is made per request.

Rules (the cancellation and failure table):

* A request's timeout bounds everything it waits for: room on a connection,
  its send and its reply. When it passes, the request is ``timed_out`` at
  once (a reply from then on is counted, ``late_replies``, and dropped), its
  caller is woken and :class:`~aio_websocket_pool.RequestTimeoutError` is
  raised. A request that was answered first is answered, whatever the clock.
* A caller cancelled at any point leaves nothing behind: its entry is removed
  before the cancellation propagates, and a late reply is counted and dropped,
  also one that the reader takes after the cancellation and before the caller
  has run again to say so.
* A connection lost fails its requests in flight at once with
  :class:`~aio_websocket_pool.RequestLostError` (never retried: the server may
  have acted on them); the reader gives the lease back and a replacement is
  acquired in the background, while new requests go to the healthy ones.
* A message whose key matches nothing, or that cannot be parsed, never stops
  the reader: it is counted (``unmatched``) and given to the pool's
  ``on_unsolicited`` hook, when there is one.
* Leaving the ``async with`` fails what is still in flight with
  :class:`~aio_websocket_pool.RequestLostError` and gives the leases back with
  ``force_remove``: a reply or notification may still be on its way, so the
  connections are never lent to an exclusive borrower.

States and counts come from the tables of :mod:`._mux_fsm`, through one
bounded :class:`~._mux_fsm.Journal` per multiplexer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from ._config import UnsolicitedMessageHook, check_optional_number
from ._deadlines import Deadlines
from ._exceptions import (
    ConnectionClosedError,
    ConnectionHookError,
    ConnectionPoolUnavailableError,
    RequestLostError,
    RequestTimeoutError,
    WebsocketError,
)
from ._hooks import run_hook
from ._lease import ConnectionLease
from ._mux_fsm import QUEUED, SENT, TIMED_OUT, Journal, RequestLifecycle
from ._redact import secrets_of

if TYPE_CHECKING:
    from ._pool import WebsocketConnectionPool

logger: Final = logging.getLogger("aio_websocket_pool")

Message = str | bytes
#: ``parse(message) -> (key, payload)``: the key of a reply (``None`` for no
#: request's), and what its request returns.
Parse = Callable[[Message], tuple[Hashable | None, Any]]

DEFAULT_HISTORY_SIZE: Final = 1000
#: Keys of requests that ended unanswered (or answered), kept per connection to
#: tell a late or duplicate reply from one nobody asked for: the last this many
#: at least, twice as many at most.
SETTLED_KEYS_KEPT: Final = 4096
#: Messages waiting for ``on_unsolicited`` at most; more are dropped (and counted).
UNDELIVERED_KEPT: Final = 1000
_REPLACE_BACKOFF: Final = (0.05, 2.0)  # first and longest wait between replacement attempts
_mux_numbers = itertools.count(1)


def check_count(name: str, value: object) -> int:
    """An integer argument >= 1, refused at once otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class MuxStats:
    """A snapshot of a multiplexer, from :meth:`Multiplexer.stats`.

    Attributes:
        connections: Connections it reads from right now.
        in_flight: Requests sent and waiting for their reply.
        queued: Requests waiting for room on a connection.
        sent, answered, timed_out, lost, cancelled: Request transitions so
            far, by trigger (``send``, ``answer``, ``time_out``, ``lose``, ``cancel``).
        late_replies: Replies to requests that had ended (timed out,
            cancelled, lost or answered already): counted, never delivered.
        unmatched: Messages that matched no request (and no subscription),
            or could not be parsed: given to ``on_unsolicited``, or dropped.
        name: The multiplexer's name.
    """

    connections: int
    in_flight: int
    queued: int
    sent: int
    answered: int
    timed_out: int
    lost: int
    cancelled: int
    late_replies: int
    unmatched: int
    name: str


class _Pending(RequestLifecycle):
    """A request, from its registration to its end: its state, key, future and connection."""

    def __init__(
        self,
        subject: str,
        journal: Journal,
        key: Hashable,
        on_answer: Callable[[Channel, Any], None] | None,
        task: asyncio.Task[Any],
    ) -> None:
        super().__init__(subject, journal)
        self.key = key
        self.future: asyncio.Future[Any] = task.get_loop().create_future()
        self.on_answer = on_answer
        self.task = task  # its caller's: what its timeout cancels
        self.channel: Channel | None = None

    def is_waiting(self) -> bool:
        """Queued or sent: not ended yet."""
        return self.state is QUEUED or self.state is SENT


class Channel:
    """One leased connection of a multiplexer, and what is in flight on it.

    It talks on the lease's websocket through the connection's own send and
    receive (their errors, their last-traffic clock), not through the lease,
    whose checks cost a request 2-3 µs: they keep a former borrower off the
    next borrower's connection, and the multiplexer never is one. It holds the
    lease for the channel's whole life and gives it back only once the reader
    has stopped and the requests have failed; and the websocket, taken as the
    channel is made, belongs to that one session of the connection, never to
    another borrower's.
    """

    def __init__(self, lease: ConnectionLease) -> None:
        self.lease = lease
        self._connection, self._websocket = lease._live_websocket()
        self.pending: dict[Hashable, _Pending] = {}
        # Two generations of settled keys, the older dropped whole when the newer is full:
        # O(1) per key (dropping a dict's oldest key one at a time scans its dead slots).
        self._settled: set[Hashable] = set()
        self._settled_before: set[Hashable] = set()
        self.reader: asyncio.Task[None] | None = None
        #: What a protocol layer routes on this connection (JSON-RPC: server ids).
        self.routes: dict[Hashable, Any] = {}

    def settle(self, key: Hashable) -> None:
        """Remember that ``key`` ended, to count a reply that comes after."""
        settled = self._settled
        if len(settled) >= SETTLED_KEYS_KEPT:
            self._settled_before = settled
            self._settled = settled = set()
        settled.add(key)

    def has_settled(self, key: Hashable) -> bool:
        """Whether a request with ``key`` ended on this connection lately."""
        return key in self._settled or key in self._settled_before

    def send(self, message: Message) -> Awaitable[None]:
        """Send ``message`` (a coroutine to await: no frame of its own per request).

        Raises:
            ConnectionClosedError: The connection closed before or while sending.
        """
        return self._connection._send(self._websocket, message)

    def recv(self) -> Awaitable[Message]:
        """The next message (a coroutine to await).

        Raises:
            ConnectionClosedError: The connection closed before or while receiving.
        """
        return self._connection._recv(self._websocket)


class Multiplexer:
    """Requests matched to replies by key, over ``connections`` leases of a pool.

    Made by :meth:`WebsocketConnectionPool.multiplexed`; use it as ``async
    with``. The protocol layers (:class:`~._jsonrpc.JsonRpcClient`) build on it.

    Raises:
        TypeError, ValueError: At construction, for an argument out of range.
    """

    def __init__(
        self,
        pool: WebsocketConnectionPool,
        *,
        parse: Parse,
        connections: int,
        max_in_flight: int,
        request_timeout: float | None,
        max_connections: int,
        on_unsolicited: UnsolicitedMessageHook | None,
        hook_timeout: float,
        history_size: int = DEFAULT_HISTORY_SIZE,
    ) -> None:
        self._connections_wanted = check_count("connections", connections)
        if connections > max_connections:
            raise ValueError(
                f"connections={connections} is more than the pool's max_connections="
                f"{max_connections}"
            )
        self._max_in_flight = check_count("max_in_flight", max_in_flight)
        self._request_timeout = check_optional_number("request_timeout", request_timeout)
        self._pool = pool
        self._parse = parse
        self._on_unsolicited = on_unsolicited
        self._secrets = secrets_of(pool.uri, pool.headers)  # masked in on_unsolicited's reports
        self._hook_timeout = hook_timeout
        self.name = f"{pool.name}/mux-{next(_mux_numbers)}"
        self._journal = Journal(check_count("history_size", history_size))
        self._numbers = itertools.count(1)
        self._channels: list[Channel] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._workers: set[asyncio.Task[Any]] = set()  # replacements, deliveries
        self._requested: set[Hashable] = set()  # keys of request() in flight or queued
        self._deadlines = Deadlines(self._expire, _Pending.is_waiting)
        self._undelivered: deque[tuple[ConnectionLease, Message]] = deque()
        self._delivery: asyncio.Task[None] | None = None
        self._late = 0
        self._unmatched = 0
        self._started = False
        self._closed = False
        #: Told of each channel lost while open, before it is replaced (subscriptions).
        self.on_channel_lost: Callable[[Channel], None] | None = None
        #: Given each message with no key (JSON-RPC: notifications); default: unmatched.
        self.on_keyless: Callable[[Channel, Message, Any], None] = self.unmatched

    # -- figures ---------------------------------------------------------------------

    @property
    def history(self) -> tuple[Any, ...]:
        """Recent request (and subscription) transitions, oldest first; no payloads."""
        return tuple(self._journal.records)

    def stats(self) -> MuxStats:
        """A frozen snapshot of the counters, derived from the requests' transitions."""
        counts = self._journal.counts
        return MuxStats(
            connections=len(self._channels),
            in_flight=sum(len(channel.pending) for channel in self._channels),
            queued=sum(not waiter.done() for waiter in self._waiters),
            sent=counts["send"],
            answered=counts["answer"],
            timed_out=counts["time_out"],
            lost=counts["lose"],
            cancelled=counts["cancel"],
            late_replies=self._late,
            unmatched=self._unmatched,
            name=self.name,
        )

    # -- life --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._started:
            raise RuntimeError(f"{self.name} was entered already: make a new one")
        self._started = True
        acquiring = [
            asyncio.create_task(self._acquire_one(), name=f"aio_websocket_pool {self.name} open")
            for _ in range(self._connections_wanted)
        ]
        try:
            await asyncio.gather(*acquiring)
        except BaseException:
            for task in acquiring:
                task.cancel()
            await asyncio.wait(acquiring)
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        await self.aclose()
        return False

    async def _acquire_one(self) -> None:
        await self._adopt(await self._pool.acquire())

    async def _adopt(self, lease: ConnectionLease) -> None:
        """Start reading a new lease; the room it brings wakes every queued request."""
        if self._closed:
            await self._pool.release(lease, force_remove=True)
            return
        lease._connection._multiplexed = True
        channel = Channel(lease)
        channel.reader = asyncio.create_task(
            self._read(channel), name=f"aio_websocket_pool {self.name} read {lease.id}"
        )
        self._channels.append(channel)
        while self._waiters:
            self._wake_one()

    async def aclose(self) -> None:
        """Fail what is in flight, stop the readers, give the leases back (closed)."""
        if self._closed:
            return
        self._closed = True
        self._deadlines.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RequestLostError(f"{self.name} closed"))
        self._waiters.clear()
        channels, self._channels = self._channels, []
        for channel in channels:
            self._fail_in_flight(channel, f"{self.name} closed")
        tasks = [channel.reader for channel in channels if channel.reader is not None]
        tasks += self._workers
        for task in tasks:
            task.cancel()
        # What is in flight has failed: whatever interrupts what follows, nobody waits on it.
        for channel in channels:
            await self._give_back(channel, force_remove=True)
        if tasks:
            await asyncio.wait(tasks)

    async def _give_back(self, channel: Channel, *, force_remove: bool) -> None:
        lease = channel.lease
        lease._connection._multiplexed = False
        await self._pool.release(lease, force_remove=force_remove)  # returns at once

    # -- requests ----------------------------------------------------------------------

    async def request(
        self,
        message: Message,
        *,
        key: Hashable,
        timeout: float | Literal["default"] | None = "default",  # noqa: ASYNC109  (per request)
    ) -> Any:
        """Send ``message`` and return the reply whose key is ``key`` (as ``parse`` makes it).

        Args:
            message: What to send (text or bytes).
            key: The correlation key its reply will carry; unique among the
                requests in flight.
            timeout: Seconds for the whole request, waiting for room included;
                default: the multiplexer's ``request_timeout``; ``None``: no limit.

        Raises:
            RequestTimeoutError: No reply within ``timeout``.
            RequestLostError: Its connection was lost (or the multiplexer closed) first.
            ConnectionPoolUnavailableError: The multiplexer is not open.
            TypeError, ValueError: ``key`` is None, unhashable, or that of a
                request in flight or queued already.
        """
        if not isinstance(message, str | bytes):
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        if key is None:
            raise ValueError("key must not be None: None means 'no request's' to parse")
        if key in self._requested:  # TypeError for an unhashable key, here, not in the reader
            raise ValueError(f"a request with key {key!r} is in flight already")
        seconds = self._timeout(timeout)
        self._requested.add(key)
        try:
            reply, _ = await self.exchange(message, key, seconds)
        finally:
            self._requested.discard(key)
        return reply

    def _timeout(self, timeout: float | Literal["default"] | None) -> float | None:
        if timeout == "default":
            return self._request_timeout
        return check_optional_number("timeout", timeout)

    async def exchange(
        self,
        message: Message,
        key: Hashable,
        timeout: float | None,  # noqa: ASYNC109  (the request's own, from request())
        on_answer: Callable[[Channel, Any], None] | None = None,
        channel: Channel | None = None,
    ) -> tuple[Any, Channel]:
        """:meth:`request` with a key its caller made unique, also returning the connection.

        The protocol layers call it with keys of their own making (JSON-RPC: a
        counter), so it does not check them; :meth:`request` does.

        ``channel`` pins the request to one connection (what a server id is
        valid on); if that one is lost, :class:`RequestLostError`.

        ``on_answer(channel, payload)`` runs in the reader as the reply is
        taken, before any other message of that connection is: a protocol layer
        registers what the reply names (a subscription id) there, so that a
        notification right behind it is not missed.
        """
        if not self._started or self._closed:
            raise ConnectionPoolUnavailableError(f"{self.name} is not open: use it in async with")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a request must run in a task")
        pending = _Pending(f"{self.name}/req-{next(self._numbers)}", self._journal, key,
                           on_answer, task)  # fmt: skip
        # Not asyncio.timeout(), nor a timer handle per request: both cost more than all
        # the rest of a request (see _deadlines). At its deadline _expire ends the request,
        # then cancels the caller out of whatever it awaits; that cancellation is told
        # from any other by the request's state (timed_out) and the task's cancel count.
        if timeout is not None:
            self._deadlines.add(timeout, pending)
        cancelling = task.cancelling()
        try:
            pinned, channel = channel, self._pick(channel)
            while channel is None:
                await self._wait_for_room()
                channel = self._pick(pinned)
            pending.channel = channel
            channel.pending[key] = pending
            pending.fire("send")
            await channel.send(message)
            return await pending.future, channel
        except asyncio.CancelledError:
            if pending.state is TIMED_OUT and task.uncancel() <= cancelling:
                raise RequestTimeoutError(
                    f"{pending.subject}: no reply within {timeout:g}s"
                ) from None
            self._end(pending, "cancel")
            raise
        except RequestLostError as exc:  # lost in flight, or the multiplexer closed meanwhile
            self._end(pending, "lose", str(exc))
            raise
        except ConnectionClosedError as exc:  # the send failed
            self._end(pending, "lose", type(exc).__name__)
            raise RequestLostError(f"{pending.subject}: its connection closed") from exc
        finally:
            if timeout is not None:
                self._deadlines.ended()

    def _expire(self, pending: _Pending) -> None:
        """A request's deadline passed: end it now (a reply from here on is late), wake its caller.

        An answered or lost request is left as it is: its caller has its outcome.
        """
        if pending.is_waiting():
            self._end(pending, "time_out")
            pending.task.cancel()

    def _pick(self, pinned: Channel | None) -> Channel | None:
        """The connection with the fewest requests in flight (or ``pinned``), if it has room.

        Raises:
            RequestLostError: ``pinned`` is lost.
        """
        if pinned is not None:
            if pinned not in self._channels:
                raise RequestLostError(f"{pinned.lease.id} was lost")
            return pinned if len(pinned.pending) < self._max_in_flight else None
        best, least = None, self._max_in_flight
        for channel in self._channels:
            in_flight = len(channel.pending)
            if in_flight < least:
                best, least = channel, in_flight
        return best

    async def _wait_for_room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake_one()  # woken and cancelled at once: the room goes to the next
            raise

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _end(self, pending: _Pending, trigger: str, reason: str | None = None) -> None:
        """End a request its caller stops waiting for; a lost or answered one is left as it is."""
        future = pending.future
        if future.done() and not future.cancelled():
            future.exception()  # retrieved: lost while its caller left
        if not pending.is_waiting():
            return
        pending.fire(trigger, reason)
        channel = pending.channel
        if channel is not None and channel.pending.get(pending.key) is pending:
            del channel.pending[pending.key]
            channel.settle(pending.key)
            self._wake_one()

    # -- the readers -------------------------------------------------------------------

    async def _read(self, channel: Channel) -> None:
        try:
            while True:
                self._take(channel, await channel.recv())
        except ConnectionClosedError as exc:
            if self._lost(channel, str(exc)):
                await self._give_back(channel, force_remove=False)  # the pool counts it as lost

    def _take(self, channel: Channel, message: Message) -> None:
        """Route one message: to its request, to ``on_keyless``, or to the unmatched."""
        try:
            key, payload = self._parse(message)
        except Exception:  # noqa: BLE001  (a message the parser cannot read is one more stray)
            self.unmatched(channel, message, None)
            return
        if key is None:
            self.on_keyless(channel, message, payload)
            return
        try:
            pending = channel.pending.get(key)
        except TypeError:  # an unhashable key: it names no request
            self.unmatched(channel, message, payload)
            return
        # A cancelled future: its caller was cancelled and has not yet run to end the
        # request (it will, as cancelled). The reply is late, not its caller's to have.
        if pending is None or pending.future.done():
            if pending is not None or channel.has_settled(key):
                self._late += 1
            else:
                self.unmatched(channel, message, payload)
            return
        del channel.pending[key]
        channel.settle(key)
        if pending.on_answer is not None:
            pending.on_answer(channel, payload)
        pending.fire("answer")
        pending.future.set_result(payload)
        if self._waiters:
            self._wake_one()

    def _fail_in_flight(self, channel: Channel, why: str) -> None:
        for pending in channel.pending.values():
            pending.fire("lose", why)
            channel.settle(pending.key)
            if not pending.future.done():  # else cancelled: its caller is leaving anyway
                pending.future.set_exception(RequestLostError(f"{pending.subject}: {why}"))
        channel.pending.clear()

    def _lost(self, channel: Channel, why: str) -> bool:
        """A connection closed under the multiplexer: fail its requests, have it replaced.

        Returns whether the channel was still the multiplexer's (for its reader to give back).
        """
        if self._closed or channel not in self._channels:
            return False
        self._channels.remove(channel)
        self._fail_in_flight(channel, f"{channel.lease.id} was lost ({why})")
        if self.on_channel_lost is not None:
            self.on_channel_lost(channel)
        self.spawn(self._replace(), f"replace {channel.lease.id}")
        return True

    async def _replace(self) -> None:
        wait, longest = _REPLACE_BACKOFF
        while True:
            try:
                lease = await self._pool.acquire()
            except ConnectionPoolUnavailableError:
                return  # the pool closed: nothing to replace it with
            except WebsocketError as exc:
                logger.warning("%s: no replacement connection yet: %s", self.name, exc)
                await asyncio.sleep(wait)
                wait = min(longest, wait * 2)
            else:
                await self._adopt(lease)
                return

    def spawn(self, work: Any, what: str) -> asyncio.Task[Any]:
        """Run ``work`` in a task of the multiplexer, cancelled when it closes."""
        task = asyncio.create_task(work, name=f"aio_websocket_pool {self.name} {what}")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)
        return task

    # -- messages nobody asked for -------------------------------------------------------

    def unmatched(self, channel: Channel, message: Message, payload: Any) -> None:
        """Count a message that matched nothing; give it to ``on_unsolicited``, if set."""
        del payload
        self._unmatched += 1
        if self._on_unsolicited is None or len(self._undelivered) >= UNDELIVERED_KEPT:
            return
        self._undelivered.append((channel.lease, message))
        if self._delivery is None:
            self._delivery = self.spawn(self._deliver(), "on_unsolicited")

    async def _deliver(self) -> None:
        hook = self._on_unsolicited
        assert hook is not None  # noqa: S101  (nothing is queued without it)
        try:
            while self._undelivered:
                lease, message = self._undelivered.popleft()
                # Logged by run_hook; the multiplexer keeps its connection.
                with contextlib.suppress(ConnectionHookError):
                    await run_hook("on_unsolicited", hook(lease, message),
                                   seconds=self._hook_timeout, where=self.name,
                                   secrets=self._secrets)  # fmt: skip
        finally:
            self._delivery = None

    def __repr__(self) -> str:
        stats = self.stats()
        state = "closed" if self._closed else "open" if self._started else "not started"
        return (
            f"<Multiplexer {self.name} {state} [{stats.connections} connections, "
            f"{stats.in_flight} in flight, {stats.queued} queued]>"
        )
