"""The figures the pool decides by, each defined once, from the state index.

httpcore's open bug (a keep-alive count that counted every connection) is why
each count the pool decides by is one named helper here, derived from the
connections' states (a :class:`~aio_websocket_pool._stats.StateIndex`) and
what the coordinator tracks beside them, never kept as a counter of its own.
:class:`Figures` is the coordinator's base: it reads the coordinator's state
and changes none of it, but for the note :meth:`Figures.over_limit` keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic

from ._fsm import BUSY, CONNECTING, DRAINING
from ._ports import C
from ._stats import PoolStats, snapshot

if TYPE_CHECKING:
    from ._config import PoolConfig
    from ._ports import Grant
    from ._stats import StateIndex, Totals
    from ._waiting import WaitingLine


class Figures(Generic[C]):
    """The figures of a :class:`~aio_websocket_pool._coordinator.Coordinator` (its base)."""

    config: PoolConfig
    name: str
    index: StateIndex[C]
    waiting: WaitingLine[Grant[C]]
    totals: Totals
    sockets_closing: set[C]
    _above_new_limit: bool

    @property
    def slots_in_use(self) -> int:
        """Connections holding a slot, plus sockets still closing: what ``max_connections``
        bounds, since it bounds what the server sees."""
        return self.index.total + len(self.sockets_closing)

    @property
    def missing_minimum(self) -> int:
        """How many ``min_connections`` lacks, counting what holds a slot."""
        return max(0, self.config.min_connections - self.index.total)

    @property
    def in_use(self) -> int:
        """Busy or draining: held by, or being cleaned after, a borrower."""
        index = self.index
        return index.count(BUSY) + index.count(DRAINING)

    @property
    def open_connections(self) -> int:
        """Holding a slot with the handshake done (what ``wait()`` waits for)."""
        index = self.index
        return index.total - index.count(CONNECTING)

    def over_limit(self) -> bool:
        """Whether more connections hold a slot than ``max_connections`` (after a resize).

        Sockets still closing do not count here: they are on their way out,
        and counting them would retire more than the resize asked for.
        """
        over = self.index.total > self.config.max_connections
        self._above_new_limit = over  # until a resize leaves it over again: the hot path skips it
        return over

    def stats(self) -> PoolStats:
        """A frozen snapshot of the counters and running totals."""
        return snapshot(
            self.index, self.totals, waiting=self.waiting.live_count(),
            max_connections=self.config.max_connections, name=self.name,
        )  # fmt: skip
