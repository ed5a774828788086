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
bounded :class:`~._mux_fsm.Journal` per multiplexer. This module runs the
parts: :mod:`._mux_channel` (a connection and its requests), :mod:`._mux_room`
(which connection; the line for room), :mod:`._deadlines`, :mod:`._mux_strays`,
:mod:`._mux_upkeep` (a lost connection replaced, one too old for the pool retired).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame

from ._config import (
    UnsolicitedMessageHook,
    check_count,
    check_history_size,
    check_optional_number,
)
from ._deadlines import Deadlines
from ._exceptions import (
    ConnectionPoolUnavailableError,
    RequestLostError,
    RequestTimeoutError,
)
from ._inbox import Assembler
from ._mux_channel import Channel, Message, OnAnswer, Pending
from ._mux_fsm import TIMED_OUT, Journal, MuxStats
from ._mux_room import Room
from ._mux_strays import Strays
from ._mux_upkeep import Move, Outdated, replace_lost, rotate
from ._redact import describe_close, raise_from, secrets_of
from ._websocket import loss_reason, send_in_turn, take_buffered_frames

if TYPE_CHECKING:
    from ._lease import ConnectionLease
    from ._pool import WebsocketConnectionPool

logger: Final = logging.getLogger("aio_websocket_pool")

#: ``parse(message) -> (key, payload)``: the key of a reply (``None`` for no
#: request's), and what its request returns.
Parse = Callable[[Message], tuple[Hashable | None, Any]]

DEFAULT_HISTORY_SIZE: Final = 1000
_mux_numbers = itertools.count(1)


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
        outdated: Outdated,
        rotation_interval: float,
        history_size: int = DEFAULT_HISTORY_SIZE,
    ) -> None:
        self._connections_wanted = check_count("connections", connections, minimum=1)
        if connections > max_connections:
            raise ValueError(
                f"connections={connections} is more than the pool's max_connections="
                f"{max_connections}"
            )
        self._max_in_flight = check_count("max_in_flight", max_in_flight, minimum=1)
        self._request_timeout = check_optional_number("request_timeout", request_timeout)
        self._pool = pool
        self._parse = parse
        self.name = f"{pool.name}/mux-{next(_mux_numbers)}"
        self._journal = Journal(check_history_size(history_size))
        self._numbers = itertools.count(1)
        self._room = Room(self._max_in_flight)
        self._workers: set[asyncio.Task[Any]] = set()  # replacements, deliveries
        self._requested: set[Hashable] = set()  # keys of request() in flight or queued
        self._deadlines = Deadlines(self._expire)
        secrets = secrets_of(pool.uri, pool.headers)  # masked in on_unsolicited's reports
        self._strays = Strays(on_unsolicited, where=self.name, hook_timeout=hook_timeout,
                              secrets=secrets, spawn=self.spawn)  # fmt: skip
        self._late = 0
        self._outdated, self._rotation_interval = outdated, rotation_interval
        self._started = False
        self._closed = False
        #: Told of each channel lost while open, before it is replaced (subscriptions).
        self.on_channel_lost: Callable[[Channel], None] | None = None
        #: Awaited for each channel retired (too old), after its replacement joined.
        self.on_channel_retiring: Move | None = None
        #: Given each message with no key (JSON-RPC: notifications); default: unmatched.
        self.on_keyless: Callable[[Channel, Message, Any], None] = self.unmatched

    # -- figures ---------------------------------------------------------------------

    @property
    def history(self) -> tuple[Any, ...]:
        """Recent request (and subscription) transitions, oldest first; no payloads."""
        return self._journal.records

    def stats(self) -> MuxStats:
        """A frozen snapshot of the counters, derived from the requests' transitions."""
        counts, room = self._journal.counts, self._room
        return MuxStats(
            connections=len(room.channels),
            in_flight=room.in_flight,
            queued=room.queued,
            sent=counts["send"],
            answered=counts["answer"],
            timed_out=counts["time_out"],
            lost=counts["lose"],
            cancelled=counts["cancel"],
            late_replies=self._late,
            unmatched=self._strays.count,
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
        self.spawn(rotate(self, self._outdated, self._rotation_interval), "rotation")
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

    async def _adopt(self, lease: ConnectionLease) -> Channel | None:
        """Start reading a new lease; the room it brings wakes every queued request.

        Returns its channel; ``None`` if the multiplexer closed (the lease went back).
        """
        if self._closed:
            await self._pool.release(lease, force_remove=True)
            return None
        lease._connection._multiplexed = True
        channel = Channel(lease)
        channel.reader = asyncio.create_task(
            self._read(channel), name=f"aio_websocket_pool {self.name} read {lease.id}"
        )
        self._room.join(channel)
        return channel

    async def aclose(self) -> None:
        """Fail what is in flight, stop the readers, give the leases back (closed)."""
        if self._closed:
            return
        self._closed = True
        self._deadlines.close()
        channels = self._room.close(f"{self.name} closed")
        for channel in channels:
            channel.fail(f"{self.name} closed")
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
            ConnectionPoolUnavailableError: The multiplexer is not open, or its pool closed
                and no connection of it is left.
            TypeError, ValueError: ``key`` is None, unhashable, or that of a
                request in flight or queued already, or of one that ended
                unanswered whose reply has not come yet.
        """
        if not isinstance(message, str | bytes):
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        if key is None:
            raise ValueError("key must not be None: None means 'no request's' to parse")
        if key in self._requested:  # TypeError for an unhashable key, here, not in the reader
            raise ValueError(f"a request with key {key!r} is in flight already")
        if any(key in channel.owed for channel in self._room.channels):
            # Its reply would answer this request: another caller's message.
            raise ValueError(
                f"a request with key {key!r} ended unanswered and its reply may still come: "
                "use a new key"
            )
        seconds = self._timeout(timeout)
        self._requested.add(key)
        try:
            return await self.exchange(message, key, seconds)
        finally:
            self._requested.discard(key)

    def _timeout(self, timeout: float | Literal["default"] | None) -> float | None:
        if timeout == "default":
            return self._request_timeout
        return check_optional_number("timeout", timeout)

    async def exchange(
        self,
        message: Message,
        key: Hashable,
        timeout: float | None,  # noqa: ASYNC109  (the request's own, from request())
        *,
        on_answer: OnAnswer | None = None,
        channel: Channel | None = None,
        unwrap: Callable[[Any], Any] | None = None,
    ) -> Any:
        """:meth:`request` with a key its caller made unique; ``unwrap(reply)`` if given.

        The protocol layers call it with keys of their own making (JSON-RPC: a
        counter), so it does not check them; :meth:`request` does.

        ``channel`` pins the request to one connection (what a server id is
        valid on); if that one is lost, :class:`RequestLostError`.

        ``on_answer(channel, payload, late)`` runs in the reader as the reply
        is taken, before any other message of that connection is: a protocol
        layer registers what the reply names (a subscription id) there, so that
        a notification right behind it is not missed; or, for a reply that came
        after the request ended (``late``), undoes it.
        """
        if not self._started or self._closed:
            raise ConnectionPoolUnavailableError(f"{self.name} is not open: use it in async with")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a request must run in a task")
        # Encoded before anything is registered: a str that is not UTF-8 fails here, its
        # caller's mistake alone. Inside websockets' send it would close the connection.
        data, text = (message.encode(), True) if isinstance(message, str) else (message, False)
        pending = Pending(f"{self.name}/req-{next(self._numbers)}", self._journal, key,
                          on_answer, task)  # fmt: skip
        # Not asyncio.timeout(), nor a timer handle per request (see _deadlines). _expire
        # ends the request, then cancels its caller out of whatever it awaits; that is told
        # from any other cancellation by the state (timed_out) and the task's cancel count.
        if timeout is not None:
            self._deadlines.add(timeout, pending)
        cancelling = task.cancelling()
        room = self._room
        try:
            pinned, channel = channel, room.pick(channel)
            while channel is None:
                await room.wait(pinned)
                channel = room.pick(pinned)
            channel.register(pending)
            pending.fire("send")
            if not send_in_turn(channel.websocket, data, text=text):
                await channel.websocket.send(data, text=text)
            reply = await pending.future
            return reply if unwrap is None else unwrap(reply)
        except asyncio.CancelledError:
            if pending.state is TIMED_OUT and task.uncancel() <= cancelling:
                raise RequestTimeoutError(
                    f"{pending.subject}: no reply within {timeout:g}s"
                ) from None
            self._end(pending, "cancel")
            raise
        except (RequestLostError, ConnectionPoolUnavailableError) as exc:  # see room.wait
            self._end(pending, "lose", str(exc))
            raise
        except ConnectionClosed as exc:  # the send failed
            self._end(pending, "lose", describe_close(exc))
            raise_from(RequestLostError(f"{pending.subject}: its connection closed"), exc)
        except Exception as exc:  # a bug, or what unwrap raised: nothing may stay in flight
            self._end(pending, "lose", type(exc).__name__)
            raise
        finally:
            if timeout is not None:
                self._deadlines.ended(timeout, pending)

    def _expire(self, pending: Pending) -> None:
        """A request's deadline passed: end it now (a reply from here on is late), wake its caller.

        An answered or lost request is left as it is: its caller has its outcome.
        """
        if pending.is_waiting():
            self._end(pending, "time_out")
            pending.task.cancel()

    def _end(self, pending: Pending, trigger: str, reason: str | None = None) -> None:
        """End a request its caller stops waiting for; the room it took goes to the next."""
        if pending.end(trigger, reason):
            channel = pending.channel
            self._room.wake_one(channel)
            if channel is not None and channel.owes_too_much():
                self._drop(channel, f"{len(channel.owed)} replies owed, more than it remembers")

    def _drop(self, channel: Channel, why: str) -> None:
        """Give up a connection that is still open, as if it was lost; close it."""
        if self._lost(channel, why) and channel.reader is not None:
            channel.reader.cancel()
            self.spawn(self._give_back(channel, force_remove=True), f"drop {channel.lease.id}")

    # -- the readers -------------------------------------------------------------------

    async def _read(self, channel: Channel) -> None:
        """Take a channel's messages as they arrive, until its connection closes.

        Not through ``recv()``: each data frame is taken inside websockets'
        ``data_received``, as the pool takes an idle connection's (the frame
        sink), so a reply costs no coroutine, queue or future of websockets'
        own (about 2 µs a call in M1). This task only waits for the close.
        """
        websocket, connection, take = channel.websocket, channel.connection, self._take
        assembler = Assembler()

        def on_frame(frame: Frame) -> None:  # never raises: it runs inside websockets
            try:
                message = assembler.add(frame)
                if message is not None:
                    connection._last_activity = time.monotonic()  # its idle_for
                    take(channel, message)
            except UnicodeDecodeError:
                self._drop(channel, "a text message was not valid UTF-8")
            except Exception as exc:  # a bug: the connection cannot be trusted with more
                logger.exception("%s: taking a message on %s failed", self.name, channel.lease.id)
                self._drop(channel, f"taking a message raised {type(exc).__name__}")

        for frame in take_buffered_frames(websocket):  # what came before it was adopted
            on_frame(frame)
        websocket.sink = on_frame
        try:
            await websocket.wait_closed()
        finally:
            websocket.sink = None
        if self._lost(channel, loss_reason(websocket)):
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
            pending = channel.claim(key)
        except TypeError:  # an unhashable key: it names no request
            self.unmatched(channel, message, payload)
            return
        if pending is not None:
            pending.answer(channel, payload)
            self._room.wake_one(channel)
        elif channel.take_late(key, payload):
            self._late += 1
        else:
            self.unmatched(channel, message, payload)

    def _lost(self, channel: Channel, why: str) -> bool:
        """A connection closed under the multiplexer: fail its requests, have it replaced.

        Returns whether the channel was still the multiplexer's (for its reader to give back).
        """
        if self._closed or not self._room.leave(channel):
            return False
        channel.fail(f"{channel.lease.id} was lost ({why})")
        if self.on_channel_lost is not None:
            self.on_channel_lost(channel)
        if not channel.replaced:
            self.spawn(replace_lost(self), f"replace {channel.lease.id}")
        return True

    def spawn(self, work: Any, what: str) -> asyncio.Task[Any]:
        """Run ``work`` in a task of the multiplexer, cancelled when it closes."""
        task = asyncio.create_task(work, name=f"aio_websocket_pool {self.name} {what}")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)
        return task

    def unmatched(self, channel: Channel, message: Message, payload: Any) -> None:
        """A message that matched nothing: counted, given to ``on_unsolicited`` if set."""
        del payload
        self._strays.take(channel.lease, message)

    def __repr__(self) -> str:
        stats = self.stats()
        state = "closed" if self._closed else "open" if self._started else "not started"
        return (
            f"<Multiplexer {self.name} {state} [{stats.connections} connections, "
            f"{stats.in_flight} in flight, {stats.queued} queued]>"
        )
