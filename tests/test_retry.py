"""Which failed handshakes are tried again, and how (``_retry``), against a real server."""

from __future__ import annotations

import logging
import re

import pytest

from aio_websocket_pool import HandshakeRejectedError, WebsocketConnectionPool
from aio_websocket_pool._retry import FIRST_RETRY_DELAY, RETRY_JITTER
from loopback import LoopbackServer


def retry_delay(line: str) -> float:
    """The seconds a "retrying in 0.27s" log line announces."""
    found = re.search(r"retrying in ([0-9.]+)s", line)
    assert found, line
    return float(found[1])


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "connect attempt" in r.getMessage()]


async def test_a_first_attempt_that_fails_hands_tenacity_the_failure_as_attempt_one(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The first attempt runs without tenacity; once it fails, the schedule is tenacity's."""
    caplog.set_level(logging.INFO, logger="aio_websocket_pool")
    server.refuse(2, 500)
    async with (
        WebsocketConnectionPool(server.uri, max_retries=3, acquire_timeout=5.0) as pool,
        pool.acquire() as conn,
    ):
        await conn.send("after two refusals")
        assert await conn.recv() == "after two refusals"
    lines = retry_lines(caplog)
    assert [line.split(": ", 1)[1].split(" failed")[0] for line in lines] == [
        "connect attempt 1",
        "connect attempt 2",
    ]
    # tenacity's waits: 0.1 s, then 0.2 s, each plus up to RETRY_JITTER (the log rounds to 0.01)
    first, second = (retry_delay(line) for line in lines)
    assert FIRST_RETRY_DELAY <= first <= FIRST_RETRY_DELAY + RETRY_JITTER + 0.005
    assert 2 * FIRST_RETRY_DELAY <= second <= 2 * FIRST_RETRY_DELAY + RETRY_JITTER + 0.005


async def test_a_first_attempt_refused_for_good_is_not_retried(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aio_websocket_pool")
    server.refuse(1, 401)
    async with WebsocketConnectionPool(server.uri, max_retries=3, acquire_timeout=5.0) as pool:
        with pytest.raises(HandshakeRejectedError, match="HTTP 401"):
            await pool.acquire()
    assert retry_lines(caplog) == []
