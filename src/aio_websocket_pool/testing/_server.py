"""A real websockets echo server on 127.0.0.1 whose faults tests switch on at run time.

No mock of the network: the pool under test talks to this server over loopback
TCP, and each knob injects one fault a pool must survive. Every knob is a
plain attribute or method, so a test turns it between two awaits and the next
handshake, request or reply sees it.

Echo replies are the request, byte for byte. Unsolicited messages (the
*strays*) start with :data:`STRAY_PREFIX`, so a test can always tell a stray
from a reply, and a reply meant for one request from one meant for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import random
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Data

#: Every message the server sends that is not the echo of a request starts with this.
STRAY_PREFIX: Final = "stray "

#: Which connections :meth:`LoopbackServer.close_connections` closes: all of
#: them, those with no request in flight, or those with one (see ``reply_delay``).
Which = Literal["all", "idle", "busy"]


@dataclass
class LoopbackServer:
    """An echo server whose behaviour tests change while it runs.

    Start it with ``async with LoopbackServer().running() as server:``, or use
    the ``websocket_server`` pytest fixture. Connect to :attr:`uri`.

    Attributes:
        handshake_delay: Seconds each handshake waits before it is answered.
        handshake_gate: While set (by :meth:`hold_handshakes`), every handshake
            waits for this event before it is answered: tests see handshakes
            in flight for as long as they need, whatever the machine's load.
        reply_delay: Seconds between receiving a request and echoing it. A
            connection in that window is *busy* for :meth:`close_connections`.
        stray_messages: Unsolicited messages sent after each echoed reply.
        stray_interval: Seconds before each of those (0: all at once); with
            both set, a reply is followed by a bounded, steady stream.
        stray_chance: Probability (0 to 1) that a reply is followed by one more
            stray, drawn from a generator seeded with ``seed``.
        seed: Seeds the random draws of ``stray_chance``, so a run repeats.
        ssl_context: Serve TLS with this server-side context (``wss://``), e.g.
            one made with ``trustme``; ``None`` serves plain ``ws://``.
        open_connections: WebSocket connections whose handler runs right now.
        peak_connections: The most that were ever open at once.
        handshakes: Handshakes accepted, in all (the total of connections).
        handshakes_in_flight: Handshake requests being processed right now.
        peak_handshakes_in_flight: The most handshakes ever processed at once
            (above 1 means clients connected in parallel).
        open_sockets: TCP connections open on the server's side right now,
            whatever their handshake's fate: zero after a clean shutdown. With
            TLS, a socket counts once its TLS handshake succeeded (put a
            :class:`TcpProxy` in front to count every TCP connection).
        total_sockets: TCP connections accepted, in all.
        request_headers: The headers of every handshake request, in order.
    """

    handshake_delay: float = 0.0
    handshake_gate: asyncio.Event | None = None
    reply_delay: float = 0.0
    stray_messages: int = 0
    stray_interval: float = 0.0
    stray_chance: float = 0.0
    seed: int = 0
    ssl_context: ssl.SSLContext | None = None
    open_connections: int = 0
    peak_connections: int = 0
    handshakes: int = 0
    handshakes_in_flight: int = 0
    peak_handshakes_in_flight: int = 0
    open_sockets: int = 0
    total_sockets: int = 0
    request_headers: list[Headers] = field(default_factory=list)
    _refusals: list[int] = field(default_factory=list, repr=False)
    _closes_instead_of_replies: list[int] = field(default_factory=list, repr=False)
    _busy: set[ServerConnection] = field(default_factory=set, repr=False)
    _frozen: list[ServerConnection] = field(default_factory=list, repr=False)
    _closing: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _server: Server | None = field(default=None, repr=False)
    _port: int = field(default=0, repr=False)
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311  (repeatable runs, not secrets)

    # -- where it is ----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port it listens on; the same after :meth:`start` as before :meth:`stop`."""
        if not self._port:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def uri(self) -> str:
        """``ws://127.0.0.1:<port>/``, or ``wss://`` with an ``ssl_context``."""
        scheme = "ws" if self.ssl_context is None else "wss"
        return f"{scheme}://127.0.0.1:{self.port}/"

    @property
    def is_serving(self) -> bool:
        """Whether it accepts connections (false between :meth:`stop` and :meth:`start`)."""
        return self._server is not None

    @property
    def requests_in_flight(self) -> int:
        """Connections with a request received and not yet answered (see ``reply_delay``)."""
        return len(self._busy)

    @property
    def connections(self) -> set[ServerConnection]:
        """The WebSocket connections open right now (handshake done, not closing)."""
        return set() if self._server is None else set(self._server.connections)

    # -- handshakes ------------------------------------------------------------------

    def hold_handshakes(self) -> None:
        """Keep every handshake from now on in flight until :meth:`release_handshakes`."""
        self.handshake_gate = asyncio.Event()

    def release_handshakes(self) -> None:
        """Answer every held handshake, and hold no more (shutdown does it too)."""
        gate, self.handshake_gate = self.handshake_gate, None
        if gate is not None:
            gate.set()

    def refuse(self, count: int, status: int) -> None:
        """Answer the next ``count`` handshakes with HTTP ``status`` (e.g. 401, 503)."""
        http.HTTPStatus(status)  # fail here, not in the server, on a status that is not one
        self._refusals.extend([status] * count)

    # -- closing connections -----------------------------------------------------------

    async def close_connections(
        self,
        code: int = 1000,
        *,
        linger: bool = False,
        which: Which = "all",
        limit: int | None = None,
    ) -> int:
        """Close open connections from the server's side with close ``code``.

        Args:
            code: The close code sent, e.g. 1001 (going away), 1011, 1012.
            linger: Send only the close frame: the server stops reading (as in
                :meth:`freeze`), so the closing handshake and the TCP close wait
                for :meth:`thaw`, and clients sit in websockets' CLOSING state.
            which: ``"idle"`` closes connections with no request in flight,
                ``"busy"`` those with one (a request waiting out ``reply_delay``).
            limit: Close at most this many of them.

        Returns:
            How many connections it closed.
        """
        chosen = self._select(which)[:limit]
        if linger:
            self._freeze(chosen)
            self._closing.update(asyncio.create_task(conn.close(code)) for conn in chosen)
        else:
            await asyncio.gather(*(conn.close(code) for conn in chosen))
        return len(chosen)

    def close_instead_of_replying(self, count: int, code: int = 1011) -> None:
        """Answer the next ``count`` requests by closing their connection with ``code``.

        The deterministic way to close a connection under its borrower: the
        request was sent, its reply never comes.
        """
        self._closes_instead_of_replies.extend([code] * count)

    def _select(self, which: Which) -> list[ServerConnection]:
        open_now = self.connections
        if which == "idle":
            open_now -= self._busy
        elif which == "busy":
            open_now &= self._busy
        return sorted(open_now, key=id)

    # -- unsolicited messages -------------------------------------------------------------

    async def push(self, message: str = f"{STRAY_PREFIX}push", *, which: Which = "all") -> int:
        """Send ``message`` on open connections now, asked for by no one.

        Returns:
            How many connections it was sent on (a connection closing meanwhile
            is skipped).
        """
        sent = 0
        for conn in self._select(which):
            with contextlib.suppress(ConnectionClosed):  # it closed meanwhile: no stray then
                await conn.send(message)
                sent += 1
        return sent

    # -- silence --------------------------------------------------------------------------

    def freeze(self) -> None:
        """Stop reading on every open connection: no pong, no reply, the socket stays open.

        This is how the server stops answering pings: websockets answers them
        as it reads, so a server that does not read does not answer. The
        connection looks alive to TCP; only a ping timeout reveals it.
        """
        self._freeze(self.connections)

    def thaw(self) -> None:
        """Read again on every frozen connection (shutdown does it, so it never waits on one)."""
        while self._frozen:
            self._frozen.pop().transport.resume_reading()

    def _freeze(self, connections: Iterable[ServerConnection]) -> None:
        for conn in connections:
            conn.transport.pause_reading()
            self._frozen.append(conn)

    # -- running, stopping, restarting -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoopbackServer]:
        """Serve on an ephemeral port of 127.0.0.1 for the ``async with`` block."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def start(self) -> None:
        """Listen: on a new ephemeral port the first time, on the same port after :meth:`stop`.

        Does nothing if it is serving already.
        """
        if self._server is not None:
            return
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            self._port,
            process_request=self._process_request,
            create_connection=self._counting_connection_class(),
            ssl=self.ssl_context,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self, code: int = 1001) -> None:
        """Close every connection with ``code`` and stop listening; :meth:`start` restarts.

        Clients see their connections closed (1001, going away, by default;
        1012 says service restart), then connection refused until the restart.
        Idempotent.
        """
        server, self._server = self._server, None
        if server is None:
            return
        await _stop_accepting(server)
        self.thaw()  # else closing a frozen connection waits for its close_timeout
        self.release_handshakes()  # else closing waits for held handshakes
        try:
            await asyncio.gather(*(conn.close(code) for conn in server.connections))
            await asyncio.gather(*self._closing)
        finally:  # even if cancelled: a restart must find the port free
            self._closing.clear()
            server.close()
            await server.wait_closed()

    def _counting_connection_class(self) -> type[ServerConnection]:
        """A ServerConnection that keeps :attr:`open_sockets` and :attr:`total_sockets`."""
        loopback = self

        class CountingConnection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                loopback.open_sockets += 1
                loopback.total_sockets += 1
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                loopback.open_sockets -= 1
                super().connection_lost(exc)

        return CountingConnection

    # -- the handlers ------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.request_headers.append(request.headers)
        self.handshakes_in_flight += 1
        self.peak_handshakes_in_flight = max(
            self.peak_handshakes_in_flight, self.handshakes_in_flight
        )
        try:
            await _wait_unless_closed(conn, self.handshake_delay)
            if self.handshake_gate is not None:
                await self.handshake_gate.wait()
        finally:
            self.handshakes_in_flight -= 1
        if self._refusals:
            status = http.HTTPStatus(self._refusals.pop(0))
            return conn.respond(status, f"{status.phrase}\n")
        return None

    async def _handler(self, conn: ServerConnection) -> None:
        self.handshakes += 1
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        try:
            async for message in conn:
                if self._closes_instead_of_replies:
                    await conn.close(self._closes_instead_of_replies.pop(0))
                    break
                await self._reply(conn, message)
        except ConnectionClosed:  # a test closed it, or stopped the server, mid-reply
            pass
        finally:
            self._busy.discard(conn)
            self.open_connections -= 1

    async def _reply(self, conn: ServerConnection, message: Data) -> None:
        self._busy.add(conn)
        await _wait_unless_closed(conn, self.reply_delay)
        await conn.send(message)
        self._busy.discard(conn)
        strays = self.stray_messages
        if self.stray_chance and self._random.random() < self.stray_chance:
            strays += 1
        for n in range(strays):
            if self.stray_interval:
                await asyncio.sleep(self.stray_interval)
            await conn.send(f"{STRAY_PREFIX}{n}")


async def _wait_unless_closed(conn: ServerConnection, seconds: float) -> None:
    """Wait ``seconds``, less if the client goes: a delay must not outlive its connection."""
    if seconds:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await conn.wait_closed()


async def _stop_accepting(server: Server) -> None:
    """Stop accepting connections, and let those just accepted be set up first.

    asyncio (3.11) leaks the socket of a connection it accepted in the same
    loop iteration as the server's close(): the transport is never made. So
    the listening sockets stop being read first, and the loop turns once so
    that connections already accepted get their transport (and are then
    closed like every other).
    """
    loop = asyncio.get_running_loop()
    for sock in server.sockets:
        loop.remove_reader(sock.fileno())
    await asyncio.sleep(0)
