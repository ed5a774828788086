"""The lifecycles of a multiplexed request and of a subscription: two tables, no I/O.

Rules of this module, those of :mod:`._fsm`:

* Which state may follow which is written down once per lifecycle, in
  :data:`REQUEST_TRANSITIONS` and :data:`SUBSCRIPTION_TRANSITIONS`; the lean
  machinery of :mod:`._fsm` runs them, and the diagrams are drawn from them.
* Nothing here awaits. The multiplexer does the I/O and fires the event that
  records its outcome; an event with no edge from the current state raises
  :class:`~aio_websocket_pool.InvalidTransitionError` and changes nothing.
* Every transition is written to its multiplexer's :class:`Journal`: a bounded
  history (ids, triggers and states, never a payload) and the counts by
  trigger that the multiplexer's figures (:class:`MuxStats`) are derived from. A request object
  holds no history of its own: a thousand calls in flight cost a thousand small
  objects, not a thousand deques.

The triggers of the two tables differ, so that one count by trigger serves both.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ._fsm import Edge, LeanModel, TransitionRecord, lean_events

logger: Final = logging.getLogger("aio_websocket_pool")
_DEBUG: Final = logging.DEBUG
_wall_clock: Final = time.time  # bound once: read on every transition
_new_tuple: Final = tuple.__new__  # the named tuple's own __new__ costs a Python call more


class RequestState(enum.StrEnum):
    """Where a multiplexed request is. The values are the names the docs use."""

    QUEUED = "queued"
    """Waiting for room: every connection has ``max_in_flight`` requests out, or none is open."""
    SENT = "sent"
    """Handed to a connection, waiting for the reply whose key is its own."""
    ANSWERED = "answered"
    """Its reply came and was given to the caller."""
    TIMED_OUT = "timed_out"
    """Its timeout passed first; a reply that comes later is counted and dropped."""
    LOST = "lost"
    """Its connection was lost before the reply came (never retried: it may have run)."""
    CANCELLED = "cancelled"
    """Its caller was cancelled; a reply that comes later is counted and dropped."""


QUEUED, SENT, ANSWERED, TIMED_OUT, LOST, CANCELLED = RequestState

#: The lifecycle of one request of :meth:`Multiplexer.request` (and of ``rpc.call``).
REQUEST_TRANSITIONS: Final[tuple[Edge[RequestState], ...]] = (
    Edge("send", (QUEUED,), SENT, "a connection had room: the request went out on it"),
    Edge("answer", (SENT,), ANSWERED, "a message with the request's key arrived"),
    Edge("time_out", (QUEUED, SENT), TIMED_OUT, "the request's timeout passed"),
    Edge("lose", (QUEUED, SENT), LOST,
         "its connection closed, the send failed, or the multiplexer closed"),
    Edge("cancel", (QUEUED, SENT), CANCELLED, "the calling task was cancelled"),
)  # fmt: skip


class SubscriptionState(enum.StrEnum):
    """Where a subscription is. The values are the names the docs use."""

    SUBSCRIBING = "subscribing"
    """The subscribe request is out; no server id yet."""
    ACTIVE = "active"
    """The server's id is known; its notifications are delivered."""
    RESUBSCRIBING = "resubscribing"
    """Its connection was lost; it is being sent again on a healthy one (a gap is open)."""
    CLOSED = "closed"
    """Ended: left by its user, refused, lost without ``resubscribe``, or its multiplexer closed."""


SUBSCRIBING, ACTIVE, RESUBSCRIBING, SUB_CLOSED = SubscriptionState

#: The lifecycle of one subscription of ``rpc.subscribe``.
SUBSCRIPTION_TRANSITIONS: Final[tuple[Edge[SubscriptionState], ...]] = (
    Edge("confirm", (SUBSCRIBING,), ACTIVE, "the subscribe request was answered with an id"),
    Edge("interrupt", (ACTIVE,), RESUBSCRIBING,
         "its connection was lost and resubscribe is on"),
    Edge("restore", (RESUBSCRIBING,), ACTIVE,
         "the subscribe request was answered again, on a healthy connection"),
    Edge("move", (ACTIVE,), ACTIVE,
         "its connection was retired: subscribed again on another before it closed, no gap"),
    Edge("close", (SUBSCRIBING, ACTIVE, RESUBSCRIBING), SUB_CLOSED,
         "left by its user, refused by the server, lost without resubscribe, "
         "or the multiplexer closed"),
)  # fmt: skip


_TRIGGERS: Final = tuple(edge.trigger for edge in REQUEST_TRANSITIONS + SUBSCRIPTION_TRANSITIONS)


class Journal:
    """A multiplexer's bounded history, and its counts of transitions by trigger.

    Args:
        size: How many records to keep, the oldest dropped first.
    """

    def __init__(self, size: int) -> None:
        # Plain tuples, made TransitionRecords as they are read (history): a named tuple
        # made from the fields' tuple is a second tuple per transition, to pay and to collect.
        self._records: deque[tuple[Any, ...]] = deque(maxlen=size)
        # A plain dict, every trigger in it from the start: ``+= 1`` on a Counter (a dict
        # subclass) misses the interpreter's fast path for a dict.
        self.counts: dict[str, int] = dict.fromkeys(_TRIGGERS, 0)

    @property
    def records(self) -> tuple[TransitionRecord[Any], ...]:
        """The transitions kept, oldest first."""
        return tuple(_new_tuple(TransitionRecord, fields) for fields in self._records)


class Tracked(LeanModel):
    """A request's or subscription's state, moved by its table, recorded in a journal.

    Args:
        subject: Its id in history records (``<multiplexer>/req-7``).
        journal: Its multiplexer's.
    """

    _initial: ClassVar[enum.StrEnum]
    _initial_value: ClassVar[str]  # read once: an enum's .value is a property, 0.2 µs a read
    _by_value: ClassVar[dict[str, enum.StrEnum]]

    def __init__(self, subject: str, journal: Journal) -> None:
        self.subject = subject
        self.state = self._initial
        self._machine_state = self._initial_value
        self._journal = journal

    def _after_state_change(self, trigger: str, reason: str | None) -> None:
        # The journal's record made here, not by a method of the journal: a Python call
        # less on each of the two or more transitions of every request.
        source = self.state
        self.state = dest = self._by_value[self._machine_state]
        journal = self._journal
        fields = (_wall_clock(), self.subject, trigger, source, dest, reason)
        journal._records.append(fields)
        journal.counts[trigger] += 1
        if logger.isEnabledFor(_DEBUG):
            logger.debug("%s", _new_tuple(TransitionRecord, fields))


class RequestLifecycle(Tracked):
    """The state of one multiplexed request."""

    state: RequestState
    _events = lean_events(RequestState, REQUEST_TRANSITIONS, QUEUED)
    _initial = QUEUED
    _initial_value = QUEUED.value
    _by_value: ClassVar[dict[str, enum.StrEnum]] = {state.value: state for state in RequestState}


class SubscriptionLifecycle(Tracked):
    """The state of one subscription."""

    state: SubscriptionState
    _events = lean_events(SubscriptionState, SUBSCRIPTION_TRANSITIONS, SUBSCRIBING)
    _initial = SUBSCRIBING
    _initial_value = SUBSCRIBING.value
    _by_value: ClassVar[dict[str, enum.StrEnum]] = {
        state.value: state for state in SubscriptionState
    }


@dataclass(frozen=True, slots=True)
class MuxStats:
    """A snapshot of a multiplexer, from ``Multiplexer.stats()``: counts from its journal.

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
