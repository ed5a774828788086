"""A property-based model of the pool: Hypothesis drives it, invariants hold after every step.

Hypothesis picks a sequence of rules (acquire, release, release with
``force_remove``, cancel an acquire in flight, use a connection, the server
closing a connection or refusing handshakes, time passing for the sweep and the
drains, ``close_all``) and runs them against a real pool on a real loopback
server. After every step the invariants must hold: the counters add up and
agree with every connection's state, the limit holds, what the test holds is
busy, and no acquirer waits while a connection sits idle.

Each test case gets its own event loop, made in ``__init__`` and closed in
``teardown``; each rule runs on it with ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from aio_websocket_pool import ConnectionLease, State, WebsocketConnectionPool, WebsocketError
from aio_websocket_pool.testing import LoopbackServer
from helpers import BOUND, assert_consistent, pooled, settle, wait_until

T = TypeVar("T")

MAX_CONNECTIONS = 2
#: Short, and ten times shorter than the rule that lets it pass: drains end within a step.
DRAIN_QUIET_PERIOD = 0.002


class PoolModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.server = LoopbackServer()
        self.run(self.server.start())
        self.held: list[ConnectionLease] = []
        self.acquiring: list[asyncio.Task[ConnectionLease]] = []
        self.closed = False

    @initialize(drain=st.booleans())
    def make_pool(self, drain: bool) -> None:
        """With ``drain``, a release drains first; without, it makes the connection idle at once."""
        self.pool = WebsocketConnectionPool(
            self.server.uri,
            max_connections=MAX_CONNECTIONS,
            max_retries=1,  # no backoff sleeps: a refusal fails the acquire at once
            acquire_timeout=None,  # waits end by a release, a cancel or close_all, not the clock
            health_check_interval=0,
            health_check_timeout=BOUND,
            check_server_data_on_release=drain,
            drain_quiet_period=DRAIN_QUIET_PERIOD,
            drain_timeout=BOUND,
            # The sweep runs when a rule says so (see idle_timeout_passes), never on its own
            # clock: the steps, not the machine's speed, decide what it finds.
            idle_timeout=0,
            cleanup_interval=3600,
            close_timeout=BOUND,
        )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, BOUND))

    async def collect(self) -> None:
        """Let acquires in flight run until each has ended or queued; file their outcomes.

        Event-driven, not timed: an acquire that waits for a connection shows
        in ``stats().waiting``, one that connects or pings ends soon.
        """
        await wait_until(
            lambda: sum(not task.done() for task in self.acquiring) <= self.pool.stats().waiting,
            "every acquire in flight ended or queued",
        )
        await settle()
        for task in [task for task in self.acquiring if task.done()]:
            self.acquiring.remove(task)
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is None:
                self.held.append(task.result())
            else:
                assert isinstance(exc, WebsocketError), repr(exc)

    # -- rules ---------------------------------------------------------------------------

    @rule()
    def acquire(self) -> None:
        async def step() -> None:
            self.acquiring.append(asyncio.create_task(self.pool.acquire()))
            await self.collect()

        self.run(step())

    # No rule has a precondition: whether a connection is held, or an acquire in
    # flight, depends on the event loop's timing, and Hypothesis replays its
    # choices expecting the same rules to be enabled each time. A rule with nothing
    # to act on does nothing instead.

    @rule(index=st.integers(min_value=0), force_remove=st.booleans())
    def release(self, index: int, force_remove: bool) -> None:
        if not self.held:
            return
        conn = self.held.pop(index % len(self.held))
        self.run(self.pool.release(conn, force_remove=force_remove))
        if force_remove:  # else it may be busy again already: handed straight to a waiter
            assert pooled(conn).state is State.CLOSED
        self.run(self.collect())

    @rule(force_remove=st.booleans(), turns=st.integers(min_value=0, max_value=3))
    def release_then_cancel_the_first_waiter(self, force_remove: bool, turns: int) -> None:
        """The waiter served by a release is cancelled a few loop turns later: mid-grant."""
        if not (self.held and self.acquiring):
            return

        async def step() -> None:
            await self.pool.release(self.held.pop(), force_remove=force_remove)
            await settle(turns)
            self.acquiring[0].cancel()
            await self.collect()

        self.run(step())

    @rule(index=st.integers(min_value=0))
    def use(self, index: int) -> None:
        if not self.held:
            return
        conn = self.held[index % len(self.held)]

        async def step() -> None:
            try:
                await conn.send("ping me back")
                assert await conn.recv() == "ping me back"
            except WebsocketError:
                assert pooled(conn).state is State.CLOSED or not pooled(conn).is_connected

        self.run(step())

    @rule(index=st.integers(min_value=0))
    def cancel_an_acquire(self, index: int) -> None:
        if not self.acquiring:
            return
        task = self.acquiring[index % len(self.acquiring)]
        task.cancel()
        self.run(self.collect())

    @rule(code=st.sampled_from([1000, 1001, 1011, 1012]))
    def server_closes_a_connection(self, code: int) -> None:
        self.run(self.server.close_connections(code, limit=1))
        self.run(self.collect())

    @rule(count=st.integers(min_value=1, max_value=3), status=st.sampled_from([403, 503]))
    def server_refuses_handshakes(self, count: int, status: int) -> None:
        self.server.refuse(count, status)

    @rule()
    def drain_quiet_period_passes(self) -> None:
        async def step() -> None:
            await asyncio.sleep(DRAIN_QUIET_PERIOD * 10)
            await self.collect()

        self.run(step())

    @rule()
    def idle_timeout_passes(self) -> None:
        """The idle sweep runs (``idle_timeout=0``: every idle connection has outstayed it)."""

        async def step() -> None:  # on the loop: the sweep spawns the closes
            idle = self.pool.available_connections
            closed_before = self.pool.stats().closed
            self.pool._core.sweep()
            assert self.pool.available_connections == 0
            assert self.pool.stats().closed == closed_before + idle
            await self.collect()

        self.run(step())

    @rule()
    def close_all(self) -> None:
        self.run(self.pool.close_all())
        self.closed = True
        self.run(self.collect())
        assert not self.acquiring
        assert self.pool.total_connections == 0

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def counters_agree_with_states(self) -> None:
        stats = assert_consistent(self.pool)
        assert stats.total == stats.idle + stats.busy + stats.draining + stats.connecting
        assert stats.total <= MAX_CONNECTIONS

    @invariant()
    def what_we_hold_is_busy_or_closed_under_us(self) -> None:
        for conn in self.held:
            assert pooled(conn).state in (State.BUSY, State.CLOSED)
            if pooled(conn).state is State.BUSY:  # still lent to us: the lease still works
                assert conn.state is State.BUSY
        # The loop runs a little past each rule, so an acquire may have ended
        # after the rule filed outcomes: what it returned is ours too.
        ours = [
            pooled(lease)
            for lease in self.held
            + [
                task.result()
                for task in self.acquiring
                if task.done() and not task.cancelled() and task.exception() is None
            ]
        ]
        busy_ours = sum(conn.state is State.BUSY for conn in ours)
        # Nobody else borrows; an acquire still in flight may hold one for its health check.
        in_flight = sum(not task.done() for task in self.acquiring)
        unowned = [
            (conn.id, [(r.trigger, r.reason) for r in conn.history])
            for conn in self.pool.connections
            if conn.state is State.BUSY and conn not in ours
        ]
        assert busy_ours <= self.pool.busy_connections <= busy_ours + in_flight, unowned

    @invariant()
    def no_waiter_starves_while_a_connection_or_a_slot_is_free(self) -> None:
        stats = self.pool.stats()
        # A dispatch already scheduled serves them at the loop's next turn; the
        # loop may stop (the rule ended) between the scheduling and the turn.
        if stats.waiting and not self.pool._core.dispatch_pending:
            closing = len(self.pool._tasks.closers)  # sockets still closing hold their slot
            assert stats.idle == 0, stats
            assert stats.total + closing >= MAX_CONNECTIONS, (stats, closing)

    @invariant()
    def a_closed_pool_holds_nothing(self) -> None:
        if self.closed:
            assert self.pool.total_connections == 0

    def teardown(self) -> None:
        try:
            if hasattr(self, "pool"):  # the initialize rule ran
                self.run(self.pool.close_all())
                self.run(self.collect())
                assert not self.acquiring
                assert_consistent(self.pool)
                assert self.pool.total_connections == 0
            self.run(self.server.stop())
            assert self.server.open_sockets == 0
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


PoolModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPoolModel = pytest.mark.usefixtures("quiet_logs")(PoolModel.TestCase)
