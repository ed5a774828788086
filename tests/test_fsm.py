"""The connection lifecycle machine, driven synchronously from its own table.

Covers :mod:`aio_websocket_pool._fsm` without any I/O, in the style of h11's
state tests: every legal (trigger, source) pair of :data:`TRANSITIONS` is fired
from a lifecycle walked to ``source`` along a path derived from the table, and
every pair that is not in the table is refused with
:class:`~aio_websocket_pool.InvalidTransitionError` and changes nothing. Also:
the bounded history, frozen and readable records, the observer, the shape of
the table itself, and the DEBUG log line.

The lifecycle fires its events through a lean ``transitions.Event`` subclass:
every (state, event) pair is also fired through the stock ``Event.trigger`` of
a stock ``Machine`` built from the same arguments, and the two must agree; and
a lean machine must refuse to be built with anything the lean event skips.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transitions import EventData, Machine, MachineError

from aio_websocket_pool import TRANSITIONS, Edge, InvalidTransitionError, State, TransitionRecord
from aio_websocket_pool._fsm import (
    _EVENTS,
    _MACHINE,
    INITIAL_STATE,
    ConnectionLifecycle,
    _LeanEvent,
    _LeanMachine,
    _machine_config,
)

LOGGER_NAME = "aio_websocket_pool"
CONNECTION_ID = "conn-test"
UNKNOWN_TRIGGERS = ("explode", "to_IDLE", "to_closed", "")
"""Not events of the machine: a made-up verb, auto-transitions as ``transitions`` would
name them (by member name) or as one might guess, and the empty name."""


# -- helpers derived from the table ------------------------------------------------


def outgoing(state: State) -> list[tuple[str, State]]:
    """The (trigger, dest) pairs that leave ``state``, in table order."""
    return [(edge.trigger, edge.dest) for edge in TRANSITIONS if state in edge.sources]


def shortest_paths(start: State) -> dict[State, tuple[str, ...]]:
    """Breadth-first search over the table: the triggers that lead from ``start`` to each
    reachable state (``start`` itself maps to the empty path)."""
    paths: dict[State, tuple[str, ...]] = {start: ()}
    queue: deque[State] = deque([start])
    while queue:
        state = queue.popleft()
        for trigger, dest in outgoing(state):
            if dest not in paths:
                paths[dest] = (*paths[state], trigger)
                queue.append(dest)
    return paths


PATHS_FROM_INITIAL = shortest_paths(INITIAL_STATE)
TRIGGERS = tuple(dict.fromkeys(edge.trigger for edge in TRANSITIONS))
LEGAL = [(edge, source) for edge in TRANSITIONS for source in edge.sources]
ILLEGAL = [
    (trigger, state)
    for state in State
    for trigger in TRIGGERS + UNKNOWN_TRIGGERS
    if not any(edge.trigger == trigger and state in edge.sources for edge in TRANSITIONS)
]


def lifecycle_in(
    state: State,
    *,
    history_size: int = 32,
    observer: list[tuple[ConnectionLifecycle, TransitionRecord]] | None = None,
) -> ConnectionLifecycle:
    """A fresh lifecycle walked to ``state`` by legal events only."""

    def tell(lifecycle: ConnectionLifecycle, record: TransitionRecord) -> None:
        assert observer is not None
        observer.append((lifecycle, record))

    lifecycle = ConnectionLifecycle(
        CONNECTION_ID,
        history_size=history_size,
        observer=None if observer is None else tell,
    )
    for trigger in PATHS_FROM_INITIAL[state]:
        lifecycle.fire(trigger)
    assert lifecycle.state is state
    return lifecycle


# -- legal transitions -----------------------------------------------------------


@pytest.mark.parametrize("reason", [None, "close code 1001"], ids=["no-reason", "reason"])
@pytest.mark.parametrize(
    ("edge", "source"),
    LEGAL,
    ids=[f"{edge.trigger}-from-{source}" for edge, source in LEGAL],
)
def test_legal_transition(edge: Edge, source: State, reason: str | None) -> None:
    lifecycle = lifecycle_in(source)
    walked = len(lifecycle.history)
    before = time.time()

    lifecycle.fire(edge.trigger, reason)

    after = time.time()
    assert lifecycle.state is edge.dest
    assert len(lifecycle.history) == walked + 1
    record = lifecycle.history[-1]
    assert (
        record.trigger,
        record.source,
        record.dest,
        record.reason,
        record.connection_id,
    ) == (edge.trigger, source, edge.dest, reason, CONNECTION_ID)
    assert type(record.source) is State
    assert type(record.dest) is State
    assert before <= record.at <= after


def test_new_lifecycle_starts_connecting_with_no_history() -> None:
    lifecycle = ConnectionLifecycle(CONNECTION_ID, history_size=4)
    assert lifecycle.state is State.CONNECTING
    assert list(lifecycle.history) == []


# -- illegal transitions ---------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "state"),
    ILLEGAL,
    ids=[f"{trigger or 'empty'}-from-{state}" for trigger, state in ILLEGAL],
)
def test_illegal_transition_is_refused_and_changes_nothing(trigger: str, state: State) -> None:
    calls: list[tuple[ConnectionLifecycle, TransitionRecord]] = []
    lifecycle = lifecycle_in(state, observer=calls)
    history_before = list(lifecycle.history)
    calls.clear()

    with pytest.raises(InvalidTransitionError) as caught:
        lifecycle.fire(trigger, "some reason")

    error = caught.value
    assert error.state == state.value
    assert error.event == trigger
    assert repr(trigger) in str(error)
    assert repr(state.value) in str(error)
    assert lifecycle.state is state
    assert list(lifecycle.history) == history_before
    assert calls == []


def test_every_trigger_is_refused_once_closed() -> None:
    # Spelled out apart from the table-wide test: closed is terminal.
    refused = sorted(trigger for trigger, state in ILLEGAL if state is State.CLOSED)
    assert refused == sorted(TRIGGERS + UNKNOWN_TRIGGERS)


# -- history -----------------------------------------------------------------------

#: A legal walk that visits every edge except ``fail``, seven transitions long.
LONG_WALK = ("open", "acquire", "release", "acquire", "drain", "settle", "close")


@pytest.mark.parametrize("history_size", [1, 2, 3, 6, 7, 10])
def test_history_is_bounded_and_drops_oldest_first(history_size: int) -> None:
    lifecycle = ConnectionLifecycle(CONNECTION_ID, history_size=history_size)
    for trigger in LONG_WALK:
        lifecycle.fire(trigger)

    kept = LONG_WALK[-history_size:]
    assert [record.trigger for record in lifecycle.history] == list(kept)
    assert lifecycle.history[-1].dest is State.CLOSED


@given(history_size=st.integers(1, 12), cycles=st.integers(0, 40))
def test_history_keeps_the_last_records_in_order_however_often_it_wraps(
    history_size: int, cycles: int
) -> None:
    """The ring keeps what a ``deque(maxlen=history_size)`` of the same records would."""
    lifecycle = ConnectionLifecycle(CONNECTION_ID, history_size=history_size)
    model: deque[tuple[str, str]] = deque(maxlen=history_size)
    for number, trigger in enumerate(("open", *("acquire", "release") * cycles)):
        lifecycle.fire(trigger, reason=str(number))  # the reason numbers each record
        model.append((trigger, str(number)))
        assert [(record.trigger, record.reason) for record in lifecycle.history] == list(model)
    stamps = [record.at for record in lifecycle.history]
    assert stamps == sorted(stamps)


def test_history_records_chain_source_to_previous_dest() -> None:
    lifecycle = ConnectionLifecycle(CONNECTION_ID, history_size=len(LONG_WALK))
    for trigger in LONG_WALK:
        lifecycle.fire(trigger)

    records = list(lifecycle.history)
    assert records[0].source is INITIAL_STATE
    for previous, current in itertools.pairwise(records):
        assert current.source is previous.dest
        assert current.at >= previous.at


@pytest.mark.parametrize("field", TransitionRecord._fields)
def test_records_are_frozen(field: str) -> None:
    lifecycle = lifecycle_in(State.IDLE)
    record = lifecycle.history[-1]
    with pytest.raises(AttributeError):
        setattr(record, field, None)
    assert lifecycle.history[-1] == record


RECORD_FORMATS = [
    (
        TransitionRecord(0.0, "conn-7", "open", State.CONNECTING, State.IDLE),
        "1970-01-01T00:00:00.000+00:00 conn-7 open: connecting -> idle",
    ),
    (
        TransitionRecord(1_700_000_000.25, "conn-12", "close", State.IDLE, State.CLOSED, "idle"),
        "2023-11-14T22:13:20.250+00:00 conn-12 close: idle -> closed (idle)",
    ),
    (
        TransitionRecord(
            86_400.5, "conn-3", "fail", State.CONNECTING, State.CLOSED, "HTTP 503 after 3 tries"
        ),
        "1970-01-02T00:00:00.500+00:00 conn-3 fail: connecting -> closed (HTTP 503 after 3 tries)",
    ),
]


@pytest.mark.parametrize(
    ("record", "expected"),
    RECORD_FORMATS,
    ids=["no-reason", "reason", "reason-with-spaces"],
)
def test_record_str_format(record: TransitionRecord, expected: str) -> None:
    assert str(record) == expected


RECORD_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00) "
    r"(?P<id>\S+) (?P<trigger>\w+): (?P<source>\w+) -> (?P<dest>\w+)"
    r"(?: \((?P<reason>.+)\))?$"
)


@pytest.mark.parametrize("reason", [None, "ping timeout"], ids=["no-reason", "reason"])
def test_str_of_a_fired_record_is_one_readable_line(reason: str | None) -> None:
    lifecycle = lifecycle_in(State.BUSY)
    lifecycle.fire("close", reason)
    line = str(lifecycle.history[-1])

    assert "\n" not in line
    match = RECORD_LINE.match(line)
    assert match is not None, line
    assert match.group("id", "trigger", "source", "dest", "reason") == (
        CONNECTION_ID,
        "close",
        "busy",
        "closed",
        reason,
    )
    stamp = datetime.fromisoformat(match.group("stamp"))
    assert stamp.tzinfo is not None
    assert abs(stamp.timestamp() - lifecycle.history[-1].at) < 0.001
    assert abs(stamp - datetime.now(UTC)).total_seconds() < 60


# -- observer ----------------------------------------------------------------------


def test_observer_is_told_once_per_transition_after_the_state_changed() -> None:
    seen: list[tuple[State, State, int, TransitionRecord]] = []

    def observer(lifecycle: ConnectionLifecycle, record: TransitionRecord) -> None:
        # What the observer sees must already be the new state and the new record.
        seen.append((lifecycle.state, record.dest, len(lifecycle.history), record))
        assert lifecycle.history[-1] is record

    lifecycle = ConnectionLifecycle(CONNECTION_ID, history_size=len(LONG_WALK), observer=observer)
    for trigger in LONG_WALK:
        lifecycle.fire(trigger)

    assert len(seen) == len(LONG_WALK)
    assert [record for *_, record in seen] == list(lifecycle.history)
    for number, (state_seen, dest, history_length, record) in enumerate(seen, start=1):
        assert state_seen is dest
        assert history_length == number
        assert record.trigger == LONG_WALK[number - 1]


def test_observer_receives_the_lifecycle_that_moved() -> None:
    calls: list[tuple[ConnectionLifecycle, TransitionRecord]] = []
    lifecycle = lifecycle_in(State.CONNECTING, observer=calls)
    lifecycle.fire("open", "handshake ok")
    assert len(calls) == 1
    told, record = calls[0]
    assert told is lifecycle
    assert (record.trigger, record.reason) == ("open", "handshake ok")


@pytest.mark.parametrize("trigger", ["settle", "explode"], ids=["known", "unknown"])
def test_observer_is_not_told_of_an_illegal_trigger(trigger: str) -> None:
    calls: list[tuple[ConnectionLifecycle, TransitionRecord]] = []
    lifecycle = lifecycle_in(State.IDLE, observer=calls)
    calls.clear()
    with pytest.raises(InvalidTransitionError):
        lifecycle.fire(trigger)
    assert calls == []


# -- the table -----------------------------------------------------------------------


def test_initial_state_is_connecting() -> None:
    assert INITIAL_STATE is State.CONNECTING


def test_every_state_is_reachable_from_the_initial_one() -> None:
    assert set(PATHS_FROM_INITIAL) == set(State)


def test_closed_has_no_outgoing_edge() -> None:
    assert outgoing(State.CLOSED) == []


@pytest.mark.parametrize("state", [s for s in State if s is not State.CLOSED], ids=str)
def test_every_live_state_can_reach_closed(state: State) -> None:
    assert State.CLOSED in shortest_paths(state)


@pytest.mark.parametrize("state", [s for s in State if s is not State.CLOSED], ids=str)
def test_every_live_state_can_be_retired_in_one_step(state: State) -> None:
    # A connection is retired (idle timeout, failed ping, close_all) from wherever it
    # is, without first walking through other states.
    assert State.CLOSED in {dest for _, dest in outgoing(state)}


def test_trigger_names_are_unique() -> None:
    names = [edge.trigger for edge in TRANSITIONS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("edge", TRANSITIONS, ids=[edge.trigger for edge in TRANSITIONS])
def test_trigger_is_a_verb_not_a_state(edge: Edge) -> None:
    # A base-form verb: one lowercase word, not a participle ("closed",
    # "connecting") and not the name of a state.
    assert re.fullmatch(r"[a-z]+", edge.trigger), edge.trigger
    assert not edge.trigger.endswith(("ed", "ing")), edge.trigger
    assert edge.trigger not in {state.value for state in State}


@pytest.mark.parametrize("edge", TRANSITIONS, ids=[edge.trigger for edge in TRANSITIONS])
def test_edge_is_well_formed(edge: Edge) -> None:
    assert edge.sources, "an edge must leave at least one state"
    assert len(set(edge.sources)) == len(edge.sources)
    assert all(type(source) is State for source in edge.sources)
    assert type(edge.dest) is State
    assert edge.dest not in edge.sources, "no self-loops: every event moves the connection"
    assert edge.cause.strip()


# -- logging -----------------------------------------------------------------------


def test_a_transition_logs_one_debug_line_with_the_connection_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lifecycle = lifecycle_in(State.IDLE)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        lifecycle.fire("acquire", "borrowed")

    ours = [record for record in caplog.records if record.name == LOGGER_NAME]
    assert len(ours) == 1
    line = ours[0]
    assert line.levelno == logging.DEBUG
    message = line.getMessage()
    assert "\n" not in message
    assert CONNECTION_ID in message
    assert "acquire: idle -> busy" in message
    assert message == str(lifecycle.history[-1])


def test_transitions_log_nothing_at_info_or_above(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        lifecycle = ConnectionLifecycle(CONNECTION_ID, history_size=8)
        for trigger in LONG_WALK:
            lifecycle.fire(trigger, "why not")

    ours = [record for record in caplog.records if record.name == LOGGER_NAME]
    assert len(ours) == len(LONG_WALK)
    assert [record for record in ours if record.levelno >= logging.INFO] == []


def test_an_illegal_trigger_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    lifecycle = lifecycle_in(State.CLOSED)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME), pytest.raises(InvalidTransitionError):
        lifecycle.fire("open")
    assert [record for record in caplog.records if record.name == LOGGER_NAME] == []


def test_transitions_chatter_stays_out_of_info_logs(caplog: pytest.LogCaptureFixture) -> None:
    """transitions' own trigger logs each step, two at INFO: the lean event never calls it."""
    lifecycle = ConnectionLifecycle("c-quiet", history_size=4)
    with caplog.at_level(logging.DEBUG):
        lifecycle.fire("open")
        lifecycle.fire("acquire")
    assert [r for r in caplog.records if r.name.startswith("transitions")] == []
    assert [r.levelno for r in caplog.records if r.name == "aio_websocket_pool"] == [
        logging.DEBUG,
        logging.DEBUG,
    ]


# -- the lean event against transitions' stock one -----------------------------------


def _stock_moved(event_data: EventData) -> None:
    """The stock machine's after_state_change: what moved, as transitions saw it."""
    model, transition = event_data.model, event_data.transition
    assert isinstance(model, SimpleNamespace)
    assert transition is not None
    move = (event_data.event.name, State(transition.source), State(model._machine_state))
    model.moves.append((*move, event_data.kwargs["reason"]))


#: transitions' own Machine and Event, from the arguments the lifecycle's machine is built with.
STOCK = Machine(**_machine_config(), send_event=True, after_state_change=_stock_moved)
EVERY_PAIR = [(state, trigger) for state in State for trigger in TRIGGERS + UNKNOWN_TRIGGERS]


def stock_fire(state: State, trigger: str, reason: str | None) -> tuple[State, object]:
    """Fire ``trigger`` from ``state`` through ``transitions.Event.trigger``.

    Returns:
        The state afterwards, and the move (trigger, source, dest, reason) or
        ``"refused"``.
    """
    model = SimpleNamespace(_machine_state=state.value, moves=[])
    event = STOCK.events.get(trigger)
    try:
        if event is None:  # no such event: the stock machine has no trigger to refuse it with
            return state, "refused"
        event.trigger(model, reason=reason)
    except MachineError:
        return State(model._machine_state), "refused"
    (move,) = model.moves
    return State(model._machine_state), move


@pytest.mark.parametrize("reason", [None, "close code 1001"], ids=["no-reason", "reason"])
@pytest.mark.parametrize(
    ("state", "trigger"),
    EVERY_PAIR,
    ids=[f"{trigger or 'empty'}-from-{state}" for state, trigger in EVERY_PAIR],
)
def test_lean_event_does_what_the_stock_event_does(
    state: State, trigger: str, reason: str | None
) -> None:
    lifecycle = lifecycle_in(state)
    walked = len(lifecycle.history)
    try:
        lifecycle.fire(trigger, reason)
    except InvalidTransitionError:
        ours: object = "refused"
        assert len(lifecycle.history) == walked
    else:
        record = lifecycle.history[-1]
        ours = (record.trigger, record.source, record.dest, record.reason)

    assert (lifecycle.state, ours) == stock_fire(state, trigger, reason)
    # The machine reads the state the lean event moved, as it reads any model's.
    assert _MACHINE.get_model_state(lifecycle).name == lifecycle.state.value


@pytest.mark.parametrize(
    ("trigger", "state"),
    [(trigger, state) for trigger, state in ILLEGAL if trigger in TRIGGERS],
    ids=[f"{trigger}-from-{state}" for trigger, state in ILLEGAL if trigger in TRIGGERS],
)
def test_lean_event_refuses_with_the_stock_machine_error(trigger: str, state: State) -> None:
    lifecycle = lifecycle_in(state)
    with pytest.raises(MachineError) as stock:
        STOCK.events[trigger].trigger(SimpleNamespace(_machine_state=state.value), reason=None)
    with pytest.raises(MachineError) as ours:
        _EVENTS[trigger].trigger(lifecycle, None)
    assert ours.value.value == stock.value.value
    assert lifecycle.state is state


def test_the_lifecycle_machine_runs_lean_events_for_every_trigger() -> None:
    assert isinstance(_MACHINE, _LeanMachine)
    assert {name: type(event) for name, event in _MACHINE.events.items()} == dict.fromkeys(
        TRIGGERS, _LeanEvent
    )


Config = dict[str, Any]


def _with_state(name: str, **callbacks: object) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        config["states"] = [
            {"name": state, **callbacks} if state == name else state for state in config["states"]
        ]

    return change


def _with_edge(trigger: str, **callbacks: object) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        (edge,) = [edge for edge in config["transitions"] if edge["trigger"] == trigger]
        edge.update(callbacks)

    return change


def _with(**arguments: object) -> Callable[[Config], None]:
    return lambda config: config.update(arguments)


#: What the lean event would skip, added to the lifecycle's arguments; what the refusal names.
SKIPPED = {
    "condition": (_with_edge("acquire", conditions="is_fresh"), "conditions on 'acquire'"),
    "unless": (_with_edge("release", unless="is_stale"), "conditions on 'release'"),
    "before": (_with_edge("open", before="log"), "before on 'open' from 'connecting'"),
    "after": (_with_edge("close", after="log"), "after on 'close' from 'idle'"),
    "prepare": (_with_edge("drain", prepare="log"), "prepare on 'drain'"),
    "internal": (_with_edge("settle", dest=None), "internal transition 'settle'"),
    "on_enter": (_with_state("idle", on_enter="announce"), "on_enter on state 'idle'"),
    "on_exit": (_with_state("busy", on_exit="announce"), "on_exit on state 'busy'"),
    "ignore_state": (
        _with_state("closed", ignore_invalid_triggers=True),
        "ignore_invalid_triggers on state 'closed'",
    ),
    "after_state_change": (_with(after_state_change="log"), "machine after_state_change"),
    "before_state_change": (_with(before_state_change="log"), "machine before_state_change"),
    "prepare_event": (_with(prepare_event="log"), "machine prepare_event"),
    "finalize_event": (_with(finalize_event="log"), "machine finalize_event"),
    "on_exception": (_with(on_exception="log"), "machine on_exception"),
    "on_final": (_with(on_final="log"), "machine on_final"),
    "queued": (_with(queued=True), "queued=True"),
    "ignore_invalid": (_with(ignore_invalid_triggers=True), "ignore_invalid_triggers"),
    "model": (_with(model=SimpleNamespace()), "registered models"),
    "model_attribute": (_with(model_attribute="state"), "model_attribute 'state'"),
}


@pytest.mark.parametrize(("change", "named"), SKIPPED.values(), ids=SKIPPED.keys())
def test_a_lean_machine_refuses_what_its_event_would_skip(
    change: Callable[[Config], None], named: str
) -> None:
    config = _machine_config()
    change(config)
    Machine(**config)  # transitions itself accepts it: the refusal is the lean machine's

    with pytest.raises(ValueError, match="cannot run a machine that declares") as refused:
        _LeanMachine(**config)
    assert named in str(refused.value)


def test_a_lean_machine_names_everything_it_would_skip() -> None:
    config = _machine_config()
    _with_edge("acquire", conditions="is_fresh")(config)
    _with_state("idle", on_enter="announce")(config)
    with pytest.raises(ValueError, match="cannot run") as refused:
        _LeanMachine(**config)
    assert "conditions on 'acquire' from 'idle'" in str(refused.value)
    assert "on_enter on state 'idle'" in str(refused.value)
