"""Opening connections in the background (``_opening``): the warm-up, and what it reports.

Against the loopback echo server, refusing handshakes on demand: failures of
the warm-up are logged (how many opened, the first failure), never raised,
and the pool opens on demand once the server accepts.
"""

from __future__ import annotations

import logging

import pytest

from helpers import BOUND, assert_consistent, pool_maker, round_trip
from loopback import LoopbackServer

make_pool = pool_maker(cleanup_interval=60.0, acquire_timeout=BOUND, close_timeout=0.2)


# -- warm-up -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refusals", "status", "opened"),
    [
        (2, 401, 0),  # not retried: both fail at once
        (4, 503, 0),  # retried: two attempts each, all refused
        (1, 401, 1),
    ],
)
async def test_warmup_failures_are_logged_not_raised(
    server: LoopbackServer,
    caplog: pytest.LogCaptureFixture,
    refusals: int,
    status: int,
    opened: int,
) -> None:
    caplog.set_level(logging.WARNING, logger="aio_websocket_pool")
    server.refuse(refusals, status)
    pool = make_pool(server.uri, warmup_connections=2, max_retries=2)
    try:
        await pool.start()  # does not raise

        warnings = [
            record
            for record in caplog.records
            if record.name == "aio_websocket_pool" and record.levelno == logging.WARNING
        ]
        assert len(warnings) == 1
        message = warnings[0].getMessage()
        assert f"warm-up opened {opened} of 2" in message
        assert f"HTTP {status}" in message
        assert len(server.request_headers) == refusals + opened
        stats = pool.stats()
        assert (stats.opened, stats.failed_connects, stats.idle) == (opened, 2 - opened, opened)
        assert_consistent(pool)

        # The server accepts now: the pool works on demand.
        conn = await pool.acquire()
        await round_trip(conn, "after warm-up")
        assert server.handshakes == 1  # the warm one, or one opened on demand
        await pool.release(conn)
    finally:
        await pool.close_all()
    assert server.open_connections == 0
