"""The connection lifecycle: one table, one machine, no I/O.

Rules of this module:

* Which state may follow which is written down once, in :data:`TRANSITIONS`.
  The machine that runs every connection is built from that table, and so are
  the state diagrams and the transition table in the docs.
* Nothing here awaits or touches a socket. The connection and pool coroutines
  do the I/O and, once its outcome is known, fire the event that records it.
  Callbacks only do bookkeeping: history, the DEBUG log line, and telling the
  pool (the observer) so that its counters follow.
* An event with no edge from the current state raises
  :class:`~aio_websocket_pool.InvalidTransitionError` and changes nothing.
* ``closed`` is terminal: a connection that closed is never reopened; the pool
  opens a new one in its slot.

Theory of operation: one ``transitions.Machine`` (synchronous, with
``auto_transitions=False``) is shared by every connection; each
:class:`ConnectionLifecycle` is a model whose ``state`` attribute the machine
moves. Models are not registered with the machine (``add_model``), which would
bind a dozen helper methods to each one and keep a list of every model alive;
events are fired through the machine's event objects instead.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple

from transitions import EventData, Machine, MachineError

from ._exceptions import InvalidTransitionError

logger: Final = logging.getLogger("aio_websocket_pool")

# transitions logs every step of every trigger, two of them at INFO: a pool
# under load would flood any application logging at INFO. Our own DEBUG line
# per transition says what happened, so transitions' chatter is raised to
# WARNING, unless the application already chose a level for it.
_transitions_logger = logging.getLogger("transitions.core")
if _transitions_logger.level == logging.NOTSET:
    _transitions_logger.setLevel(logging.WARNING)


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


@dataclass(frozen=True, slots=True)
class Edge:
    """One row of the transition table.

    Attributes:
        trigger: The event's name, a verb.
        sources: The states the event is allowed in.
        dest: The state the event leads to.
        cause: What makes the pool fire it, in words (for the docs).
    """

    trigger: str
    sources: tuple[State, ...]
    dest: State
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


class TransitionRecord(NamedTuple):
    """One entry of a connection's history. Immutable.

    A named tuple rather than a frozen dataclass: one is built for every
    transition, on the acquire/release path, and a frozen dataclass takes
    three times as long to build.

    Attributes:
        at: Wall-clock time of the transition (``time.time()``).
        connection_id: Which connection moved.
        trigger: The event that moved it.
        source: The state it left.
        dest: The state it entered.
        reason: Why, where the pool knows more than the event says (a close
            code, "ping timeout", ...). Never contains secrets or payloads.
    """

    at: float
    connection_id: str
    trigger: str
    source: State
    dest: State
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


#: Called after every transition with the lifecycle, the record of the move.
Observer = Callable[["ConnectionLifecycle", TransitionRecord], None]


class ConnectionLifecycle:
    """The state of one connection, its bounded history, and whom to tell.

    Args:
        connection_id: Shown in history records and log lines.
        history_size: How many transitions to keep, oldest dropped first.
        observer: Told of every transition after it happened (the pool's
            state index); ``None`` for a connection used on its own.
    """

    state: State
    _machine_state: str  # the machine's view of ``state``: what transitions reads and writes

    def __init__(
        self, connection_id: str, *, history_size: int, observer: Observer | None = None
    ) -> None:
        self.connection_id = connection_id
        self.state = INITIAL_STATE
        self._machine_state = INITIAL_STATE.value
        self.history: deque[TransitionRecord] = deque(maxlen=history_size)
        self.observer = observer

    def fire(self, trigger: str, reason: str | None = None) -> None:
        """Move along the edge named ``trigger``.

        Raises:
            InvalidTransitionError: No edge for ``trigger`` leaves the current
                state (or no such event exists); the state is unchanged.
        """
        event = _MACHINE.events.get(trigger)
        if event is None:
            raise InvalidTransitionError(self.state, trigger)
        try:
            event.trigger(self, reason=reason)
        except MachineError:
            raise InvalidTransitionError(self.state, trigger) from None

    def _after_state_change(self, event_data: EventData) -> None:
        # Bound by name in the machine below; runs once the state has changed.
        transition = event_data.transition
        assert transition is not None  # noqa: S101  (always set after a state change)
        self.state = _STATE_BY_VALUE[self._machine_state]
        record = TransitionRecord(
            time.time(),
            self.connection_id,
            event_data.event.name if event_data.event else "",
            _STATE_BY_VALUE[transition.source],
            self.state,
            event_data.kwargs.get("reason"),
        )
        self.history.append(record)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", record)
        if self.observer is not None:
            self.observer(self, record)


# The machine runs on the states' string values, not on the Enum: transitions
# looks an Enum state up by member name at every step, which costs a fifth of
# each transition (measured with cProfile). ConnectionLifecycle.state keeps
# the State member, set from the machine's string once the state changed.
_MACHINE: Final = Machine(
    model=None,
    states=[state.value for state in State],
    transitions=[
        {
            "trigger": edge.trigger,
            "source": [source.value for source in edge.sources],
            "dest": edge.dest.value,
        }
        for edge in TRANSITIONS
    ],
    initial=INITIAL_STATE.value,
    auto_transitions=False,
    send_event=True,
    model_attribute="_machine_state",
    after_state_change="_after_state_change",
)
