"""The pool's counters, derived from connection states in one place.

The pool keeps no counter of its own that could drift from what the
connections are. Instead :class:`StateIndex` files every live connection under
its current state, and moves it when (and only when) the lifecycle machine
reports a transition. Each counter is the size of one bucket; running totals
are counts of transitions by event. :meth:`StateIndex.check` recomputes all of
it from the connections themselves, for the tests.

What no state can tell (how long acquirers waited, why connections died,
what was drained) is counted in :class:`Totals`, at the one place in the pool
where each such thing happens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from ._fsm import BUSY, CLOSED, CONNECTING, DRAINING, IDLE, TRANSITIONS, State, TransitionRecord

logger = logging.getLogger("aio_websocket_pool")


class _HasState(Protocol):
    @property
    def state(self) -> State: ...


C = TypeVar("C", bound=_HasState)

#: Every event of the connection's table, counted from zero.
_TRIGGERS: Final = tuple(edge.trigger for edge in TRANSITIONS)


@dataclass(frozen=True, slots=True)
class Timing:
    """How long something took, summed over every time it happened.

    Attributes:
        count: How many times.
        total: Seconds, summed.
        max: The longest, in seconds.
    """

    count: int = 0
    total: float = 0.0
    max: float = 0.0

    @property
    def mean(self) -> float:
        """The average in seconds (0.0 before the first)."""
        return self.total / self.count if self.count else 0.0


#: Told of each measured duration: ``("acquire_wait" | "connect_time", seconds)``.
TimingListener = Callable[[str, float], None]


class Totals:
    """Running totals of what the pool saw, other than transitions.

    Plain mutable numbers, because :meth:`record` is on the acquire path: a
    frozen record per acquire would cost more than the acquire's bookkeeping.
    """

    __slots__ = (
        "_timings", "connections_lost", "health_checks_failed", "hooks_failed",
        "listeners", "messages_drained", "unsolicited_messages",
    )  # fmt: skip

    def __init__(self) -> None:
        self.connections_lost = 0
        self.health_checks_failed = 0
        self.hooks_failed = 0
        self.messages_drained = 0
        self.unsolicited_messages = 0
        self._timings: dict[str, list[float]] = {
            "acquire_wait": [0, 0.0, 0.0], "connect_time": [0, 0.0, 0.0],
        }  # fmt: skip
        self.listeners: list[TimingListener] = []

    def record(self, what: str, seconds: float) -> None:
        """Add one duration to ``what`` (``"acquire_wait"`` or ``"connect_time"``)."""
        timing = self._timings[what]
        timing[0] += 1
        timing[1] += seconds
        if seconds > timing[2]:  # noqa: PLR1730  (max() is a builtin's call, on every acquire)
            timing[2] = seconds
        if not self.listeners:
            return
        for listener in tuple(self.listeners):  # a copy: a listener that raises is removed
            try:
                listener(what, seconds)
            except Exception:
                # On the acquire path: raising here would strand a busy connection.
                self.listeners.remove(listener)
                logger.exception("timing listener %r raised; it was removed", listener)

    def timing(self, what: str) -> Timing:
        """A snapshot of the durations recorded for ``what``."""
        count, total, longest = self._timings[what]
        return Timing(int(count), total, longest)


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool, taken by :meth:`WebsocketConnectionPool.stats`.

    Attributes:
        connecting: Connections whose handshake is in flight.
        idle: Open connections ready to be handed out.
        busy: Connections held by a borrower.
        multiplexed: Of those, the ones a multiplexer (``pool.json_rpc()``,
            ``pool.multiplexed()``) holds.
        draining: Connections being drained before reuse.
        total: All of the above: the slots in use (never above ``max_connections``).
        max_connections: The pool's limit.
        waiting: Acquirers queued for a connection.
        opened: Handshakes that succeeded, since the pool was created.
        failed_connects: Connections that could not be opened (after retries).
        acquired: Times a connection was claimed for an acquirer (``acquire``
            transitions; a claim whose health check failed, or whose acquirer
            left, counts too).
        reused: Claims of a connection that had been claimed before.
        closed: Open connections retired, for any reason.
        connections_lost: Connections found closed by the peer or the network.
        health_checks_failed: Health-check pings that failed or timed out.
        hooks_failed: Hook calls that raised or timed out.
        messages_drained: Stray messages read by drains after a release.
        unsolicited_messages: Messages that arrived while a connection was
            idle, found before it was handed out (never given to the borrower).
        acquire_wait: Time from ``acquire()`` to the hand-out, for each
            successful acquire (health check and hooks included).
        connect_time: Time to open each new connection (retries and
            ``on_connect`` included), for each one that opened.
        name: The pool's ``name``.
    """

    connecting: int
    idle: int
    busy: int
    draining: int
    total: int
    max_connections: int
    waiting: int
    opened: int
    failed_connects: int
    acquired: int
    reused: int
    closed: int
    connections_lost: int = 0
    health_checks_failed: int = 0
    hooks_failed: int = 0
    messages_drained: int = 0
    unsolicited_messages: int = 0
    acquire_wait: Timing = Timing()
    connect_time: Timing = Timing()
    name: str = ""
    multiplexed: int = 0

    def __str__(self) -> str:
        return (
            f"connections: {self.connecting} connecting, {self.idle} idle, {self.busy} busy, "
            f"{self.draining} draining ({self.total}/{self.max_connections}) | "
            f"waiting: {self.waiting} | totals: {self.opened} opened, {self.acquired} acquired "
            f"({self.reused} reused), {self.failed_connects} failed, {self.closed} closed"
        )


class StateIndex(Generic[C]):
    """Live connections filed by state, and transition counts by event."""

    def __init__(self) -> None:
        self._buckets: dict[State, dict[C, None]] = {
            state: {} for state in State if state is not CLOSED
        }
        #: Transitions by event: a plain dict with every trigger of the table, not a
        #: Counter (a dict subclass misses the interpreter's fast path for ``+= 1``:
        #: a fifth of the cost of each move).
        self.events: dict[str, int] = dict.fromkeys(_TRIGGERS, 0)
        #: Connections not closed: the slots in use. Counted as they move, not
        #: summed over the buckets: the pool reads it on every grant of a new slot.
        self.total = 0
        self.reused = 0
        self._acquired_before: set[C] = set()

    def add(self, connection: C) -> None:
        """File a connection that was just created (in ``connecting``)."""
        assert connection.state is CONNECTING  # noqa: S101
        self._buckets[CONNECTING][connection] = None
        self.total += 1

    def move(self, connection: C, record: TransitionRecord) -> None:
        """Follow one transition; called for every transition of every connection."""
        _, _, trigger, source, dest, _ = record  # one step, not three attribute reads
        buckets = self._buckets
        del buckets[source][connection]
        if dest is CLOSED:
            self._acquired_before.discard(connection)
            self.total -= 1
        else:
            buckets[dest][connection] = None
        self.events[trigger] += 1
        if trigger == "acquire":
            if connection in self._acquired_before:
                self.reused += 1
            else:
                self._acquired_before.add(connection)

    def count(self, state: State) -> int:
        """How many live connections are in ``state`` (0 for ``closed``)."""
        return 0 if state is CLOSED else len(self._buckets[state])

    def most_recent(self, state: State) -> C | None:
        """The connection that entered ``state`` last, or None (LIFO keeps hot ones hot)."""
        bucket = self._buckets[state]
        return next(reversed(bucket)) if bucket else None

    def oldest(self, state: State) -> C | None:
        """The connection that entered ``state`` first, or None."""
        bucket = self._buckets[state]
        return next(iter(bucket)) if bucket else None

    def in_state(self, state: State) -> tuple[C, ...]:
        """A snapshot of the connections in ``state``."""
        return tuple(self._buckets[state])

    def __iter__(self) -> Iterator[C]:
        for bucket in self._buckets.values():
            yield from bucket

    def check(self) -> None:
        """Assert that every connection is filed under the state it is in.

        Raises:
            AssertionError: The index and the connections disagree.
        """
        for state, bucket in self._buckets.items():
            for connection in bucket:
                if connection.state is not state:
                    raise AssertionError(
                        f"{connection!r} is filed as {state} but is {connection.state}"
                    )
        filed = sum(len(bucket) for bucket in self._buckets.values())
        if filed != self.total:
            raise AssertionError(f"{filed} connections are filed, but the total is {self.total}")


class _Lendable(_HasState, Protocol):
    _multiplexed: bool  # a multiplexer holds its lease


def snapshot(
    index: StateIndex[Any],
    totals: Totals,
    *,
    waiting: int,
    max_connections: int,
    name: str,
) -> PoolStats:
    """The :class:`PoolStats` of a pool whose connections ``index`` files.

    ``waiting`` is counted by the caller, not scanned here: stats may be read
    from another thread (an OpenTelemetry reader) while the event loop changes
    the line.
    """
    busy: tuple[_Lendable, ...] = index.in_state(BUSY)
    return PoolStats(
        connecting=index.count(CONNECTING),
        idle=index.count(IDLE),
        busy=len(busy),
        multiplexed=sum(connection._multiplexed for connection in busy),
        draining=index.count(DRAINING),
        total=index.total,
        max_connections=max_connections,
        waiting=waiting,
        opened=index.events["open"],
        failed_connects=index.events["fail"],
        acquired=index.events["acquire"],
        reused=index.reused,
        closed=index.events["close"],
        connections_lost=totals.connections_lost,
        health_checks_failed=totals.health_checks_failed,
        hooks_failed=totals.hooks_failed,
        messages_drained=totals.messages_drained,
        unsolicited_messages=totals.unsolicited_messages,
        acquire_wait=totals.timing("acquire_wait"),
        connect_time=totals.timing("connect_time"),
        name=name,
    )
