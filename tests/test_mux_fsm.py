"""The request and subscription lifecycles, driven synchronously from their tables.

As in ``test_fsm.py``: every (state, trigger) pair of each table is fired through
the lean machinery and through transitions' stock ``Machine`` built from the same
arguments, and the two must agree; an illegal event changes nothing; every move
lands in the journal (bounded, no payloads) and in its counts.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace
from typing import Any

import pytest
from transitions import Machine, MachineError

from aio_websocket_pool import (
    REQUEST_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    TRANSITIONS,
    Edge,
    InvalidTransitionError,
    RequestState,
    SubscriptionState,
)
from aio_websocket_pool._fsm import _machine_config
from aio_websocket_pool._mux_fsm import (
    Journal,
    RequestLifecycle,
    SubscriptionLifecycle,
    Tracked,
)

TABLES: list[tuple[type[Tracked], type[enum.StrEnum], tuple[Edge[Any], ...]]] = [
    (RequestLifecycle, RequestState, REQUEST_TRANSITIONS),
    (SubscriptionLifecycle, SubscriptionState, SUBSCRIPTION_TRANSITIONS),
]
CASES = [
    (model, state, trigger)
    for model, states, table in TABLES
    for state in states
    for trigger in sorted({edge.trigger for edge in table} | {"explode"})
]


def walked_to(model: type[Tracked], state: enum.StrEnum, journal: Journal) -> Tracked:
    """A lifecycle put in ``state`` directly (every state is reachable: checked below)."""
    lifecycle = model("mux-test/x-1", journal)
    lifecycle.state, lifecycle._machine_state = state, state.value
    return lifecycle


@pytest.mark.parametrize(
    ("model", "state", "trigger"), CASES, ids=[f"{m.__name__}-{t}-from-{s}" for m, s, t in CASES]
)
def test_lean_events_do_what_the_stock_machine_does(
    model: type[Tracked], state: enum.StrEnum, trigger: str
) -> None:
    states, table = next((states, table) for m, states, table in TABLES if m is model)
    stock = Machine(**_machine_config(states, table, model._initial))
    stock_model = SimpleNamespace(_machine_state=state.value)
    try:
        stock.events[trigger].trigger(stock_model)
        expected: object = states(stock_model._machine_state)
    except (KeyError, MachineError):
        expected = "refused"
    journal = Journal(10)
    lifecycle = walked_to(model, state, journal)
    try:
        lifecycle.fire(trigger, "why")
    except InvalidTransitionError:
        assert lifecycle.state is state
        assert not journal.records
        assert expected == "refused"
    else:
        assert lifecycle.state is expected
        (record,) = journal.records
        assert (record.trigger, record.source, record.dest, record.reason) == (
            trigger, state, expected, "why"
        )  # fmt: skip
        assert {name: n for name, n in journal.counts.items() if n} == {trigger: 1}


@pytest.mark.parametrize(("model", "states", "table"), TABLES, ids=["request", "subscription"])
def test_every_state_is_reachable_from_the_first(
    model: type[Tracked], states: type[enum.StrEnum], table: tuple[Edge[Any], ...]
) -> None:
    reached = {model._initial}
    for _ in states:
        reached |= {edge.dest for edge in table if set(edge.sources) & reached}
    assert reached == set(states)


def test_the_triggers_of_all_tables_are_distinct_so_one_count_serves_them() -> None:
    triggers = [edge.trigger for _, _, table in TABLES for edge in table]
    assert len(triggers) == len(set(triggers))
    assert {edge.trigger for edge in TRANSITIONS} >= {"close"}  # a connection's is not counted


def test_the_journal_is_bounded() -> None:
    journal = Journal(3)
    for n in range(5):
        RequestLifecycle(f"m/req-{n}", journal).fire("send")
    assert [record.connection_id for record in journal.records] == ["m/req-2", "m/req-3", "m/req-4"]
    assert journal.counts["send"] == 5
