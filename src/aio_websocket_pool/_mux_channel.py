"""One leased connection of a multiplexer: its requests in flight, the keys that ended, its socket.

A :class:`Channel` is what a multiplexer's reader reads and what a request
goes out on; a :class:`Pending` is one request, from the moment it is made
until it ends. The rules that keep a reply with its own caller live here:

* A reply is taken (:meth:`Channel.claim`) only by a request in flight on the
  same connection under its key, whose caller still waits for it; the request
  leaves the channel as it is answered, so a second reply finds nobody.
* A request that ended unanswered (timed out, cancelled, lost) or answered
  leaves its key behind for a while (:data:`SETTLED_KEYS_KEPT`), so that a
  reply that comes after is told late (counted, given to nobody) from a
  message nobody asked for (a stray).
* A caller cancelled while its reply was on the way has a cancelled future
  until it runs again to end its request: a reply that comes in between is
  late, never set on that future.
* A late reply still goes to its request's ``on_answer``, told it is late:
  what it names (a server's subscription) is the protocol layer's to undo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final

from ._exceptions import RequestLostError
from ._mux_fsm import QUEUED, SENT, Journal, RequestLifecycle
from ._websocket import PooledWebSocket

if TYPE_CHECKING:
    from ._lease import ConnectionLease

Message = str | bytes
#: ``on_answer(channel, payload, late)``: what a protocol layer does as a reply is taken;
#: ``late``: its caller had stopped waiting (a late subscribe answer names a live
#: subscription nobody holds, for the layer to end on the server).
OnAnswer = Callable[["Channel", Any, bool], None]

#: Keys of requests that ended unanswered (or answered), kept per connection to
#: tell a late or duplicate reply from one nobody asked for: the last this many
#: at least, twice as many at most.
SETTLED_KEYS_KEPT: Final = 4096


class Pending(RequestLifecycle):
    """A request, from its registration to its end: its state, key, future and connection.

    Args:
        subject: Its id in the history (``<multiplexer>/req-7``).
        journal: Its multiplexer's.
        key: The key its reply will carry.
        on_answer: Run in the reader as its reply is taken, late or not, or ``None``.
        task: Its caller: what its timeout cancels.
    """

    def __init__(
        self,
        subject: str,
        journal: Journal,
        key: Hashable,
        on_answer: OnAnswer | None,
        task: asyncio.Task[Any],
    ) -> None:
        super().__init__(subject, journal)
        self.key = key
        self.future: asyncio.Future[Any] = task.get_loop().create_future()
        self.on_answer = on_answer
        self.task = task
        self.channel: Channel | None = None
        self.replied = False  # a late reply came before its cancelled caller ended it

    def is_waiting(self) -> bool:
        """Queued or sent: not ended yet."""
        return self.state is QUEUED or self.state is SENT

    def answer(self, channel: Channel, payload: Any) -> None:
        """Its reply was taken (:meth:`Channel.claim`): give it to its caller."""
        if self.on_answer is not None:
            self.on_answer(channel, payload, False)
        self.fire("answer")
        self.future.set_result(payload)

    def end(self, trigger: str, reason: str | None = None) -> bool:
        """End it, as its caller stops waiting; a lost or answered one is left as it is.

        Returns:
            Whether it left a channel (the room it took is free again).
        """
        future = self.future
        if future.done() and not future.cancelled():
            future.exception()  # retrieved: lost while its caller left
        if not self.is_waiting():
            return False
        sent = self.state is SENT
        self.fire(trigger, reason)
        channel = self.channel
        if channel is None or channel.pending.get(self.key) is not self:
            return False
        del channel.pending[self.key]
        channel.settle(self.key)
        if sent and not self.replied:  # its reply may still come: the key is not free till then
            channel.owe(self.key, self.on_answer)
        return True


class Channel:
    """One leased connection of a multiplexer, and what is in flight on it.

    It talks on the lease's websocket itself: not through the lease, whose
    checks cost a request 2-3 µs (they keep a former borrower off the next
    borrower's connection, and the multiplexer never is one), nor through the
    connection's own send and receive, a coroutine more each way, for the
    last-traffic clock that only a hand-out reads (a multiplexed connection is
    never handed out again: it is closed as it is given back). Its reader
    takes messages through the websocket's frame sink and keeps that clock for
    ``idle_for``, as replies come. It holds the lease
    for the channel's whole life and gives it back only once the reader has
    stopped and the requests have failed; and the websocket, taken as the
    channel is made, belongs to that one session of the connection, never to
    another borrower's.
    """

    def __init__(self, lease: ConnectionLease) -> None:
        self.lease = lease
        #: Its pooled connection and that one's websocket, to talk on (websockets'
        #: ``send``, which raises websockets' ``ConnectionClosed``; and its frame sink).
        self.connection, websocket = lease._live_websocket()
        if not isinstance(websocket, PooledWebSocket):  # pragma: no cover  (open_websocket's)
            raise TypeError(f"{lease.id}: not a pooled websocket: {type(websocket).__name__}")
        self.websocket = websocket
        self.pending: dict[Hashable, Pending] = {}
        # Two generations of settled keys, the older dropped whole when the newer is full:
        # O(1) per key (dropping a dict's oldest key one at a time scans its dead slots).
        self._settled: set[Hashable] = set()
        self._settled_before: set[Hashable] = set()
        #: Keys of requests sent and ended unanswered (timed out, cancelled), whose
        #: replies may still come: a new request may not take one before it came.
        #: Each with its request's ``on_answer``, for the late reply. Insertion-ordered,
        #: more than :data:`SETTLED_KEYS_KEPT` and the connection is dropped.
        self.owed: dict[Hashable, OnAnswer | None] = {}
        self.reader: asyncio.Task[None] | None = None
        #: What a protocol layer routes on this connection (JSON-RPC: server ids).
        self.routes: dict[Hashable, Any] = {}
        #: Retired with a replacement joined already: losing it needs none.
        self.replaced = False

    def register(self, pending: Pending) -> None:
        """``pending`` goes out on this connection: its reply will be looked for here."""
        pending.channel = self
        self.pending[pending.key] = pending

    def claim(self, key: Hashable) -> Pending | None:
        """The request a reply with ``key`` answers, taken off the channel; or ``None``.

        ``None`` when no request in flight here has that key, or when its
        caller was cancelled and has not yet run to end it (it will, as
        cancelled): then the reply is nobody's (:meth:`take_late` tells which).

        Raises:
            TypeError: ``key`` is unhashable (it names no request).
        """
        pending = self.pending.get(key)
        if pending is None or pending.future.done():
            return None
        del self.pending[key]
        self.settle(key)
        return pending

    def take_late(self, key: Hashable, payload: Any) -> bool:
        """Whether a reply with ``key`` that nobody claimed answers a request that ended; take it.

        A late reply pays what was owed: its key may be used again from now on.
        Its request's ``on_answer`` runs, told it is late, once.
        """
        pending = self.pending.get(key)
        if pending is not None:  # its caller was cancelled and has not run to end it yet
            on_answer, pending.on_answer, pending.replied = pending.on_answer, None, True
        elif key in self.owed:  # kept longer than the settled keys: a slow server's reply
            on_answer = self.owed.pop(key)
        elif not (key in self._settled or key in self._settled_before):
            return False
        else:
            on_answer = None
        if on_answer is not None:
            on_answer(self, payload, True)
        return True

    def settle(self, key: Hashable) -> None:
        """Remember that ``key`` ended, to count a reply that comes after."""
        settled = self._settled
        if len(settled) >= SETTLED_KEYS_KEPT:
            self._settled_before = settled
            self._settled = settled = set()
        settled.add(key)

    def owe(self, key: Hashable, on_answer: OnAnswer | None) -> None:
        """A request with ``key`` ended unanswered after it was sent: its reply may still come."""
        self.owed[key] = on_answer

    def owes_too_much(self) -> bool:
        """Whether more replies are owed than it remembers: the connection must go.

        Forgetting one would let its reply, if it ever came, answer a new request
        with the same key: another caller's message. A server that left this many
        requests unanswered is not worth keeping a connection to anyway.
        """
        return len(self.owed) > SETTLED_KEYS_KEPT

    def fail(self, why: str) -> None:
        """Fail every request in flight here with :class:`RequestLostError` (lost, or closed)."""
        for pending in self.pending.values():
            pending.fire("lose", why)
            self.settle(pending.key)
            if not pending.future.done():  # else cancelled: its caller is leaving anyway
                pending.future.set_exception(RequestLostError(f"{pending.subject}: {why}"))
        self.pending.clear()
