"""The private half of a connection (``_connection_base``): the steps its pool takes with it.

Each named step is one lifecycle transition (the pool never fires events
itself), retiring is safe in any state, and a standalone connection's failed
handshake leaves it connecting, to be tried again. Driven by hand on a
standalone connection, against the real loopback echo server where a socket
is needed.
"""

from __future__ import annotations

from aio_websocket_pool import State, WebsocketConnection
from helpers import triggers, wait_until
from loopback import LoopbackServer


async def test_each_named_step_is_one_transition(server: LoopbackServer) -> None:
    conn = WebsocketConnection(uri=server.uri)
    await conn.connect()
    try:
        conn._claim()
        assert conn.is_busy
        conn._begin_cleaning()
        assert conn.is_draining
        conn._come_back()  # from draining: settled
        conn._claim()
        conn._come_back("given back unused")  # from busy: released
        assert conn.state is State.IDLE
        assert triggers(conn) == ["open", "acquire", "drain", "settle", "acquire", "release"]
        assert conn.history[-1].reason == "given back unused"
        serial = conn._lease_serial
        assert conn._end_lease() == serial + 1 == conn._lease_serial
    finally:
        await conn.close()


def test_retiring_fails_a_pending_handshake_and_is_idempotent() -> None:
    conn = WebsocketConnection(uri="ws://127.0.0.1:9")  # never opened
    conn._fail("refused")  # standalone: stays connecting, connect() may be tried again
    assert conn.state is State.CONNECTING
    conn._retire("closed by its user")
    conn._retire("again")
    assert [(r.trigger, r.reason) for r in conn.history] == [("fail", "closed by its user")]
    assert conn.is_closed


async def test_an_aborted_socket_is_gone_at_once(server: LoopbackServer) -> None:
    conn = WebsocketConnection(uri=server.uri)
    await conn.connect()
    assert conn._has_socket
    assert not conn._outlived()  # no max_lifetime: never
    conn._lifetime = 0.0
    assert conn._outlived()
    conn._retire("dropped")
    conn._abort_socket()
    assert not conn._has_socket
    assert conn.websocket is None
    assert conn._loss_reason()  # words for its history, with no socket to ask
    await wait_until(lambda: server.open_connections == 0, "the server saw the socket drop")
