"""The connection lifecycle: one table, one machine, no I/O; and the lean machinery that runs it.

Rules of this module:

* Which state may follow which is written down once, in :data:`TRANSITIONS`.
  The machine that runs every connection is built from that table, and so are
  the state diagrams and the transition table in the docs.
* Nothing here awaits or touches a socket. The connection and pool coroutines
  do the I/O and, once its outcome is known, fire the event that records it.
  What runs after a move is bookkeeping only: history, the DEBUG log line,
  and telling the pool (the observer) so that its counters follow.
* An event with no edge from the current state raises
  :class:`~aio_websocket_pool.InvalidTransitionError` and changes nothing.
* ``closed`` is terminal: a connection that closed is never reopened; the pool
  opens a new one in its slot.

Theory of operation: one ``transitions.Machine`` (synchronous, with
``auto_transitions=False``) is shared by every connection; each
:class:`ConnectionLifecycle` is a model whose ``_machine_state`` attribute the
machine moves. Models are not registered with the machine (``add_model``), which
would bind a dozen helper methods to each one and keep a list of every model
alive; events are fired through the machine's event objects instead.

Those event objects are :class:`_LeanEvent`, plugged in through transitions'
own extension point (``Machine.event_cls``): transitions builds and validates
the machine from the table as usual, and a fired event looks its edge up in
the table transitions built (``Event.transitions``), moves the state and does
our bookkeeping, skipping transitions' generic path (``EventData``, a
``partial``, the callback lists, its logger), none of whose features the table
uses. :class:`_LeanMachine` refuses to be built with any of them, so none can
be declared and silently skipped.

The same machinery runs the other lifecycles of the package (a multiplexed
request's, a subscription's, in :mod:`._mux_fsm`): :func:`lean_events` builds
the events of any table of :class:`Edge` rows over a ``StrEnum`` of states,
and :class:`LeanModel` is what they move.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, NamedTuple, cast

from transitions import Event, Machine, MachineError

from ._exceptions import InvalidTransitionError

logger: Final = logging.getLogger("aio_websocket_pool")
_DEBUG: Final = logging.DEBUG
# Bound once: each transition would otherwise look up a module and an attribute for each.
_wall_clock: Final = time.time
_new_tuple: Final = tuple.__new__


class State(enum.StrEnum):
    """Where a connection is in its life. The values are the names the docs use."""

    CONNECTING = "connecting"
    """The opening handshake is in flight (retries included). Holds a pool slot."""
    IDLE = "idle"
    """Open and parked in the pool, ready to be handed out."""
    BUSY = "busy"
    """Handed out to exactly one borrower."""
    DRAINING = "draining"
    """Given back; stray server messages are read and dropped before reuse."""
    CLOSED = "closed"
    """Retired for good. Frees its slot."""


if TYPE_CHECKING:  # a default for the type parameter (PEP 696), seen by the type checker only
    from typing_extensions import TypeVar

    S = TypeVar("S", bound=enum.StrEnum, default=State)
else:  # typing_extensions is no dependency, and a default changes nothing at run time
    from typing import TypeVar

    S = TypeVar("S", bound=enum.StrEnum)


@dataclass(frozen=True, slots=True)
class Edge(Generic[S]):
    """One row of a transition table (a bare ``Edge`` is one of the connection's).

    Attributes:
        trigger: The event's name, a verb.
        sources: The states the event is allowed in.
        dest: The state the event leads to.
        cause: What makes the pool fire it, in words (for the docs).
    """

    trigger: str
    sources: tuple[S, ...]
    dest: S
    cause: str


CONNECTING, IDLE, BUSY, DRAINING, CLOSED = State

#: The single source of truth for the lifecycle of a pooled connection.
TRANSITIONS: Final[tuple[Edge, ...]] = (
    Edge("open", (CONNECTING,), IDLE, "the opening handshake succeeded"),
    Edge("fail", (CONNECTING,), CLOSED,
         "the handshake or on_connect failed (after the retries), timed out, or was cancelled"),
    Edge("acquire", (IDLE,), BUSY, "a borrower was handed the connection"),
    Edge("release", (BUSY,), IDLE, "the borrower gave it back and no draining is asked for"),
    Edge("drain", (BUSY,), DRAINING,
         "the borrower gave it back and check_server_data_on_release or on_release is set"),
    Edge("settle", (DRAINING,), IDLE,
         "on_release returned and the drain saw drain_quiet_period of silence"),
    Edge("close", (IDLE, BUSY, DRAINING), CLOSED,
         "retired: idle timeout, max_lifetime, expire_connections(), failed health check "
         "or hook, drain rejected, flooded or timed out, force_remove, peer closed, "
         "closed by its user, room made by acquire_new(), or the pool closing or closed"),
)  # fmt: skip

INITIAL_STATE: Final = CONNECTING
_STATE_BY_VALUE: Final = {state.value: state for state in State}


class TransitionRecord(NamedTuple, Generic[S]):
    """One entry of a connection's history (or a request's, a subscription's). Immutable.

    A named tuple rather than a frozen dataclass: one is built for every
    transition, on the acquire/release path, and a frozen dataclass takes
    three times as long to build.

    Attributes:
        at: Wall-clock time of the transition (``time.time()``).
        connection_id: Which connection moved (or which request or
            subscription: their ids start with their multiplexer's).
        trigger: The event that moved it.
        source: The state it left.
        dest: The state it entered.
        reason: Why, where the pool knows more than the event says (a close
            code, "ping timeout", ...). Never contains secrets or payloads.
    """

    at: float
    connection_id: str
    trigger: str
    source: S
    dest: S
    reason: str | None = None

    def __str__(self) -> str:  # a tuple would show its fields raw
        stamp = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds")
        line = f"{stamp} {self.connection_id} {self.trigger}: {self.source} -> {self.dest}"
        return f"{line} ({self.reason})" if self.reason else line

    def __repr__(self) -> str:
        # Printing conn.history (a tuple) shows its items' reprs: make them the readable line.
        return f"<TransitionRecord {self}>"

    def as_dict(self) -> dict[str, str | None]:
        """The record as JSON-ready fields; ``time`` is ISO 8601 UTC to the microsecond."""
        return {
            "time": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="microseconds"),
            "connection_id": self.connection_id,
            "trigger": self.trigger,
            "source": self.source.value,
            "dest": self.dest.value,
            "reason": self.reason,
        }

    def to_json(self) -> str:
        """One line of JSON (no newline in it), for a JSON-lines history export."""
        return json.dumps(self.as_dict(), ensure_ascii=False)


#: Called after every transition with the lifecycle's subject (the lifecycle itself,
#: or the connection it belongs to) and the record of the move.
Observer = Callable[[Any, TransitionRecord], None]


class LeanModel:
    """What a lean machine moves: a state, and what to do once it moved.

    Subclasses set ``_events`` (from :func:`lean_events`, for their table) and
    define ``_after_state_change(trigger, reason)``, which the event calls
    once ``_machine_state`` holds the new state's value.
    """

    _events: ClassVar[Mapping[str, _LeanEvent]]
    state: enum.StrEnum
    _machine_state: str  # the machine's view of ``state``: what transitions reads and writes

    def fire(self, trigger: str, reason: str | None = None) -> None:
        """Move along the edge named ``trigger``.

        Raises:
            InvalidTransitionError: No edge for ``trigger`` leaves the current
                state (or no such event exists); the state is unchanged.
        """
        event = self._events.get(trigger)
        if event is None:
            raise InvalidTransitionError(self.state, trigger)
        try:
            event.trigger(self, reason)
        except MachineError:
            raise InvalidTransitionError(self.state, trigger) from None

    def _after_state_change(self, trigger: str, reason: str | None) -> None:
        raise NotImplementedError


class ConnectionLifecycle(LeanModel):
    """The state of one connection, its bounded history, and whom to tell.

    Args:
        connection_id: Shown in history records and log lines.
        history_size: How many transitions to keep, oldest dropped first.
        observer: Told of every transition after it happened (the pool's
            state index); ``None`` for a connection used on its own.
        subject: What the observer is told moved: the connection, so that the
            pool's index is called directly, with no adapter in between (two
            calls on every transition). Default: this lifecycle.
    """

    state: State

    def __init__(
        self,
        connection_id: str,
        *,
        history_size: int,
        observer: Observer | None = None,
        subject: object = None,
    ) -> None:
        self.connection_id = connection_id
        self.state = INITIAL_STATE
        self._machine_state = INITIAL_STATE.value
        # A ring in a plain list, not a deque(maxlen=...): a deque is 760 bytes from the
        # start (one 64-slot block), a list grows with what it keeps, and most
        # connections keep a few records (W7: memory per idle pooled connection).
        self._records: list[TransitionRecord] = []
        self._history_size = history_size
        self._oldest = 0  # where the ring starts, once full
        self.observer = observer
        self.subject = self if subject is None else subject

    @property
    def history(self) -> tuple[TransitionRecord, ...]:
        """The transitions kept, oldest first (at most ``history_size``)."""
        records, oldest = self._records, self._oldest
        return tuple(records[oldest:] + records[:oldest])

    def _after_state_change(self, trigger: str, reason: str | None) -> None:
        # Called by _LeanEvent once it moved _machine_state; ``state`` still holds the source.
        source = self.state
        self.state = dest = _STATE_BY_VALUE[self._machine_state]
        # tuple.__new__, not TransitionRecord(...): the named tuple's own __new__ is a Python
        # function around this same call, and costs 0.1 µs more per record.
        fields = (_wall_clock(), self.connection_id, trigger, source, dest, reason)
        record = _new_tuple(TransitionRecord, fields)
        records = self._records
        if len(records) < self._history_size:
            records.append(record)
        else:  # full: the oldest record makes way
            oldest = self._oldest
            records[oldest] = record
            self._oldest = (oldest + 1) % self._history_size
        if logger.isEnabledFor(_DEBUG):
            logger.debug("%s", record)
        if self.observer is not None:
            self.observer(self.subject, record)


class _LeanEvent(Event):
    """An event of the lifecycle machine, fired without transitions' generic path.

    Why it exists: ``Event.trigger`` wraps every call in an ``EventData`` and a
    ``partial``, looks up seven (empty) callback lists and calls its logger
    eight times. An acquire + release pair of :meth:`ConnectionLifecycle.fire`
    cost 17.3-18.4 µs that way, and costs 1.1-1.3 µs through this class, both
    history records included (``timeit``, best of 15 x 20,000 pairs in each of
    three runs, DEBUG off, no observer; the 2-core benchmark machine, CPython
    3.11, transitions 0.9.3). It does what the stock path does for a table
    without conditions or callbacks, and nothing else: :class:`_LeanMachine`
    makes sure the table has none, and ``tests/test_fsm.py`` fires every
    (state, event) pair through both and compares them.
    """

    # Narrower than Event.trigger(model, *args, **kwargs) on purpose: its only caller is
    # LeanModel.fire, and packing the reason into args and kwargs costs per fire.
    def trigger(  # type: ignore[override]
        self, model: LeanModel, reason: str | None = None
    ) -> bool:
        """Move ``model`` along this event's edge from its state, then record the move.

        Raises:
            MachineError: No edge of this event leaves the model's state, as
                ``Event.trigger`` raises it; nothing changed.
        """
        # transitions keeps the edges by source state name; with no conditions
        # the first edge is the one the stock path takes.
        edges = self.transitions.get(model._machine_state)
        if not edges:
            raise MachineError(
                f"{self.machine.name}Can't trigger event {self.name} "
                f"from state {model._machine_state}!"
            )
        model._machine_state = edges[0].dest  # type: ignore[assignment]  # None: refused
        model._after_state_change(self.name, reason)
        return True


class _LeanMachine(Machine):
    """A ``transitions.Machine`` whose events are :class:`_LeanEvent`.

    Raises:
        ValueError: At build time, if the machine declares anything the lean
            event would skip: a condition, a callback of any kind, queued
            processing, ignored invalid triggers, an internal transition, a
            registered model or a model attribute other than the lifecycle's.
    """

    event_cls = _LeanEvent

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        skipped = list(_what_a_lean_event_skips(self))
        if skipped:
            raise ValueError(
                f"{type(self).__name__} fires events without transitions' conditions and "
                f"callbacks, so it cannot run a machine that declares {'; '.join(skipped)}"
            )


_MODEL_ATTRIBUTE: Final = "_machine_state"
_MACHINE_CALLBACKS: Final = (
    "prepare_event",
    "before_state_change",
    "after_state_change",
    "finalize_event",
    "on_exception",
    "on_final",
)
_STATE_CALLBACKS: Final = ("on_enter", "on_exit")
_TRANSITION_CALLBACKS: Final = ("conditions", "prepare", "before", "after")  # unless: conditions


def _what_a_lean_event_skips(machine: Machine) -> Iterator[str]:
    """What ``machine`` declares that :class:`_LeanEvent` would not honour, in words."""
    yield from (f"machine {name}" for name in _MACHINE_CALLBACKS if getattr(machine, name))
    if machine.has_queue:
        yield "queued=True"
    if machine.ignore_invalid_triggers:
        yield "ignore_invalid_triggers"
    if machine.models:
        yield "registered models"
    if machine.model_attribute != _MODEL_ATTRIBUTE:
        yield f"model_attribute {machine.model_attribute!r} (the lifecycle's: {_MODEL_ATTRIBUTE!r})"
    for state in machine.states.values():
        yield from (f"{name} on state {state.name!r}" for name in _STATE_CALLBACKS
                    if getattr(state, name))  # fmt: skip
        if state.ignore_invalid_triggers:
            yield f"ignore_invalid_triggers on state {state.name!r}"
    for event in machine.events.values():
        for edges in event.transitions.values():
            for edge in edges:
                where = f"{event.name!r} from {edge.source!r}"
                if edge.dest is None:
                    yield f"internal transition {where}"
                yield from (f"{name} on {where}" for name in _TRANSITION_CALLBACKS
                            if getattr(edge, name))  # fmt: skip


def _machine_config(
    states: type[enum.StrEnum] = State,
    edges: tuple[Edge[Any], ...] = TRANSITIONS,
    initial: enum.StrEnum = INITIAL_STATE,
) -> dict[str, Any]:
    """A lean machine's arguments, from a table (by default :data:`TRANSITIONS`).

    The machine runs on the states' string values, not on the Enum:
    transitions looks an Enum state up by member name at every step, which
    cost a fifth of each stock trigger (measured with cProfile).
    ConnectionLifecycle.state keeps the State member, set from the machine's
    string once the state changed.
    """
    return {
        "model": None,
        "states": [state.value for state in states],
        "transitions": [
            {
                "trigger": edge.trigger,
                "source": [source.value for source in edge.sources],
                "dest": edge.dest.value,
            }
            for edge in edges
        ],
        "initial": initial.value,
        "auto_transitions": False,
        "model_attribute": _MODEL_ATTRIBUTE,
    }


def lean_events(
    states: type[enum.StrEnum], edges: tuple[Edge[Any], ...], initial: enum.StrEnum
) -> Mapping[str, _LeanEvent]:
    """The events of a lean machine built from ``edges``, by trigger (a model's ``_events``).

    Raises:
        ValueError: transitions refuses the table (an unknown state, ...).
    """
    machine = _LeanMachine(**_machine_config(states, edges, initial))
    # Machine.event_cls made every event one of ours: fire() calls _LeanEvent.trigger's signature.
    return cast("Mapping[str, _LeanEvent]", machine.events)  # each event keeps its machine


_EVENTS: Final = lean_events(State, TRANSITIONS, INITIAL_STATE)
_MACHINE: Final = cast("_LeanMachine", next(iter(_EVENTS.values())).machine)
ConnectionLifecycle._events = _EVENTS
