"""The coordinator: every decision of the pool, taken in synchronous steps.

Rules of this module:

* **No awaits, no sockets.** Each method is one step of bookkeeping that
  finishes before anyone else runs: who gets which connection (the most
  recently used idle one, else a new one in a free slot), which connections
  retire and why, when waiters are served. What takes time (a handshake, the
  cleaning after a release, a closing handshake) is handed to the
  :class:`Driver`, the pool's I/O modules, which report back when it is done.
  httpcore's ``_assign_requests_to_connections`` is the model.
* **Counters are derived.** Every transition of every connection reaches
  :meth:`Coordinator.on_transition`, which files the connection under its new
  state in a :class:`~aio_websocket_pool._stats.StateIndex`. Each figure the
  pool decides by is defined once, from that index, in :mod:`._figures`.
* **Waiters are served in order** (:mod:`._waiting`). Whenever something comes
  free, a dispatch is scheduled for the next loop iteration, so that a step
  that opens and claims a connection in two transitions finishes before anyone
  else is served; an acquirer arriving while others wait queues behind them.
* **A connection returns to idle only through** :meth:`Coordinator.park`,
  which retires it instead when a policy says so. One gate, so no path back
  to the idle set can forget a policy.
* **The connection's state changes only through its named methods**
  (``_claim``, ``_begin_cleaning``, ``_come_back``, ``_retire``): the
  coordinator never fires lifecycle events itself.

It is unit-tested with stand-in connections and a recording driver
(``tests/test_coordinator.py``); the pool is its one real user.
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Final

from ._backoff import Backoff
from ._exceptions import ConnectionPoolUnavailableError, WebsocketError
from ._figures import Figures
from ._fsm import BUSY, CLOSED, CONNECTING, IDLE, TransitionRecord
from ._ports import C, ConnectionFactory, Driver, Grant
from ._redact import describe_error
from ._stats import StateIndex, Totals
from ._waiting import WaitingLine

if TYPE_CHECKING:
    from ._config import PoolConfig

#: Close codes with which a server says it is going away as a whole (1001
#: going away, 1012 service restart): the idle siblings of a connection closed
#: with one are retired at once instead of failing one by one at hand-out.
SERVER_GOING_AWAY: Final = frozenset({1001, 1012})
#: Close code 1013, try again later: the pool backs off its new handshakes.
TRY_AGAIN_LATER: Final = 1013


class Coordinator(Figures[C]):
    """The pool's state and decisions: counters, the waiting line, grants, retirements.

    Args:
        config: The pool's settings (replaced by :meth:`resize`).
        name: The pool's name, for its stats.
        make_connection: Builds a connection for a new slot.
        driver: Carries the decisions out.
    """

    def __init__(
        self,
        config: PoolConfig,
        *,
        name: str,
        make_connection: ConnectionFactory[C],
        driver: Driver[C],
    ) -> None:
        self.config = config
        self.name = name
        self._make_connection = make_connection
        self._driver = driver
        self.index: StateIndex[C] = StateIndex()
        # As many records as every slot's own history holds together, closed
        # connections' included: enough to tell how each recent one ended.
        self.history: deque[TransitionRecord] = deque(
            # A deque's length must fit a C ssize_t; the memory grows with use only.
            maxlen=min(config.history_size * config.max_connections, sys.maxsize)
        )
        self.waiting: WaitingLine[Grant[C]] = WaitingLine()
        self.totals = Totals()
        self.backoff = Backoff()  # shared by every handshake; tripped by 1013 and 429/503
        self.random = random.Random()  # noqa: S311  (lifetime jitter, not cryptography)
        self.generation = 0  # bumped by expire()
        self.opening: set[Grant[C]] = set()  # handshakes in flight
        self.draining: set[C] = set()  # in their drain, past on_release
        self.sockets_closing: set[C] = set()  # retired, closing handshake still running
        self.dispatch_pending = False
        self._above_new_limit = False  # a resize left more connections than max_connections
        self.closing = False  # a graceful close waits for borrowers
        self.closed = False

    # -- granting -----------------------------------------------------------------------

    def try_grant(self, *, fresh: bool) -> Grant[C] | None:
        """Claim a connection for an acquirer, or ``None`` if nothing is free.

        Raises:
            ConnectionPoolUnavailableError: The pool is closed or closing.
        """
        if self.closed or self.closing:
            raise ConnectionPoolUnavailableError(
                "the pool is closed" if self.closed else "the pool is closing"
            )
        index = self.index
        while not fresh and (connection := index.most_recent(IDLE)) is not None:
            if connection.is_connected:  # the free check: no I/O, just the socket's state
                connection._claim()
                return Grant(connection)
            self.retire_lost(connection)
        if self.slots_in_use >= self.config.max_connections:
            victim = index.oldest(IDLE) if fresh else None
            if victim is None:
                return None
            self.discard(victim, "closed to make room for a new connection", abort=True)
        return self.new_grant(abandoned=False)

    def claim_ready(self, now: float) -> C | None:
        """The fast path of an acquire (``now``: the monotonic clock): the most recent idle
        connection, claimed, if it needs no I/O and no hook; else ``None``, nothing changed.

        No :class:`Grant` is made: one per warm acquire cost more than the checks. Waiters,
        a closing pool, a lost or unproven connection: the slow path (:meth:`try_grant`).
        """
        if self.waiting or self.closing or self.closed:
            return None
        found = self.index.most_recent(IDLE)
        if found is None or not (found.is_connected and self.ready_at_once(found, now)):
            return None
        found._claim()
        return found

    def new_grant(self, *, abandoned: bool) -> Grant[C]:
        """Open a connection in a free slot; ``abandoned``: for nobody (warm-up, minimum)."""
        config = self.config
        connection = self._make_connection(
            self.generation,
            # Jittered by ±10 % so that connections opened together do not all
            # retire together (psycopg_pool does the same).
            None
            if config.max_lifetime is None
            else config.max_lifetime * self.random.uniform(0.9, 1.1),
        )
        self.index.add(connection)
        grant = Grant(connection, abandoned=abandoned)
        self.opening.add(grant)
        self._driver._start_opening(grant)
        return grant

    def opened(self, grant: Grant[C]) -> None:
        """A handshake succeeded: the connection goes to its acquirer, or to idle.

        The same step as the ``open`` transition: no one else can take it in between.
        """
        connection = grant.connection
        if not grant.abandoned:
            connection._claim()
        elif (why := self.staleness(connection)) is not None:
            self.discard(connection, why)

    def abandon(self, grant: Grant[C]) -> None:
        """Undo a grant whose acquirer left: its connection goes to the next borrower."""
        grant.abandoned = True
        if grant.connection.state is BUSY:  # it was granted, or opened for us, already
            self.return_unused(grant.connection)

    def return_unused(self, connection: C) -> None:
        """Give back a connection claimed for an acquirer that never received it.

        Not a release: no borrower used it, so ``on_release`` (which undoes
        what ``on_acquire`` did) and the drain do not run, and a greeting still
        waiting for the first borrower stays for the next one.
        """
        if connection.state is not BUSY:  # discarded meanwhile
            return
        if connection.is_connected:
            self.park(connection)
        else:
            self.retire_lost(connection)

    def schedule_dispatch(self) -> None:
        """Serve the waiters at the next loop iteration, once (see the module docstring)."""
        if not self.dispatch_pending and self.waiting and not self.closed:
            self.dispatch_pending = True
            self._driver._call_soon(self.dispatch)

    def dispatch(self) -> None:
        """Serve waiters in order while something is free."""
        self.dispatch_pending = False
        if not self.closed:
            self.waiting.serve(self._grant_for_waiter)

    def _grant_for_waiter(self, fresh: bool) -> Grant[C] | None:
        return self.try_grant(fresh=fresh)

    # -- what a connection may be handed out as ----------------------------------------

    def health_check_due(self, connection: C, now: float | None = None) -> bool:
        """Whether nothing proved the peer alive within ``health_check_interval``.

        ``now``: the monotonic clock, if the caller read it already.
        """
        interval = self.config.health_check_interval
        if interval is None:
            return False
        return connection._unproven_for(time.monotonic() if now is None else now) >= interval

    def is_settled(self, connection: C) -> bool:
        """Whether nothing the pool took is half done: no message half received or undelivered."""
        inbox = connection._inbox
        return inbox is None or (not inbox.partial and inbox.delivery is None)

    def ready_at_once(self, connection: C, now: float | None = None) -> bool:
        """Whether a reused connection may be handed out with no I/O and no hook at all.

        ``now``: the monotonic clock, if the caller read it already.
        """
        return (
            self.config.on_acquire is None
            and not self.health_check_due(connection, now)
            and self.is_settled(connection)
            and self.staleness(connection) is None
        )

    def outdated(self, connection: C) -> str | None:
        """Why this connection is too old to keep (lifetime, expiry), or ``None``.

        What a multiplexer, which holds its connections for good, retires them for.
        """
        if connection.generation != self.generation:
            return "expired by expire_connections()"
        if connection._outlived():
            return f"older than max_lifetime={self.config.max_lifetime:g}s (with jitter)"
        return None

    def staleness(self, connection: C) -> str | None:
        """Why a policy retires this connection instead of keeping it, or ``None``."""
        if self.closing:
            return "pool closing"
        if (outdated := self.outdated(connection)) is not None:
            return outdated
        if self._above_new_limit and self.over_limit():
            return f"above max_connections={self.config.max_connections} after a resize"
        return None

    # -- giving back ----------------------------------------------------------------------

    def end_lease(
        self, connection: C, *, force_remove: bool, dirty: bool, owed: str | None
    ) -> None:
        """Decide what becomes of a connection whose lease just ended.

        ``dirty``: the borrower's block raised; ``owed``: why a reply may
        still come (a receive pending or cut off), or ``None``.
        """
        connection._end_lease()  # here, whatever comes next
        if force_remove:
            self.discard(connection, "released with force_remove", abort=owed is not None)
        elif not connection.is_connected:
            self.retire_lost(connection)
        elif dirty:
            # A drain cannot tell a reply still on its way from silence: only
            # closing guarantees that the next borrower never receives it.
            self.discard(connection, "borrower left on an error; a reply may still be owed",
                         abort=True)  # fmt: skip
        elif owed is not None:
            self.discard(connection, f"{owed} at release; a reply may still come", abort=True)
        elif self.config.check_server_data_on_release or self.config.on_release is not None:
            connection._begin_cleaning()
            self._driver._start_cleaning(connection)
        else:
            self.park(connection)

    def reclaim(self, connection: C, serial: int) -> None:
        """Take back the connection of a lease garbage-collected while lent."""
        if connection._lease_serial == serial and connection.state is BUSY:
            connection._end_lease()
            self.discard(connection, "its lease was garbage-collected without release",
                         abort=True)  # fmt: skip

    def park(self, connection: C, reason: str | None = None) -> None:
        """Return a connection to idle, unless a policy retires it.

        The only way back to the idle set. Its messages are the pool's from here on.
        """
        why = self.staleness(connection)
        if why is not None:
            self.discard(connection, why)
            return
        self.lend_to_nobody(connection)
        # What the borrower left unread may have been a flood: then it is closed already.
        if connection.state is not CLOSED:
            connection._come_back(reason)

    def keeps_for_first_borrower(self, connection: C) -> bool:
        """Whether what arrives now is kept for the first borrower, not the pool's.

        What a server sends right after the handshake (a greeting) belongs to
        the first borrower, as on a plain websockets connection, unless
        ``on_connect`` is set: then the hook owns the start of the session,
        and what it left unread is unsolicited.
        """
        return connection._lease_serial == 0 and self.config.on_connect is None

    def lend_to_nobody(self, connection: C) -> None:
        """Route the connection's messages to its inbox: nobody holds it now."""
        inbox = connection._inbox
        if inbox is not None:
            inbox.keeping = self.keeps_for_first_borrower(connection)
        connection._lend_to_nobody()

    # -- retiring ---------------------------------------------------------------------------

    def discard(self, connection: C, reason: str, *, abort: bool = False) -> None:
        """Retire a connection now and have its socket closed.

        A peer that is gone or silent, and a connection with unread data or
        in an unknown state, gets its TCP connection dropped at once
        (``abort``); any other gets a closing handshake in the background,
        during which its socket still counts against ``max_connections``.
        """
        connection._retire(reason)
        self._driver._stop_delivery(connection)
        if abort:
            connection._abort_socket()
        elif connection._has_socket and connection not in self.sockets_closing:
            self.sockets_closing.add(connection)
            self._driver._close_socket(connection)

    def socket_closed(self, connection: C) -> None:
        """A closing handshake ended: the slot its socket held is free."""
        self.sockets_closing.discard(connection)
        self.schedule_dispatch()
        self.wake_keeper_if_short()

    def retire_lost(self, connection: C, *, during: str | None = None) -> None:
        """Retire a connection the peer or the network closed, and heed what the peer said.

        A server going away (1001, 1012) takes the idle siblings with it; one
        that asks to try again later (1013) makes every new handshake back off.
        """
        if connection.state is CLOSED:  # the pool's close got there first: not a loss
            return
        code = connection._peer_close_code()
        reason = connection._loss_reason()
        self.totals.connections_lost += 1
        self.discard(connection, reason if during is None else f"{reason}, found during {during}",
                     abort=True)  # fmt: skip
        if code in SERVER_GOING_AWAY:
            for sibling in self.index.in_state(IDLE):
                self.discard(sibling, f"a sibling was closed with code {code}: server going away")
        elif code == TRY_AGAIN_LATER:
            self.backoff.trip()

    def health_check_failed(self, connection: C, exc: WebsocketError) -> None:
        """Retire a connection whose health-check ping failed (no pong, or closed)."""
        self.totals.health_checks_failed += 1
        if not connection.is_connected:
            self.retire_lost(connection, during="health check")
        else:
            reason = describe_error(exc.__cause__ or exc)
            self.discard(connection, f"health check failed: {reason}", abort=True)

    def sweep(self) -> None:
        """Retire idle connections that died, went stale, or idled past ``idle_timeout``.

        Idle cleanup stops at ``min_connections``, oldest first.
        """
        idle_timeout = self.config.idle_timeout
        for connection in self.index.in_state(IDLE):
            if connection.state is not IDLE:  # retired meanwhile, with a sibling that went away
                continue
            if not connection.is_connected:
                self.retire_lost(connection)
            elif (why := self.staleness(connection)) is not None:
                self.discard(connection, why)
            elif (
                connection.idle_for > idle_timeout
                and self.index.total > self.config.min_connections
            ):
                self.discard(connection, f"idle for more than idle_timeout={idle_timeout:g}s")

    def expire(self) -> None:
        """Retire every connection opened before now: idle ones at once, the rest when back."""
        self.generation += 1
        for connection in self.index.in_state(IDLE):
            self.discard(connection, "expired by expire_connections()")

    def resize(self, config: PoolConfig) -> None:
        """Take new size limits: idle connections above the new maximum retire now, oldest first."""
        self.config = config
        for connection in self.index.in_state(IDLE):  # oldest first
            if not self.over_limit():
                break
            self.discard(connection, f"pool resized to max_connections={config.max_connections}")
        else:
            self.over_limit()  # remember whether busy ones are above it still
        self.schedule_dispatch()
        self.wake_keeper_if_short()

    # -- shutting down ----------------------------------------------------------------------

    def begin_closing(self) -> None:
        """The graceful close: refuse newcomers, retire what nobody needs, let borrowers finish."""
        self.closing = True
        self.waiting.fail_all("the pool is closing")
        for connection in self.index.in_state(IDLE):
            self.discard(connection, "pool closing")
        for connection in tuple(self.draining):  # nothing to drain it for any more
            self.discard(connection, "pool closing", abort=True)
        self.note_quiescence()

    def shut(self) -> None:
        """The hard close: fail every waiter and retire every open connection now.

        Handshakes in flight are cancelled by the driver; cancelling one retires it.
        """
        self.closed = True
        self.waiting.fail_all("the pool was closed")
        for connection in tuple(self.index):
            if connection.state is not CONNECTING:
                self.discard(connection, "pool closed")

    # -- bookkeeping driven by the state machines -------------------------------------------

    def on_transition(self, connection: C, record: TransitionRecord) -> None:
        """Called after each transition of each connection of the pool."""
        self.history.append(record)
        self.index.move(connection, record)
        dest = record.dest
        if dest is IDLE:
            if self.waiting:  # the deque's own test: most releases find nobody waiting
                self.schedule_dispatch()
        elif dest is CLOSED:
            self.schedule_dispatch()
            if self.closing:
                self.note_quiescence()
            else:
                self.wake_keeper_if_short()

    def wake_keeper_if_short(self) -> None:
        """Wake the ``min_connections`` keeper when a connection closed, or its socket did.

        Both matter: a socket still closing holds its slot, so at
        ``max_connections`` the keeper can only open once it is gone.
        """
        if not self.closing and self.missing_minimum:
            self._driver._wake_keeper()

    def note_quiescence(self) -> None:
        """Tell a graceful close once nothing is held by, opening for or cleaned after anyone.

        Every connection still live when the pool started closing reaches
        ``closed`` in the end: those are the only transitions to watch.
        """
        if not (self.in_use or self.index.count(CONNECTING)):
            self._driver._quiescent()
