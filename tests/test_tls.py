"""``wss://`` against a test certificate authority: verified, never trusted blindly.

``trustme`` makes a throwaway CA and a server certificate for 127.0.0.1. The
pool verifies the server's certificate with websockets' default TLS context
unless the application passes its own ``ssl=`` context; nothing in the pool
turns verification off.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from aio_websocket_pool import ConnectionUnavailableError, WebsocketConnectionPool
from aio_websocket_pool.testing import LoopbackServer, TcpProxy
from helpers import pool_maker, round_trip, server_context, trusting

make_pool = pool_maker(max_retries=1, connection_timeout=5.0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[LoopbackServer]:
    async with LoopbackServer(ssl_context=server_context(ca, "127.0.0.1")).running() as server:
        yield server


def assert_refused_certificate(exc: ConnectionUnavailableError, reason: str) -> None:
    cause = exc.__cause__
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert reason in str(cause.verify_message)
    assert "SSLCertVerificationError" in str(exc)  # the message says what failed


async def test_wss_with_the_right_ca_succeeds(tls_server: LoopbackServer, ca: trustme.CA) -> None:
    assert tls_server.uri.startswith("wss://")
    async with make_pool(tls_server, ssl=trusting(ca)) as pool, pool.get_connection() as conn:
        await round_trip(conn, "over TLS")
        assert conn.websocket is not None
        assert conn.websocket.transport.get_extra_info("peercert") is not None


async def test_wss_without_the_ca_fails_with_a_typed_error(tls_server: LoopbackServer) -> None:
    """No ``ssl=``: websockets' default context verifies against the system's CAs."""
    async with make_pool(tls_server) as pool:
        with pytest.raises(ConnectionUnavailableError) as info:
            await pool.acquire()
    assert_refused_certificate(info.value, "unable to get local issuer certificate")
    assert tls_server.handshakes == 0


async def test_a_certificate_for_another_host_is_rejected(ca: trustme.CA) -> None:
    server = LoopbackServer(ssl_context=server_context(ca, "other.example"))
    async with server.running(), make_pool(server, ssl=trusting(ca)) as pool:
        with pytest.raises(ConnectionUnavailableError) as info:
            await pool.acquire()
    assert_refused_certificate(info.value, "IP address mismatch")
    assert server.handshakes == 0


async def test_a_certificate_verification_failure_is_not_retried(
    tls_server: LoopbackServer,
) -> None:
    """The proxy counts TCP connections: TLS handshakes that fail never reach the server."""
    async with TcpProxy(tls_server.port).running() as proxy:
        uri = proxy.uri.replace("ws://", "wss://")
        async with make_pool(uri, max_retries=3) as pool:
            with pytest.raises(ConnectionUnavailableError):
                await pool.acquire()
        assert proxy.total_connections == 1


def test_the_pool_never_turns_verification_off() -> None:
    """The only TLS setting the pool passes on is the application's own ``ssl=``."""
    pool = WebsocketConnectionPool("wss://127.0.0.1:9/")
    assert pool._core.config.connect_kwargs.keys() == {"proxy", "proxy_found_for_uri"}  # found once
