"""A real websockets echo server on 127.0.0.1 with knobs that tests turn at run time.

No mock of the network: every test talks to this server over loopback TCP.
The knobs inject the faults the pool must survive: slow or refused
handshakes, stray messages after each reply, server-side closes, and frozen
connections (the server stops reading, so pings go unanswered).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


@dataclass
class LoopbackServer:
    """Echo server whose behaviour tests change while it runs.

    Attributes:
        handshake_delay: Seconds each handshake waits before it is answered.
        handshake_gate: While set (by :meth:`hold_handshakes`), every handshake
            waits for this event before it is answered: tests see handshakes
            in flight for as long as they need, whatever the machine's load.
        stray_messages: Extra messages sent after each echoed reply.
        stray_interval: Seconds between two stray messages (0: all at once);
            with both set, a reply is followed by a bounded, steady stream.
        open_connections: WebSocket connections open right now.
        peak_connections: The most that were ever open at once.
        handshakes: Handshakes that were accepted.
        handshakes_in_flight: Handshake requests being processed right now.
        peak_handshakes_in_flight: The most handshakes ever processed at once
            (above 1 means clients connected in parallel).
        request_headers: The headers of every handshake request, in order.
    """

    handshake_delay: float = 0.0
    handshake_gate: asyncio.Event | None = None
    stray_messages: int = 0
    stray_interval: float = 0.0
    open_connections: int = 0
    peak_connections: int = 0
    handshakes: int = 0
    handshakes_in_flight: int = 0
    peak_handshakes_in_flight: int = 0
    request_headers: list[Headers] = field(default_factory=list)
    _refusals: list[int] = field(default_factory=list)
    _frozen: list[ServerConnection] = field(default_factory=list)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)
    _server: Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def connections(self) -> set[ServerConnection]:
        assert self._server is not None
        return set(self._server.connections)

    def hold_handshakes(self) -> None:
        """Keep every handshake from now on in flight until :meth:`release_handshakes`."""
        self.handshake_gate = asyncio.Event()

    def release_handshakes(self) -> None:
        """Answer every held handshake, and hold no more (shutdown does it too)."""
        gate, self.handshake_gate = self.handshake_gate, None
        if gate is not None:
            gate.set()

    def refuse(self, count: int, status: int) -> None:
        """Answer the next ``count`` handshakes with HTTP ``status``."""
        self._refusals.extend([status] * count)

    async def close_connections(self, code: int = 1000, *, linger: bool = False) -> None:
        """Close every open connection from the server side with ``code``.

        With ``linger``, only the close frame goes out: the server stops reading
        (as in :meth:`freeze`), so the closing handshake and the TCP close wait
        for :meth:`thaw`, and clients sit in websockets' CLOSING state meanwhile.
        """
        if not linger:
            await asyncio.gather(*(conn.close(code) for conn in self.connections))
            return
        closing = self.connections
        self.freeze()
        self._closing.update(asyncio.create_task(conn.close(code)) for conn in closing)

    def freeze(self) -> None:
        """Stop reading on every open connection: pings go unanswered, sockets stay open."""
        for conn in self.connections:
            conn.transport.pause_reading()
            self._frozen.append(conn)

    def thaw(self) -> None:
        """Read again on every frozen connection (shutdown does it, so it never waits on one)."""
        while self._frozen:
            self._frozen.pop().transport.resume_reading()

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.request_headers.append(request.headers)
        self.handshakes_in_flight += 1
        self.peak_handshakes_in_flight = max(
            self.peak_handshakes_in_flight, self.handshakes_in_flight
        )
        try:
            if self.handshake_delay:
                await asyncio.sleep(self.handshake_delay)
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
                await conn.send(message)
                for n in range(self.stray_messages):
                    if self.stray_interval:
                        await asyncio.sleep(self.stray_interval)
                    await conn.send(f"stray {n}")
        except Exception:  # noqa: S110  (a test may close or freeze it mid-send)
            pass
        finally:
            self.open_connections -= 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoopbackServer]:
        """Serve on an ephemeral port of 127.0.0.1 for the ``async with`` block."""
        async with serve(
            self._handler, "127.0.0.1", 0, process_request=self._process_request
        ) as server:
            self._server = server
            try:
                yield self
            finally:
                self.thaw()  # else closing a frozen connection waits for its close_timeout
                self.release_handshakes()  # else closing waits for held handshakes
                await asyncio.gather(*self._closing)
                server.close()
                await server.wait_closed()
