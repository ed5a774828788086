"""Which connection a multiplexed request goes out on, and the line of requests waiting for room.

Rules:

* A request goes out on the connection with the fewest requests in flight,
  if that is fewer than ``max_in_flight``; or, pinned to one connection (a
  server id is valid on that one only), on that one when it has room.
* Otherwise it waits in line, first come first served. A request that leaves
  a connection wakes the next in line; a connection that joins wakes them all
  (each looks again). A waiter woken and cancelled at once passes its turn on.
* Closing fails everyone in line with :class:`~aio_websocket_pool.RequestLostError`.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ._exceptions import RequestLostError
from ._mux_channel import Channel


class Room:
    """A multiplexer's connections, and the requests waiting for room on them.

    Args:
        max_in_flight: Requests in flight per connection, at most.
    """

    def __init__(self, max_in_flight: int) -> None:
        self.channels: list[Channel] = []
        self._max_in_flight = max_in_flight
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._gone = 0  # waiters cancelled in line: swept once they are half of it

    @property
    def in_flight(self) -> int:
        """Requests sent and not ended, on every connection."""
        return sum(len(channel.pending) for channel in self.channels)

    @property
    def queued(self) -> int:
        """Requests waiting in line."""
        return sum(not waiter.done() for waiter in self._waiters)

    def pick(self, pinned: Channel | None) -> Channel | None:
        """The connection with the fewest requests in flight (or ``pinned``), if it has room.

        Raises:
            RequestLostError: ``pinned`` is lost.
        """
        if pinned is not None:
            if pinned not in self.channels:
                raise RequestLostError(f"{pinned.lease.id} was lost")
            return pinned if len(pinned.pending) < self._max_in_flight else None
        best, least = None, self._max_in_flight
        for channel in self.channels:
            in_flight = len(channel.pending)
            if in_flight < least:
                best, least = channel, in_flight
        return best

    async def wait(self) -> None:
        """Wait in line until woken (then :meth:`pick` again: room may be gone by then).

        Raises:
            RequestLostError: The multiplexer closed meanwhile.
        """
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                self._forget_one()
            elif waiter.done() and waiter.exception() is None:
                self.wake_one()  # woken and cancelled at once: the room goes to the next
            raise

    def _forget_one(self) -> None:
        """A waiter gave up in line: sweep the line once those are half of it.

        Nothing else would remove them while no connection frees room (the
        server down, its replacement failing): the line would grow by one per
        request for the whole outage.
        """
        self._gone += 1
        if self._gone * 2 > len(self._waiters):
            self._waiters = deque(waiter for waiter in self._waiters if not waiter.done())
            self._gone = 0

    def wake_one(self) -> None:
        """Room came free on a connection: the next in line may look."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def join(self, channel: Channel) -> None:
        """A connection joins: everyone in line may look."""
        self.channels.append(channel)
        while self._waiters:
            self.wake_one()

    def leave(self, channel: Channel) -> bool:
        """A connection leaves; returns whether it was one of these."""
        if channel not in self.channels:
            return False
        self.channels.remove(channel)
        return True

    def close(self, why: str) -> list[Channel]:
        """Fail everyone in line; return the connections, which leave."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RequestLostError(why))
        self._waiters.clear()
        channels, self.channels = self.channels, []
        return channels
