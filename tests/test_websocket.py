"""What the pool relies on inside websockets (``_websocket``), against real websockets servers.

These run on both ends of the websockets range pyproject.toml admits (the
check runs the suite on the oldest too): an attribute renamed upstream fails
here, not in a user's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from aio_websocket_pool import WebsocketConnectionPool
from aio_websocket_pool._websocket import (
    TURN_BYTES,
    PooledWebSocket,
    pooled_class,
    send_at_once,
    send_in_turn,
)
from helpers import (
    clear_proxy_environment,
    http_server,
    redirect_to,
    round_trip,
    server_context,
    trusting,
)
from loopback import LoopbackServer


async def echo(conn: ServerConnection) -> None:
    async for message in conn:
        await conn.send(message)


async def test_send_at_once_writes_text_and_binary_frames_as_send_would() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            assert send_at_once(ws, b"text", text=True)
            assert send_at_once(ws, b"\x00bytes", text=False)
            assert await ws.recv() == "text"
            assert await ws.recv() == b"\x00bytes"


async def test_send_at_once_leaves_a_closed_connection_to_send() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.close()
            assert not send_at_once(ws, b"late", text=True)
            with pytest.raises(ConnectionClosed):
                await ws.send("late")


async def test_send_at_once_waits_its_turn_behind_a_fragmented_message() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            middle = asyncio.Event()

            async def fragments() -> AsyncIterator[str]:
                yield "frag"
                middle.set()
                await asyncio.sleep(0.05)
                yield "ment"

            fragmented = asyncio.create_task(ws.send(fragments()))
            await middle.wait()
            assert not send_at_once(ws, b"after", text=True)  # it would land in the fragments
            await ws.send("after")  # waits for it
            await fragmented
            assert [await ws.recv(), await ws.recv()] == ["fragment", "after"]


async def test_send_at_once_leaves_a_full_write_buffer_to_send() -> None:
    """A server that stops reading: the client's write buffer fills and writing pauses."""
    stop_reading = asyncio.Event()

    async def stalled(conn: ServerConnection) -> None:
        await stop_reading.wait()

    # close_timeout: its reading paused, the server would wait 10 s to see the client gone.
    async with serve(
        stalled, "127.0.0.1", 0, max_size=None, max_queue=1, close_timeout=0.1
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            ws.transport.set_write_buffer_limits(high=64 * 1024)
            chunk = b"x" * (256 * 1024)
            for _ in range(400):  # at most 100 MB: the kernel's buffers hold a few MB
                if not send_at_once(ws, chunk, text=False):
                    break
                await asyncio.sleep(0)
            assert ws.paused
            stop_reading.set()
            await close_quietly(ws)


async def close_quietly(ws: ClientConnection) -> None:
    ws.transport.abort()  # what is buffered would take the server a while to read
    await ws.wait_closed()


@contextlib.asynccontextmanager
async def connect_proxy(
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP CONNECT proxy on loopback, to loopback only; an HTTPS one given ``tls``.

    Yields its URI and the targets it tunnelled to, in order.
    """
    targets: list[str] = []
    tunnels: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tunnels.add(asyncio.current_task())  # type: ignore[arg-type]
        request = await reader.readuntil(b"\r\n\r\n")
        target = request.split(b" ", 2)[1].decode()
        targets.append(target)
        host, _, port = target.rpartition(":")
        assert host == "127.0.0.1", target
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(tunnel, "127.0.0.1", 0, ssl=tls)
    scheme = "http" if tls is None else "https"
    try:
        async with server:
            yield f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}", targets
    finally:
        for task in tunnels:
            task.cancel()
        await asyncio.gather(*tunnels, return_exceptions=True)


@pytest.mark.parametrize("proxied", ["first-hop", "redirect-target"])
async def test_a_redirect_target_goes_through_the_proxy_the_environment_names_for_it(
    proxied: str, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool finds the environment's proxy for its URI once; a redirect's target gets its own.

    ``NO_PROXY`` exempts one of the two hops (by port), so exactly one goes
    through the proxy: the first one found in advance, the redirect's looked up
    when it is followed (``PooledConnect``), as websockets alone would.
    """
    clear_proxy_environment(monkeypatch)
    async with (
        connect_proxy() as (proxy, tunnelled),
        http_server(redirect_to(server.uri)) as (port, redirects),
    ):
        first_hop, target = f"127.0.0.1:{port}", f"127.0.0.1:{server.port}"
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", target if proxied == "first-hop" else first_hop)
        async with WebsocketConnectionPool(f"ws://{first_hop}/") as pool, pool.acquire() as conn:
            await round_trip(conn, "redirected")
        assert len(redirects) == 1
    assert tunnelled == [first_hop if proxied == "first-hop" else target]


@pytest.mark.parametrize("proxied", ["first-hop", "redirect-target"])
async def test_the_tls_settings_of_an_https_proxy_go_only_to_the_hops_through_it(
    proxied: str, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``proxy_ssl`` is for the proxy: a hop the environment sends direct must not get it.

    websockets alone hands it to the loop's ``create_connection()`` for a
    direct hop, which raises ``TypeError``: here on the redirect's target, or
    on the first hop, whichever ``NO_PROXY`` exempts.
    """
    clear_proxy_environment(monkeypatch)
    ca = trustme.CA()
    async with (
        connect_proxy(tls=server_context(ca, "127.0.0.1")) as (proxy, tunnelled),
        http_server(redirect_to(server.uri)) as (port, redirects),
    ):
        first_hop, target = f"127.0.0.1:{port}", f"127.0.0.1:{server.port}"
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", target if proxied == "first-hop" else first_hop)
        async with (
            WebsocketConnectionPool(f"ws://{first_hop}/", proxy_ssl=trusting(ca)) as pool,
            pool.acquire() as conn,
        ):
            await round_trip(conn, "redirected")
        assert len(redirects) == 1
    assert tunnelled == [first_hop if proxied == "first-hop" else target]


async def test_the_tls_settings_of_an_https_proxy_are_left_out_for_an_http_proxy(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """websockets refuses ``proxy_ssl`` for an ``http://`` proxy: the environment chose that one."""
    clear_proxy_environment(monkeypatch)
    async with connect_proxy() as (proxy, tunnelled):
        assert proxy.startswith("http://")
        monkeypatch.setenv("HTTP_PROXY", proxy)
        tls = trusting(trustme.CA())
        async with (
            WebsocketConnectionPool(server.uri, proxy_ssl=tls) as pool,
            pool.acquire() as conn,
        ):
            await round_trip(conn, "through a plain proxy")
    assert tunnelled == [f"127.0.0.1:{server.port}"]


async def test_a_proxy_given_is_kept_for_a_redirect_target(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``proxy=`` is the user's choice for every hop, as in websockets: not looked up again."""
    clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the environment would bypass it
    async with (
        connect_proxy() as (proxy, tunnelled),
        http_server(redirect_to(server.uri)) as (port, _),
        WebsocketConnectionPool(f"ws://127.0.0.1:{port}/", proxy=proxy) as pool,
        pool.acquire() as conn,
    ):
        await round_trip(conn, "redirected")
    assert tunnelled == [f"127.0.0.1:{port}", f"127.0.0.1:{server.port}"]


@contextlib.asynccontextmanager
async def pooled_echo(
    handler: Callable[[ServerConnection], Awaitable[None]] = echo, **server_options: Any
) -> AsyncIterator[PooledWebSocket]:
    """A pooled websocket (what a pool's connections are) to a websockets server (an echo)."""
    async with serve(handler, "127.0.0.1", 0, **server_options) as server:
        port = server.sockets[0].getsockname()[1]
        create = pooled_class(ClientConnection)
        async with connect(
            f"ws://127.0.0.1:{port}", create_connection=create, compression=None
        ) as ws:
            assert isinstance(ws, PooledWebSocket)
            yield ws


async def test_send_in_turn_writes_the_first_frame_at_once_and_the_rest_together() -> None:
    async with pooled_echo() as ws:
        assert [send_in_turn(ws, f"m{n}".encode(), text=True) for n in range(5)] == [True] * 5
        assert len(ws.protocol.writes) == 4  # the first went out; four wait for the turn's end
        await asyncio.sleep(0)
        assert ws.protocol.writes == []
        assert [await ws.recv() for _ in range(5)] == [f"m{n}" for n in range(5)]
        assert send_in_turn(ws, b"next turn", text=False)  # a new turn writes at once again
        assert ws.protocol.writes == []
        assert await ws.recv() == b"next turn"


@pytest.mark.parametrize("size", [20 * 1024, 256 * 1024])
async def test_a_turn_of_large_frames_is_written_as_it_goes_and_pauses_like_send(
    size: int,
) -> None:
    """What a turn holds back stays small; a full write buffer sends callers to ``send()``.

    Before: every frame after the first waited for the turn's end, however
    large, and was copied once more by the join (a review measured 1 GB
    traced for 256 requests of 1 MiB); ``paused`` never tripped in the turn.
    """
    stop_reading = asyncio.Event()

    async def stalled(conn: ServerConnection) -> None:
        await stop_reading.wait()

    # close_timeout: its reading paused, the server would wait 10 s to see the client gone.
    options = {"max_size": None, "max_queue": 1, "close_timeout": 0.1}
    async with pooled_echo(stalled, **options) as ws:
        ws.transport.set_write_buffer_limits(high=64 * 1024)
        chunk = b"x" * size
        held: list[int] = []
        try:
            for _ in range(100_000_000 // size):  # one turn; the kernel's buffers hold a few MB
                if not send_in_turn(ws, chunk, text=False):
                    break
                held.append(sum(map(len, ws.protocol.writes)))
            assert ws.paused  # so send_in_turn refused, and the caller would await send()
        finally:
            stop_reading.set()
            await close_quietly(ws)
        header = 2 + 8 + 4  # at most, per frame: opcode and length bytes, a 64-bit length, a mask
        assert max(held) <= TURN_BYTES + header * (TURN_BYTES // size + 1)


async def test_a_send_that_writes_itself_writes_the_turns_frames_first() -> None:
    """A ``send()``, a ping or the close writes websockets' buffer: the wire keeps the order."""
    async with pooled_echo() as ws:
        for message in ("a", "b", "c"):
            send_in_turn(ws, message.encode(), text=True)
        await ws.send("d")
        pong = await ws.ping()
        assert [await ws.recv() for _ in range(4)] == ["a", "b", "c", "d"]
        await asyncio.wait_for(pong, 5.0)


async def test_send_in_turn_refuses_what_send_at_once_refuses() -> None:
    async with pooled_echo() as ws:
        await ws.close()
        assert not send_in_turn(ws, b"late", text=True)
        assert ws.protocol.writes == []


async def test_frames_of_a_connection_lost_in_the_turn_are_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No write to a closed transport (asyncio warns of those): the frames went with it."""
    async with pooled_echo() as ws:
        send_in_turn(ws, b"first", text=True)
        send_in_turn(ws, b"second", text=True)
        ws.transport.abort()
        await asyncio.sleep(0)
        assert not ws.writing_in_turn
        await ws.wait_closed()
    assert not [r for r in caplog.records if r.name == "asyncio"]
