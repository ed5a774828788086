"""A TCP proxy on 127.0.0.1 that injects faults below the WebSocket layer.

The loopback server can misbehave as a WebSocket peer; some faults only the
network can make. Put this proxy between the pool and the server and it can
freeze a connection (stop forwarding while both sockets stay open: a half-open
peer, or a silent one, that only a ping timeout reveals), slow every chunk of
bytes down, or drop connections without a closing handshake.

It forwards bytes and nothing else: it knows nothing of WebSocket frames, so
what it does to a connection is what a network could do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

#: Bytes read from a socket at a time (a message or a few at loopback sizes).
CHUNK_SIZE: Final = 65536


class ProxyLink:
    """One client connection through the proxy, and its twin to the server.

    Attributes:
        client_port: The client's local TCP port: how a test finds the link of
            one WebSocket connection (``conn.websocket.local_address[1]``).
    """

    def __init__(self, client_port: int) -> None:
        self.client_port = client_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._aborted = False
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def is_frozen(self) -> bool:
        """Whether it forwards nothing right now."""
        return not self._flowing.is_set()

    def freeze(self) -> None:
        """Stop forwarding in both directions; both sockets stay open."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Forward again, starting with what arrived while frozen."""
        self._flowing.set()

    def abort(self) -> None:
        """Drop both TCP connections at once, with no closing handshake (frozen or not)."""
        self._aborted = True
        self._flowing.set()  # wakes its pumps, which see it is down
        for writer in self._writers:
            writer.transport.abort()

    def __repr__(self) -> str:
        return f"<ProxyLink client port {self.client_port}{' frozen' if self.is_frozen else ''}>"


class TcpProxy:
    """Forwards TCP connections from 127.0.0.1:``port`` to the upstream server.

    Start it with ``async with TcpProxy(server.port).running() as proxy:``, or
    use the ``websocket_proxy`` pytest fixture (in front of
    ``websocket_server``). Connect to :attr:`uri` instead of the server's.

    Args:
        upstream_port: The server's TCP port.
        upstream_host: The server's address.
        delay: Seconds each chunk of bytes waits before it is forwarded, in
            either direction (changeable at run time). A chunk is what one read
            returns: a WebSocket frame or a few, at the sizes tests use.

    Attributes:
        open_connections: Client connections open through the proxy right now.
        total_connections: Client connections accepted, in all.
    """

    def __init__(
        self, upstream_port: int, *, upstream_host: str = "127.0.0.1", delay: float = 0.0
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.delay = delay
        self.open_connections = 0
        self.total_connections = 0
        self._links: dict[ProxyLink, asyncio.Task[None]] = {}
        self._server: asyncio.Server | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        if not self._port:
            raise RuntimeError("the proxy has not been started")
        return self._port

    @property
    def uri(self) -> str:
        """``ws://127.0.0.1:<port>/``: the server's URI, through the proxy."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def links(self) -> tuple[ProxyLink, ...]:
        """The connections open through it, oldest first."""
        return tuple(self._links)

    def link(self, client_port: int) -> ProxyLink:
        """The link of the client connection from local port ``client_port``.

        Raises:
            LookupError: No open link comes from that port.
        """
        for link in self._links:
            if link.client_port == client_port:
                return link
        raise LookupError(f"no connection through the proxy from port {client_port}")

    def freeze(self) -> int:
        """Freeze every open link (see :meth:`ProxyLink.freeze`); return how many.

        Connections opened afterwards flow: a pool can replace the frozen ones.
        """
        for link in self._links:
            link.freeze()
        return len(self._links)

    def thaw(self) -> None:
        """Thaw every link."""
        for link in self._links:
            link.thaw()

    def abort(self) -> int:
        """Drop every open connection at once (see :meth:`ProxyLink.abort`); return how many."""
        for link in self._links:
            link.abort()
        return len(self._links)

    # -- running ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TcpProxy]:
        """Listen on an ephemeral port of 127.0.0.1 for the ``async with`` block."""
        self._server = await asyncio.start_server(self._serve_link, "127.0.0.1", 0)
        self._port = int(self._server.sockets[0].getsockname()[1])
        try:
            yield self
        finally:
            self._server.close()
            self.abort()
            await asyncio.gather(*self._links.values())
            await self._server.wait_closed()

    async def _serve_link(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101  (asyncio runs each handler in a task)
        link = ProxyLink(client_writer.get_extra_info("peername")[1])
        link._writers.append(client_writer)
        self._links[link] = task
        self.open_connections += 1
        self.total_connections += 1
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:  # the server is down: so is the client's connection
                client_writer.transport.abort()
                return
            link._writers.append(upstream_writer)
            await asyncio.gather(
                self._pump(link, client_reader, upstream_writer),
                self._pump(link, upstream_reader, client_writer),
            )
        finally:
            link.abort()
            del self._links[link]
            self.open_connections -= 1

    async def _pump(
        self, link: ProxyLink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Forward one direction until end of stream, then pass the end on.

        A frozen link reads nothing either: not even a reset or an end of
        stream gets through, as on a network that dropped the path.
        """
        try:
            while await self._flows(link) and (data := await reader.read(CHUNK_SIZE)):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if not await self._flows(link):
                    return
                writer.write(data)
                await writer.drain()
            if await self._flows(link) and writer.can_write_eof():
                writer.write_eof()
        except OSError:  # one side reset: reset the other too, as a network would
            link.abort()

    @staticmethod
    async def _flows(link: ProxyLink) -> bool:
        """Wait while ``link`` is frozen; whether it is still up."""
        await link._flowing.wait()
        return not link._aborted
