"""Keeping a multiplexer's connections: a lost one replaced, one too old for the pool retired.

A connection lost is replaced in the background (:func:`replace_lost`), with
backoff while the pool has none to lend, until the pool closes: then no request
waits in vain for room (:meth:`~._mux_room.Room.irreplaceable`).

A multiplexer holds its leases for its whole life, so the pool never sees
them come back to retire them (``max_lifetime``, ``expire_connections()``,
checked at a release or while idle). The rotation asks the pool instead,
every ``cleanup_interval``, and replaces each connection the pool calls
outdated, one at a time:

1. A replacement lease is acquired first and joins: the multiplexer never has
   fewer connections than it asked for. If the pool has no free slot for it
   within ``cleanup_interval``, the old connection is retired first and
   replaced after it closed (the lost-connection path: subscriptions get a gap).
2. The old connection leaves the room: no new request goes out on it. Its
   requests in flight are still answered there, and a request pinned to it
   (an unsubscribe) still goes out on it.
3. The protocol layer moves what it routes there (JSON-RPC subscribes again
   on the new connection, then stops listening on the old one: no gap, and a
   notification may come twice in the moment between).
4. Once nothing is in flight on it, or after :func:`drain_bound` seconds, its
   reader stops, its lease goes back closed, and what is still routed there
   is treated as lost (resubscribed with a gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from ._exceptions import ConnectionPoolUnavailableError, WebsocketError

if TYPE_CHECKING:
    from ._connection import WebsocketConnection
    from ._mux import Multiplexer
    from ._mux_channel import Channel

logger: Final = logging.getLogger("aio_websocket_pool")

#: Why a connection is too old to keep, or ``None`` (the pool's coordinator's ``outdated``).
Outdated = Callable[["WebsocketConnection"], str | None]
#: How a protocol layer moves what it routes on a retiring channel (JSON-RPC: subscriptions).
Move = Callable[["Channel"], Awaitable[None]]
_REPLACE_BACKOFF: Final = (0.05, 2.0)  # first and longest wait between replacement attempts
_POLL: Final = 0.01  # seconds between two looks at a retiring channel's requests in flight
#: How long a retiring channel waits for its requests in flight when they have no timeout.
UNTIMED_DRAIN: Final = 30.0


async def replace_lost(mux: Multiplexer) -> None:
    """Acquire a connection for ``mux`` in place of one lost, with backoff while there is none."""
    wait, longest = _REPLACE_BACKOFF
    while True:
        try:
            lease = await mux._pool.acquire()
        except ConnectionPoolUnavailableError as exc:
            mux._room.irreplaceable(f"{mux.name}: no connection to replace one lost ({exc})")
            return
        except WebsocketError as exc:
            logger.warning("%s: no replacement connection yet: %s", mux.name, exc)
            await asyncio.sleep(wait)
            wait = min(longest, wait * 2)
        else:
            await mux._adopt(lease)
            return


def drain_bound(request_timeout: float | None) -> float:
    """Seconds a retiring channel waits for its requests in flight: they end by then."""
    return UNTIMED_DRAIN if request_timeout is None else request_timeout


async def rotate(mux: Multiplexer, outdated: Outdated, interval: float) -> None:
    """Every ``interval``, replace each of ``mux``'s connections that is ``outdated``."""
    while True:
        await asyncio.sleep(interval)
        for channel in tuple(mux._room.channels):
            why = outdated(channel.connection)
            if why is not None and channel in mux._room.channels:
                await _replace(mux, channel, why, interval)


async def _replace(mux: Multiplexer, old: Channel, why: str, interval: float) -> None:
    logger.info("%s: retiring %s (%s)", mux.name, old.lease.id, why)
    try:
        lease = await mux._pool.acquire(timeout=interval)
    except WebsocketError as exc:  # no free slot, or the pool is closing: close it first
        logger.info("%s: no replacement for %s before it closes: %s", mux.name, old.lease.id, exc)
        await _retire(mux, old, replaced=False)
        return
    if await mux._adopt(lease) is None:  # the multiplexer closed meanwhile
        return
    old.replaced = True
    mux._room.retire(old)
    if mux.on_channel_retiring is not None:
        await mux.on_channel_retiring(old)
    await _retire(mux, old, replaced=True)


async def _retire(mux: Multiplexer, old: Channel, *, replaced: bool) -> None:
    """Let ``old`` answer what is in flight on it, then close it."""
    if not replaced:
        mux._room.retire(old)
    reader = old.reader
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(drain_bound(mux._request_timeout)):
            while old.pending and reader is not None and not reader.done():  # noqa: ASYNC110  (polled: no event on the hot path for a rare retirement)
                await asyncio.sleep(_POLL)
    if not mux._room.leave(old):
        return  # lost meanwhile: its reader gave it back, and it is being replaced
    old.fail(f"{old.lease.id} was retired")
    if reader is not None:
        reader.cancel()
        await asyncio.wait([reader])
    if mux.on_channel_lost is not None and old.routes:
        mux.on_channel_lost(old)
    await mux._give_back(old, force_remove=True)
    if not replaced:
        await replace_lost(mux)
