"""The coordinator core, step by step, with stand-in connections and a recording driver.

No sockets and no event loop work: every step is a synchronous call, and the
whole state (the stats, what the driver was asked to do) is asserted after
each one, in the style of h11's and httpcore's state tests. The stand-ins run
the real lifecycle machine, so an illegal move still raises.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from aio_websocket_pool import ConnectionPoolUnavailableError, WebsocketConnectionPool
from aio_websocket_pool._coordinator import Coordinator
from aio_websocket_pool._fsm import (
    BUSY,
    CLOSED,
    CONNECTING,
    DRAINING,
    IDLE,
    ConnectionLifecycle,
    State,
    TransitionRecord,
)
from aio_websocket_pool._inbox import Inbox
from aio_websocket_pool._ports import Grant


class StandIn:
    """A connection with the real lifecycle machine and no socket."""

    def __init__(self, number: int, generation: int, observer: Any) -> None:
        self.id = f"stand-in-{number}"
        self.generation = generation
        self.connected = True
        self.socket = True  # holds a socket still to close
        self.aborted = False
        self.idle_for = 0.0
        self.unproven = 0.0
        self.outlived = False
        self.peer_code: int | None = None
        self._inbox: Inbox | None = None
        self._lease_serial = 0
        self._multiplexed = False
        self.lifecycle = ConnectionLifecycle(self.id, history_size=8, observer=observer)

    # What the coordinator reads.
    @property
    def state(self) -> State:
        return self.lifecycle.state

    @property
    def is_connected(self) -> bool:
        return self.connected and self.state is not CLOSED

    @property
    def _has_socket(self) -> bool:
        return self.socket

    def _unproven_for(self, now: float) -> float:
        return self.unproven

    def _outlived(self) -> bool:
        return self.outlived

    def _peer_close_code(self) -> int | None:
        return self.peer_code

    def _loss_reason(self) -> str:
        return "connection lost"

    # What the coordinator tells it.
    def open(self) -> None:  # the handshake's own move, which the driver's task makes
        self.lifecycle.fire("open")

    def _claim(self) -> None:
        self.lifecycle.fire("acquire")

    def _begin_cleaning(self) -> None:
        self.lifecycle.fire("drain")

    def _come_back(self, reason: str | None = None) -> None:
        self.lifecycle.fire("settle" if self.state is DRAINING else "release", reason)

    def _end_lease(self) -> int:
        self._lease_serial += 1
        return self._lease_serial

    def _retire(self, reason: str) -> None:
        if self.state is not CLOSED:
            self.lifecycle.fire("fail" if self.state is CONNECTING else "close", reason)

    def _abort_socket(self) -> None:
        self.aborted = True
        self.socket = False

    def _lend_to_nobody(self) -> None:
        pass


@dataclass
class RecordingDriver:
    """Does nothing but write down what the coordinator asked for."""

    opening: list[Grant[StandIn]] = field(default_factory=list)
    cleaning: list[StandIn] = field(default_factory=list)
    closing: list[StandIn] = field(default_factory=list)
    soon: list[Callable[[], None]] = field(default_factory=list)
    keeper_woken: int = 0
    quiescent: int = 0

    def _start_opening(self, grant: Grant[StandIn]) -> None:
        self.opening.append(grant)

    def _start_cleaning(self, connection: StandIn) -> None:
        self.cleaning.append(connection)

    def _close_socket(self, connection: StandIn) -> None:
        self.closing.append(connection)

    def _stop_delivery(self, connection: StandIn) -> None:
        pass

    def _call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def _wake_keeper(self) -> None:
        self.keeper_woken += 1

    def _quiescent(self) -> None:
        self.quiescent += 1

    def run_soon(self) -> None:
        callbacks, self.soon = self.soon, []
        for callback in callbacks:
            callback()


@dataclass
class Rig:
    core: Coordinator[StandIn]
    driver: RecordingDriver
    made: list[StandIn]

    def counts(self) -> tuple[int, int, int, int, int]:
        """(connecting, idle, busy, draining, slots in use), from the stats."""
        stats = self.core.stats()
        return stats.connecting, stats.idle, stats.busy, stats.draining, self.core.slots_in_use

    def open_all(self) -> None:
        """Finish every handshake the driver was asked for, as the opening module does."""
        grants, self.driver.opening = self.driver.opening, []
        for grant in grants:
            grant.connection.open()
            self.core.opened(grant)


def make_rig(**settings: Any) -> Rig:
    config = WebsocketConnectionPool("ws://127.0.0.1:9/", **settings)._core.config
    driver = RecordingDriver()
    made: list[StandIn] = []
    core: Coordinator[StandIn]

    def observe(lifecycle: ConnectionLifecycle, record: TransitionRecord) -> None:
        core.on_transition(next(c for c in made if c.lifecycle is lifecycle), record)

    def make(generation: int, lifetime: float | None) -> StandIn:
        made.append(StandIn(len(made) + 1, generation, observe))
        return made[-1]

    core = Coordinator(config, name="rig", make_connection=make, driver=driver)
    return Rig(core, driver, made)


@pytest.fixture
def rig() -> Rig:
    return make_rig(max_connections=2)


def test_a_grant_opens_a_connection_in_a_free_slot_then_reuses_it(rig: Rig) -> None:
    grant = rig.core.try_grant(fresh=False)
    assert grant is not None
    assert grant.connection is rig.made[0]
    assert rig.driver.opening == [grant]
    assert rig.counts() == (1, 0, 0, 0, 1)
    rig.open_all()
    assert rig.counts() == (0, 0, 1, 0, 1)
    rig.core.end_lease(rig.made[0], force_remove=False, dirty=False, owed=None)
    assert rig.counts() == (0, 1, 0, 0, 1)
    again = rig.core.try_grant(fresh=False)
    assert again is not None
    assert again.connection is rig.made[0]
    assert again.opening is None
    assert rig.counts() == (0, 0, 1, 0, 1)
    assert len(rig.made) == 1
    assert rig.core.stats().reused == 1


def test_the_most_recently_used_idle_connection_is_granted_first(rig: Rig) -> None:
    for _ in range(2):
        rig.core.try_grant(fresh=False)
    rig.open_all()
    first, second = rig.made
    rig.core.end_lease(first, force_remove=False, dirty=False, owed=None)
    rig.core.end_lease(second, force_remove=False, dirty=False, owed=None)
    grant = rig.core.try_grant(fresh=False)
    assert grant is not None
    assert grant.connection is second


def test_at_the_limit_nothing_is_granted_and_a_waiter_is_served_in_order(rig: Rig) -> None:
    for _ in range(2):
        rig.core.try_grant(fresh=False)
    rig.open_all()
    assert rig.core.try_grant(fresh=False) is None
    assert rig.counts() == (0, 0, 2, 0, 2)
    # Waiters are futures: the line needs a loop to make them, not to run.
    loop = asyncio.new_event_loop()
    try:
        line = rig.core.waiting
        first = loop.run_until_complete(_join(line))
        second = loop.run_until_complete(_join(line))
        rig.core.end_lease(rig.made[0], force_remove=False, dirty=False, owed=None)
        assert rig.counts() == (0, 1, 1, 0, 2)
        assert len(rig.driver.soon) == 1  # one dispatch scheduled, however many came free
        rig.driver.run_soon()
        assert first.was_granted
        assert not second.future.done()
        assert first.future.result().connection is rig.made[0]
        assert rig.counts() == (0, 0, 2, 0, 2)
        assert rig.core.waiting.live_count() == 1
    finally:
        loop.close()


async def _join(line: Any) -> Any:
    return line.join(False)


def test_a_fresh_grant_at_the_limit_closes_the_oldest_idle_one(rig: Rig) -> None:
    for _ in range(2):
        rig.core.try_grant(fresh=False)
    rig.open_all()
    first, second = rig.made
    rig.core.end_lease(first, force_remove=False, dirty=False, owed=None)
    rig.core.end_lease(second, force_remove=False, dirty=False, owed=None)
    grant = rig.core.try_grant(fresh=True)
    assert grant is not None
    assert grant.connection is rig.made[2]
    assert first.state is CLOSED
    assert first.aborted
    assert rig.counts() == (1, 1, 0, 0, 2)


def test_a_socket_still_closing_holds_its_slot_until_the_driver_says_it_closed(rig: Rig) -> None:
    for _ in range(2):
        rig.core.try_grant(fresh=False)
    rig.open_all()
    first = rig.made[0]
    rig.core.end_lease(first, force_remove=True, dirty=False, owed=None)
    assert first.state is CLOSED
    assert not first.aborted
    assert rig.driver.closing == [first]
    assert rig.counts() == (0, 0, 1, 0, 2)
    assert rig.core.try_grant(fresh=False) is None
    rig.core.socket_closed(first)
    assert rig.counts() == (0, 0, 1, 0, 1)
    assert rig.core.try_grant(fresh=False) is not None


@pytest.mark.parametrize(
    ("how", "aborted"),
    [
        ({"force_remove": False, "dirty": True, "owed": None}, True),
        ({"force_remove": False, "dirty": False, "owed": "a receive was still pending"}, True),
        ({"force_remove": True, "dirty": False, "owed": "a receive was still pending"}, True),
        ({"force_remove": True, "dirty": False, "owed": None}, False),
    ],
)
def test_a_lease_that_may_still_be_owed_a_reply_ends_the_connection(
    rig: Rig, how: dict[str, Any], aborted: bool
) -> None:
    rig.core.try_grant(fresh=False)
    rig.open_all()
    connection = rig.made[0]
    rig.core.end_lease(connection, **how)
    assert connection.state is CLOSED
    assert connection.aborted is aborted
    assert rig.core.stats().idle == 0


def test_draining_hands_the_connection_to_the_cleaning() -> None:
    rig = make_rig(max_connections=1, check_server_data_on_release=True)
    rig.core.try_grant(fresh=False)
    rig.open_all()
    connection = rig.made[0]
    rig.core.end_lease(connection, force_remove=False, dirty=False, owed=None)
    assert connection.state is DRAINING
    assert rig.driver.cleaning == [connection]
    assert rig.counts() == (0, 0, 0, 1, 1)
    assert rig.core.in_use == 1
    rig.core.park(connection, "0 messages drained")
    assert rig.counts() == (0, 1, 0, 0, 1)
    assert rig.core.history[-1].reason == "0 messages drained"


def test_park_retires_what_a_policy_retires() -> None:
    rig = make_rig(max_lifetime=60.0)
    rig.core.try_grant(fresh=False)
    rig.open_all()
    connection = rig.made[0]
    connection.outlived = True
    rig.core.end_lease(connection, force_remove=False, dirty=False, owed=None)
    assert connection.state is CLOSED
    assert "max_lifetime" in (rig.core.history[-1].reason or "")


def test_expire_retires_idle_ones_now_and_busy_ones_when_they_come_back(rig: Rig) -> None:
    for _ in range(2):
        rig.core.try_grant(fresh=False)
    rig.open_all()
    idle, busy = rig.made
    rig.core.end_lease(idle, force_remove=False, dirty=False, owed=None)
    rig.core.expire()
    assert idle.state is CLOSED
    assert busy.state is BUSY
    rig.core.end_lease(busy, force_remove=False, dirty=False, owed=None)
    assert busy.state is CLOSED
    assert rig.core.history[-1].reason == "expired by expire_connections()"


def test_a_lost_connection_going_away_takes_its_idle_siblings_with_it(rig: Rig) -> None:
    for _ in range(2):
        rig.core.try_grant(fresh=False)
    rig.open_all()
    sibling, lost = rig.made
    rig.core.end_lease(sibling, force_remove=False, dirty=False, owed=None)
    lost.connected, lost.peer_code = False, 1001
    rig.core.end_lease(lost, force_remove=False, dirty=False, owed=None)
    assert lost.aborted
    assert sibling.state is CLOSED
    assert rig.core.stats().connections_lost == 1
    assert rig.counts() == (0, 0, 0, 0, 1)  # the sibling's socket closes by a handshake


async def test_try_again_later_trips_the_handshake_backoff(rig: Rig) -> None:
    rig.core.try_grant(fresh=False)
    rig.open_all()
    lost = rig.made[0]
    lost.connected, lost.peer_code = False, 1013
    assert rig.core.backoff.remaining == 0
    rig.core.end_lease(lost, force_remove=False, dirty=False, owed=None)
    assert rig.core.backoff.remaining > 0


def test_the_sweep_retires_idle_ones_past_idle_timeout_down_to_the_minimum() -> None:
    rig = make_rig(max_connections=3, idle_timeout=10.0, min_connections=1)
    for _ in range(3):
        rig.core.try_grant(fresh=False)
    rig.open_all()
    for connection in rig.made:
        rig.core.end_lease(connection, force_remove=False, dirty=False, owed=None)
        connection.idle_for = 11.0
    rig.core.sweep()
    assert [c.state for c in rig.made] == [CLOSED, CLOSED, IDLE]
    assert rig.core.missing_minimum == 0


def test_a_health_check_is_due_once_the_peer_went_unproven_for_the_interval() -> None:
    rig = make_rig(health_check_interval=5.0)
    rig.core.try_grant(fresh=False)
    rig.open_all()
    connection = rig.made[0]
    connection.unproven = 4.9
    assert not rig.core.health_check_due(connection)
    connection.unproven = 5.0
    assert rig.core.health_check_due(connection)
    assert not make_rig(health_check_interval=None).core.health_check_due(connection)
    connection.unproven = math.inf
    assert not rig.core.ready_at_once(connection)


def test_resize_down_retires_idle_ones_above_the_new_limit_and_busy_ones_on_return() -> None:
    rig = make_rig(max_connections=3)
    for _ in range(3):
        rig.core.try_grant(fresh=False)
    rig.open_all()
    first, second, third = rig.made
    rig.core.end_lease(first, force_remove=False, dirty=False, owed=None)
    rig.core.resize(rig.core.config.resized(max_connections=1, min_connections=0))
    assert first.state is CLOSED
    assert second.state is BUSY
    assert third.state is BUSY
    rig.core.end_lease(second, force_remove=False, dirty=False, owed=None)
    assert second.state is CLOSED
    rig.core.end_lease(third, force_remove=False, dirty=False, owed=None)
    assert third.state is IDLE  # at the limit now: kept
    assert rig.counts() == (0, 1, 0, 0, 3)  # two sockets still closing


def test_begin_closing_refuses_grants_and_reports_quiescence_once_all_came_back(rig: Rig) -> None:
    rig.core.try_grant(fresh=False)
    rig.open_all()
    busy = rig.made[0]
    rig.core.begin_closing()
    assert rig.driver.quiescent == 0
    with pytest.raises(ConnectionPoolUnavailableError, match="closing"):
        rig.core.try_grant(fresh=False)
    rig.core.end_lease(busy, force_remove=False, dirty=False, owed=None)
    assert busy.state is CLOSED
    assert rig.driver.quiescent == 1


def test_shut_retires_every_open_connection_and_leaves_handshakes_to_the_driver(rig: Rig) -> None:
    rig.core.try_grant(fresh=False)
    rig.open_all()
    rig.core.try_grant(fresh=False)  # still connecting
    rig.core.shut()
    opened, connecting = rig.made
    assert opened.state is CLOSED
    assert connecting.state is CONNECTING
    with pytest.raises(ConnectionPoolUnavailableError, match="closed"):
        rig.core.try_grant(fresh=False)


def test_a_closed_connection_below_the_minimum_wakes_the_keeper() -> None:
    rig = make_rig(max_connections=2, min_connections=1)
    rig.core.try_grant(fresh=False)
    rig.open_all()
    rig.core.end_lease(rig.made[0], force_remove=True, dirty=False, owed="cut off")
    assert rig.driver.keeper_woken == 1
    assert rig.core.missing_minimum == 1


def test_an_abandoned_grant_goes_idle_once_open(rig: Rig) -> None:
    grant = rig.core.try_grant(fresh=False)
    assert grant is not None
    rig.core.abandon(grant)  # still connecting: nothing to give back yet
    rig.open_all()
    assert rig.counts() == (0, 1, 0, 0, 1)


def test_a_grant_abandoned_once_busy_is_given_back_unused(rig: Rig) -> None:
    grant = rig.core.try_grant(fresh=False)
    assert grant is not None
    rig.open_all()
    rig.core.abandon(grant)
    assert rig.counts() == (0, 1, 0, 0, 1)
    assert rig.made[0]._lease_serial == 0  # not a release: no lease began or ended
