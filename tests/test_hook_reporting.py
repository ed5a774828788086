"""A failing hook or ``drain_condition`` is visible, once, and shows no secret.

Each failure logs exactly one WARNING on the ``aio_websocket_pool`` logger
that names the callback, the connection and the exception (type and
message), with the pool's secrets masked; the traceback goes to DEBUG,
masked too. The callbacks here raise an exception that quotes every secret
of the pool, as a hook that formats its connection's URI or headers into an
error would. Also here: a lease released into the wrong pool goes back to
its own, with a WARNING naming both. All against the real loopback server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aio_websocket_pool import (
    ConnectionHookError,
    WebsocketConnection,
    WebsocketConnectionPool,
)
from helpers import pool_maker, pooled, round_trip, wait_until
from loopback import LoopbackServer

POOL_LOGGER = "aio_websocket_pool"
#: The loggers of the client side: the pool's, and websockets' (whose lines the pool filters).
CLIENT_LOGGERS = (POOL_LOGGER, "websockets.client")

PASSWORD = "pw-SECRET-1"  # noqa: S105  (a fake credential that must never be shown)
QUERY = "token=SECRET-2"
HEADERS = {"Authorization": "Bearer SECRET-3"}
#: An API key as a path segment (Infura's style): masked like the others.
PATH_KEY = "0123456789abcdefSECRET4"

make_pool = pool_maker(
    health_check_interval=None,
    acquire_timeout=1.0,
    hook_timeout=1.0,
    close_timeout=0.1,
    max_retries=1,
    name="feeds",
)


def secret_uri(server: LoopbackServer, *, path: str = "/feed") -> str:
    return f"ws://user:{PASSWORD}@127.0.0.1:{server.port}{path}?{QUERY}"


class QuotingError(RuntimeError):
    """What the callbacks raise: its message quotes the pool's secrets."""


def quoting(uri: str, headers: Any) -> QuotingError:
    return QuotingError(f"refused by upstream: {uri} {dict(headers or {})}")


async def failing_hook(conn: WebsocketConnection, *_: object) -> None:
    raise quoting(conn.uri, conn.headers)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == POOL_LOGGER and r.levelno >= logging.WARNING
    ]


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing the client side logged, at any level and in any traceback, holds a secret."""
    for record in caplog.records:
        if record.name in CLIENT_LOGGERS:
            text = record.getMessage() + (record.exc_text or "")
            assert "SECRET" not in text, text


def assert_one_warning(caplog: pytest.LogCaptureFixture, callback: str) -> str:
    """Exactly one WARNING, naming the callback, the connection, the exception and its text."""
    logged = warnings_of(caplog)
    assert len(logged) == 1, logged
    warning = logged[0]
    assert callback in warning
    assert "feeds/conn-1" in warning
    assert "QuotingError" in warning
    assert "refused by upstream" in warning  # the message, masked, not dropped
    assert "<redacted>" in warning
    assert_no_secret_logged(caplog)
    return warning


# -- each callback, failing once ------------------------------------------------------------


async def on_connect_fails(server: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    async with make_pool(secret_uri(server), headers=HEADERS, on_connect=failing_hook) as pool:
        with pytest.raises(ConnectionHookError):
            await pool.acquire()
        await wait_until(lambda: pool.total_connections == 0, "the connection is discarded")


async def on_acquire_fails(server: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    async with make_pool(secret_uri(server), headers=HEADERS, on_acquire=failing_hook) as pool:
        with pytest.raises(ConnectionHookError):
            await pool.acquire()
        await wait_until(lambda: pool.total_connections == 0, "the connection is discarded")


async def on_release_fails(server: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    async with make_pool(secret_uri(server), headers=HEADERS, on_release=failing_hook) as pool:
        async with pool.get_connection() as lease:
            await round_trip(lease, "request")
        await wait_until(lambda: pool.stats().hooks_failed == 1, "on_release ran and failed")
        await wait_until(lambda: pool.total_connections == 0, "the connection is discarded")


async def on_unsolicited_fails(server: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    async with make_pool(secret_uri(server), headers=HEADERS, on_unsolicited=failing_hook) as pool:
        async with pool.get_connection() as lease:
            await round_trip(lease, "request")
        assert await server.push() == 1
        await wait_until(lambda: pool.stats().hooks_failed == 1, "on_unsolicited failed")
        await wait_until(lambda: pool.total_connections == 0, "the connection is discarded")


async def a_drain_rejected_by(
    condition: Callable[[str | bytes], bool], uri: str, **options: Any
) -> None:
    """One request, whose stray the drain reads and ``condition`` fails: the connection goes."""
    async with make_pool(
        uri,
        check_server_data_on_release=True,
        drain_quiet_period=0.05,
        drain_timeout=1.0,
        drain_condition=condition,
        **options,
    ) as pool:
        async with pool.get_connection() as lease:
            await round_trip(lease, "request")
        await wait_until(lambda: pooled(lease).is_closed, "the drain discarded it")


async def drain_condition_fails(server: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    uri = secret_uri(server)

    def condition(message: str | bytes) -> bool:
        raise quoting(uri, HEADERS)

    server.stray_messages = 1  # right after the reply: read by the drain
    await a_drain_rejected_by(condition, uri, headers=HEADERS)


SCENARIOS = {
    "on_connect": on_connect_fails,
    "on_acquire": on_acquire_fails,
    "on_release": on_release_fails,
    "on_unsolicited": on_unsolicited_fails,
    "drain_condition": drain_condition_fails,
}
Scenario = Callable[[LoopbackServer, pytest.LogCaptureFixture], Awaitable[None]]


@pytest.mark.parametrize("callback", list(SCENARIOS))
async def test_a_failing_callback_logs_one_masked_warning(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture, callback: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=POOL_LOGGER)
    scenario: Scenario = SCENARIOS[callback]
    async with asyncio.timeout(2):
        await scenario(server, caplog)
    assert_one_warning(caplog, callback)
    tracebacks = [
        r.getMessage()
        for r in caplog.records
        if r.name == POOL_LOGGER and r.levelno == logging.DEBUG and "Traceback" in r.getMessage()
    ]
    assert len(tracebacks) == 1, "the traceback, at DEBUG"
    assert callback in tracebacks[0]
    assert "QuotingError" in tracebacks[0]


async def test_without_debug_no_traceback_is_logged(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=POOL_LOGGER)
    await on_release_fails(server, caplog)
    assert_one_warning(caplog, "on_release")
    assert not any("Traceback" in r.getMessage() for r in caplog.records)


async def test_two_failures_log_two_warnings(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=POOL_LOGGER)
    async with make_pool(server, on_release=failing_hook) as pool:
        for _ in range(2):
            async with pool.get_connection():
                pass
            await wait_until(lambda: pool.total_connections == 0, "discarded")
    logged = warnings_of(caplog)
    assert len(logged) == 2, logged
    assert ["feeds/conn-1" in logged[0], "feeds/conn-2" in logged[1]] == [True, True]


async def test_a_hook_timing_out_logs_one_warning(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=POOL_LOGGER)

    async def too_slow(conn: WebsocketConnection) -> None:
        await asyncio.sleep(2)

    async with make_pool(server, on_release=too_slow, hook_timeout=0.05) as pool:
        async with pool.get_connection():
            pass
        await wait_until(lambda: pool.total_connections == 0, "discarded", within=1)
    logged = warnings_of(caplog)
    assert len(logged) == 1, logged
    assert "on_release" in logged[0]
    assert "feeds/conn-1" in logged[0]
    assert "TimeoutError" in logged[0]


async def test_an_api_key_in_the_uri_path_is_masked_too(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=POOL_LOGGER)
    uri = secret_uri(server, path=f"/ws/v3/{PATH_KEY}")
    async with make_pool(uri, on_release=failing_hook) as pool:
        async with pool.get_connection():
            pass
        await wait_until(lambda: pool.total_connections == 0, "discarded")
    assert_one_warning(caplog, "on_release")


async def test_the_seed_readmes_drain_condition_on_a_text_message_is_reported(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``message.startswith(b"...")`` raises TypeError on text: now a WARNING says so."""
    caplog.set_level(logging.WARNING, logger=POOL_LOGGER)
    server.stray_messages = 1

    def drop_heartbeats(message: str | bytes) -> bool:
        return message.startswith(b"heartbeat")  # type: ignore[arg-type]  # the seed's bug

    await a_drain_rejected_by(drop_heartbeats, server.uri)
    logged = warnings_of(caplog)
    assert len(logged) == 1, logged
    assert "drain_condition" in logged[0]
    assert "TypeError" in logged[0]


async def test_drain_condition_receives_str_and_bytes_as_sent(server: LoopbackServer) -> None:
    """Replies nobody read are drained: text ones as ``str``, binary ones as ``bytes``."""
    seen: list[str | bytes] = []

    def keep(message: str | bytes) -> bool:
        seen.append(message)
        return True

    async with make_pool(
        server,
        check_server_data_on_release=True,
        drain_quiet_period=0.2,  # long enough for both echoes, however late
        drain_timeout=1.0,
        drain_condition=keep,
    ) as pool:
        async with pool.get_connection() as lease:
            await lease.send("text")
            await lease.send(b"\x00binary")  # the echoes come after the release, or just before
        await wait_until(lambda: pool.available_connections == 1, "drained and kept")
    assert seen == ["text", b"\x00binary"]


# -- released into the wrong pool -------------------------------------------------------------


@pytest.mark.parametrize("force_remove", [False, True])
async def test_a_lease_released_into_another_pool_goes_back_to_its_own(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture, force_remove: bool
) -> None:
    caplog.set_level(logging.WARNING, logger=POOL_LOGGER)
    owner = WebsocketConnectionPool(server.uri, name="alpha", health_check_interval=None)
    other = WebsocketConnectionPool(server.uri, name="beta", health_check_interval=None)
    async with owner, other:
        lease = await owner.acquire()
        await other.release(lease, force_remove=force_remove)
        assert owner.busy_connections == 0
        assert other.total_connections == 0
        if force_remove:
            await wait_until(lambda: pooled(lease).is_closed, "removed, as asked")
            assert owner.total_connections == 0
        else:
            assert owner.available_connections == 1  # a slot of its own pool, not lost
            async with owner.get_connection() as again:
                assert again.id == lease.id
    logged = warnings_of(caplog)
    assert len(logged) == 1, logged
    pools_named = logged[0].replace(lease.id, "")  # the lease's id names its pool already
    assert "alpha" in pools_named
    assert "beta" in pools_named
