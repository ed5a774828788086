"""Which failed handshakes are tried again, and how (``_retry``), against a real server."""

from __future__ import annotations

import logging

import pytest

from aio_websocket_pool import HandshakeRejectedError, WebsocketConnectionPool
from loopback import LoopbackServer


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
    assert "retrying in 0.1" in lines[0]  # tenacity's first wait: 0.1 s, plus up to 0.1 of jitter
    assert "retrying in 0.2" in lines[1] or "retrying in 0.3" in lines[1]


async def test_a_first_attempt_refused_for_good_is_not_retried(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aio_websocket_pool")
    server.refuse(1, 401)
    async with WebsocketConnectionPool(server.uri, max_retries=3, acquire_timeout=5.0) as pool:
        with pytest.raises(HandshakeRejectedError, match="HTTP 401"):
            await pool.acquire()
    assert retry_lines(caplog) == []
