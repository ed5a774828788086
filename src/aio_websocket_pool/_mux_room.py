"""Which connection a multiplexed request goes out on, and the line of requests waiting for room.

Rules:

* A request goes out on the connection with the fewest requests in flight,
  if that is fewer than ``max_in_flight``; or, pinned to one connection (a
  server id is valid on that one only), on that one when it has room.
* Otherwise it waits in line, first come first served (the pool's own
  :class:`~._waiting.WaitingLine`, whose entries of requests that gave up are
  swept out in bulk, even while no room ever comes free); a pinned request in
  a line of its connection's own, so that room freed on one connection never
  wakes a request that can only use another. A request that leaves a
  connection wakes the next pinned to it, else the next in the shared line; a
  connection that joins wakes the whole shared line (each looks again); one
  that leaves wakes those pinned to it (they fail). A waiter woken and
  cancelled at once passes its turn on.
* A connection retired (its lifetime is over) leaves the room for new
  requests; those in flight on it are still answered there, and a request
  pinned to it still goes out on it, until it closes.
* Closing fails everyone in line with :class:`~aio_websocket_pool.RequestLostError`;
  the pool closing, once no connection is left, with
  :class:`~aio_websocket_pool.ConnectionPoolUnavailableError`.
"""

from __future__ import annotations

import asyncio

from ._exceptions import ConnectionPoolUnavailableError, RequestLostError
from ._mux_channel import Channel
from ._waiting import WaitingLine


class Room:
    """A multiplexer's connections, and the requests waiting for room on them.

    Args:
        max_in_flight: Requests in flight per connection, at most.
    """

    def __init__(self, max_in_flight: int) -> None:
        self.channels: list[Channel] = []
        self.retiring: list[Channel] = []  # retired: pinned requests only, until they close
        self._max_in_flight = max_in_flight
        self._line: WaitingLine[bool] = WaitingLine()
        self._room_free = False  # set by wake_one while it serves the line
        self._irreplaceable: str | None = None  # why a connection lost is not replaced
        self._closed: str | None = None  # why the multiplexer closed
        self._pinned: dict[Channel, WaitingLine[bool]] = {}  # lines of pinned requests

    @property
    def in_flight(self) -> int:
        """Requests sent and not ended, on every connection."""
        return sum(len(channel.pending) for channel in self.channels + self.retiring)

    @property
    def queued(self) -> int:
        """Requests waiting in line, those pinned to a connection included."""
        return self._line.live_count() + sum(line.live_count() for line in self._pinned.values())

    def pick(self, pinned: Channel | None) -> Channel | None:
        """The connection with the fewest requests in flight (or ``pinned``), if it has room.

        Raises:
            RequestLostError: ``pinned`` is lost.
        """
        if pinned is not None:
            if pinned not in self.channels and pinned not in self.retiring:
                raise RequestLostError(f"{pinned.lease.id} was lost")
            return pinned if len(pinned.pending) < self._max_in_flight else None
        best, least = None, self._max_in_flight
        for channel in self.channels:
            in_flight = len(channel.pending)
            if in_flight < least:
                best, least = channel, in_flight
        return best

    async def wait(self, pinned: Channel | None) -> None:
        """Wait in line until woken (then :meth:`pick` again: room may be gone by then).

        Raises:
            RequestLostError: The multiplexer closed (or closes meanwhile).
            ConnectionPoolUnavailableError: No connection is left, and none will come.
        """
        if self._closed is not None:
            raise RequestLostError(self._closed)
        if self._irreplaceable is not None and not self.channels:
            raise ConnectionPoolUnavailableError(self._irreplaceable)
        if pinned is None:
            line = self._line
        else:
            line = self._pinned.get(pinned) or self._pinned.setdefault(pinned, WaitingLine())
        waiter = line.join(False)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.was_granted:
                self.wake_one(pinned)  # woken and cancelled at once: the room goes to the next
            raise
        finally:
            line.leave(waiter)

    def wake_one(self, channel: Channel | None) -> None:
        """Room came free on ``channel``: the next pinned to it, else the next in line, may look."""
        pinned = self._pinned.get(channel) if channel is not None else None
        if pinned or self._line:
            self._room_free = True
            if pinned:
                pinned.serve(self._take_room)
            if self._room_free:
                self._line.serve(self._take_room)
            self._room_free = False

    def _take_room(self, fresh: bool) -> bool | None:
        """The one room :meth:`wake_one` frees, to the first live waiter; ``None`` after."""
        del fresh  # every request takes any room
        if not self._room_free:
            return None
        self._room_free = False
        return True

    def join(self, channel: Channel) -> None:
        """A connection joins: everyone in line may look."""
        self.channels.append(channel)
        self._line.serve(_room_for_all)

    def leave(self, channel: Channel) -> bool:
        """A connection leaves; returns whether it was one of these (retiring ones included).

        Those pinned to it are woken: it is gone, they fail (:meth:`pick`).
        """
        for channels in (self.channels, self.retiring):
            if channel in channels:
                channels.remove(channel)
                pinned = self._pinned.pop(channel, None)
                if pinned is not None:
                    pinned.serve(_room_for_all)
                return True
        return False

    def retire(self, channel: Channel) -> None:
        """No new request goes out on ``channel``; those pinned to it still do."""
        self.channels.remove(channel)
        self.retiring.append(channel)

    def irreplaceable(self, why: str) -> None:
        """A connection lost is not replaced (the pool closes): once none is left, none comes."""
        self._irreplaceable = why
        if not self.channels:
            self._line.fail_all(why, ConnectionPoolUnavailableError)

    def close(self, why: str) -> list[Channel]:
        """Fail everyone in line, and who joins it from now on; return the connections."""
        self._closed = why
        self._line.fail_all(why, RequestLostError)
        for pinned in self._pinned.values():
            pinned.fail_all(why, RequestLostError)
        self._pinned.clear()
        channels = self.channels + self.retiring
        self.channels, self.retiring = [], []
        return channels


def _room_for_all(fresh: bool) -> bool:
    """What a joining connection gives every waiter: a look at the room."""
    del fresh
    return True
