"""The harness of ``aio_websocket_pool.testing`` does what its knobs say.

Each knob is checked with a plain websockets client, not the pool: the other
test files trust these faults to be what they claim when they aim them at the
pool, so the faults are proved here on their own.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from aio_websocket_pool import testing
from aio_websocket_pool.testing import STRAY_PREFIX, Chaos, LoopbackServer, TcpProxy, Which
from aio_websocket_pool.testing.__main__ import main as soak_command
from helpers import BOUND, wait_until

#: Seconds a ping may go unanswered before a test calls the peer silent.
SILENCE = 0.2


async def echo(client: ClientConnection, message: str) -> None:
    await client.send(message)
    assert await client.recv() == message


async def answers_ping(client: ClientConnection) -> bool:
    try:
        async with asyncio.timeout(SILENCE):
            await (await client.ping())
    except TimeoutError:
        return False
    return True


def close_code(exc: ConnectionClosed) -> int | None:
    return None if exc.rcvd is None else exc.rcvd.code


# -- the server ----------------------------------------------------------------------------


async def test_counts_connections_and_sockets_and_records_headers(
    websocket_server: LoopbackServer,
) -> None:
    server = websocket_server
    async with connect(server.uri, additional_headers={"X-Test": "one"}) as client:
        await echo(client, "hello")
        assert (server.open_connections, server.handshakes) == (1, 1)
        assert (server.open_sockets, server.total_sockets) == (1, 1)
        assert server.request_headers[0]["X-Test"] == "one"
    await wait_until(lambda: server.open_sockets == 0, "the socket closed on the server")
    await wait_until(lambda: server.open_connections == 0, "the handler returned")
    assert (server.total_sockets, server.peak_connections) == (1, 1)


async def test_handshake_delay_keeps_the_handshake_in_flight(
    websocket_server: LoopbackServer,
) -> None:
    websocket_server.handshake_delay = BOUND
    opening = asyncio.create_task(connect(websocket_server.uri).__aenter__())
    await wait_until(lambda: websocket_server.handshakes_in_flight == 1, "a handshake in flight")
    assert not opening.done()
    assert websocket_server.open_sockets == 1
    assert websocket_server.handshakes == 0
    opening.cancel()
    await asyncio.gather(opening, return_exceptions=True)
    await wait_until(lambda: websocket_server.open_sockets == 0, "the abandoned socket closed")


async def test_refuse_answers_the_next_handshakes_with_the_status(
    websocket_server: LoopbackServer,
) -> None:
    websocket_server.refuse(2, 503)
    for _ in range(2):
        with pytest.raises(InvalidStatus) as info:
            await connect(websocket_server.uri)
        assert info.value.response.status_code == 503
    async with connect(websocket_server.uri) as client:
        await echo(client, "third time")
    assert websocket_server.handshakes == 1
    with pytest.raises(ValueError, match="999"):
        websocket_server.refuse(1, 999)


@pytest.mark.parametrize("which", ["idle", "busy"])
async def test_close_connections_closes_idle_or_busy_ones_with_the_code(
    websocket_server: LoopbackServer, which: Which
) -> None:
    server = websocket_server
    server.reply_delay = BOUND  # a request sent is in flight until the close
    async with connect(server.uri) as busy, connect(server.uri) as idle:
        await busy.send("in flight")
        await wait_until(lambda: server.requests_in_flight == 1, "a request in flight")
        assert await server.close_connections(1012, which=which) == 1
        closed, kept = (busy, idle) if which == "busy" else (idle, busy)
        with pytest.raises(ConnectionClosed) as info:
            await closed.recv()
        assert close_code(info.value) == 1012
        assert kept.protocol.close_rcvd is None
        await wait_until(lambda: server.open_connections == 1, "the closed one's handler returned")
        assert await server.close_connections(1001) == 1
        with pytest.raises(ConnectionClosed) as info:
            await kept.recv()
        assert close_code(info.value) == 1001


async def test_close_instead_of_replying_closes_under_the_request(
    websocket_server: LoopbackServer,
) -> None:
    websocket_server.close_instead_of_replying(1, 1011)
    async with connect(websocket_server.uri) as client:
        await client.send("never answered")
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert close_code(info.value) == 1011
    async with connect(websocket_server.uri) as client:
        await echo(client, "answered")


async def test_lingering_close_waits_for_thaw(websocket_server: LoopbackServer) -> None:
    async with connect(websocket_server.uri) as client:
        await websocket_server.close_connections(1001, linger=True)
        await wait_until(lambda: client.protocol.state.name == "CLOSING", "the close frame came")
        await asyncio.sleep(SILENCE)
        assert client.protocol.state.name == "CLOSING"  # the server reads no answer
        assert websocket_server.open_sockets == 1
        websocket_server.thaw()
        await wait_until(lambda: websocket_server.open_sockets == 0, "the close completed")
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert close_code(info.value) == 1001


async def test_stop_and_start_again_on_the_same_port(websocket_server: LoopbackServer) -> None:
    server = websocket_server
    port = server.port
    async with connect(server.uri) as client:
        await server.stop(1012)
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert close_code(info.value) == 1012
    assert not server.is_serving
    assert (server.open_sockets, server.open_connections) == (0, 0)
    with pytest.raises(OSError, match="Connect call failed"):
        await connect(server.uri)
    await server.start()
    assert server.is_serving
    assert server.port == port
    async with connect(server.uri) as client:
        await echo(client, "back")


async def test_stray_messages_follow_each_reply(websocket_server: LoopbackServer) -> None:
    websocket_server.stray_messages = 2
    async with connect(websocket_server.uri) as client:
        await echo(client, "request")
        assert [await client.recv() for _ in range(2)] == [f"{STRAY_PREFIX}0", f"{STRAY_PREFIX}1"]


async def received_with_random_strays(seed: int) -> list[str]:
    """What a client receives for 40 requests from a server with ``stray_chance=0.5``."""
    received = []
    async with (
        LoopbackServer(stray_chance=0.5, seed=seed).running() as server,
        connect(server.uri) as client,
    ):
        for n in range(40):
            await client.send(f"request {n}")
        await client.send("end")
        while (message := await client.recv()) != "end":
            assert isinstance(message, str)
            received.append(message)
    return received


async def test_random_strays_are_seeded() -> None:
    first, again, other = [await received_with_random_strays(seed) for seed in (7, 7, 8)]
    assert first == again
    assert first != other
    replies = [message for message in first if not message.startswith(STRAY_PREFIX)]
    assert replies == [f"request {n}" for n in range(40)]
    assert 0 < len(first) - len(replies) < 40


async def test_push_sends_an_unsolicited_message_to_each_connection(
    websocket_server: LoopbackServer,
) -> None:
    async with connect(websocket_server.uri) as one, connect(websocket_server.uri) as two:
        assert await websocket_server.push(f"{STRAY_PREFIX}news") == 2
        assert [await one.recv(), await two.recv()] == [f"{STRAY_PREFIX}news"] * 2


async def test_a_frozen_server_answers_no_ping(websocket_server: LoopbackServer) -> None:
    async with connect(websocket_server.uri) as client:
        assert await answers_ping(client)
        websocket_server.freeze()
        assert not await answers_ping(client)
        assert client.protocol.state.name == "OPEN"  # the socket looks fine
        websocket_server.thaw()
        await echo(client, "awake")


# -- the proxy -----------------------------------------------------------------------------


async def test_the_proxy_forwards_and_counts(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy
) -> None:
    async with connect(websocket_proxy.uri) as one, connect(websocket_proxy.uri) as two:
        await echo(one, "via the proxy")
        await echo(two, "again")
        assert (websocket_proxy.open_connections, websocket_proxy.total_connections) == (2, 2)
        assert websocket_server.open_sockets == 2
    await wait_until(lambda: websocket_proxy.open_connections == 0, "the proxy's links closed")
    await wait_until(lambda: websocket_server.open_sockets == 0, "the server's sockets closed")


async def test_the_proxy_freezes_one_connection_half_open(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy
) -> None:
    async with connect(websocket_proxy.uri) as frozen, connect(websocket_proxy.uri) as flowing:
        link = websocket_proxy.link(frozen.local_address[1])
        link.freeze()
        assert link.is_frozen
        assert not await answers_ping(frozen)
        assert await answers_ping(flowing)
        frozen.transport.abort()  # the client gives up: a frozen link passes even that on later
        await asyncio.sleep(SILENCE)
        assert websocket_server.open_sockets == 2
        link.thaw()
        await wait_until(lambda: websocket_server.open_sockets == 1, "the reset got through")
        await echo(flowing, "still fine")


async def test_the_proxy_freeze_spares_new_connections(websocket_proxy: TcpProxy) -> None:
    async with connect(websocket_proxy.uri) as old:
        assert websocket_proxy.freeze() == 1
        async with connect(websocket_proxy.uri) as new:
            await echo(new, "new connections flow")
        assert not await answers_ping(old)
        websocket_proxy.thaw()
        await echo(old, "thawed")


async def test_the_proxy_delays_every_chunk(websocket_proxy: TcpProxy) -> None:
    async with connect(websocket_proxy.uri) as client:
        websocket_proxy.delay = 0.05
        started = time.monotonic()
        await echo(client, "slow")
        assert time.monotonic() - started >= 0.1  # one chunk each way


async def test_the_proxy_drops_connections_without_a_close_frame(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy
) -> None:
    async with connect(websocket_proxy.uri) as client:
        assert websocket_proxy.abort() == 1
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is None
    await wait_until(lambda: websocket_server.open_sockets == 0, "the server saw the drop")


async def test_the_proxy_drops_clients_while_the_server_is_down(
    websocket_server: LoopbackServer, websocket_proxy: TcpProxy
) -> None:
    await websocket_server.stop()
    with pytest.raises((InvalidMessage, OSError)):
        await connect(websocket_proxy.uri)
    await wait_until(lambda: websocket_proxy.open_connections == 0, "the link closed")
    await websocket_server.start()
    async with connect(websocket_proxy.uri) as client:
        await echo(client, "back")


# -- the module ----------------------------------------------------------------------------


def test_importing_the_harness_does_not_import_pytest() -> None:
    code = (
        "import sys, aio_websocket_pool.testing as t; "
        "assert 'pytest' not in sys.modules and 'pytest_asyncio' not in sys.modules; "
        "assert not hasattr(t, 'pytest_configure')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=BOUND * 4)  # noqa: S603


def test_every_public_name_is_documented() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    for name in testing.__all__:
        assert f"`{name}" in page, name


def test_chaos_refuses_a_fault_it_cannot_inject(websocket_server: LoopbackServer) -> None:
    with pytest.raises(ValueError, match="freeze"):
        Chaos(websocket_server, kinds={"freeze"})  # a network fault, and no proxy


def test_the_soak_command_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["soak", "--minutes", "0.02", "--sample", "0.4", "--tasks", "10", "--connections", "4"]
    assert soak_command(argv) == 0
    report = capsys.readouterr().out
    assert "misdelivered: 0, untyped errors: 0" in report
    assert "0 sockets open on the server" in report
    assert "verdict: flat, correct" in report
