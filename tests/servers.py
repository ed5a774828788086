"""The little every test server offers that the cross-server tests need: a URI and a push.

The idle-burst tests run against each server of :func:`conftest.any_server`
through :class:`PushingServer`, so that they cannot depend on one server's
way of framing or buffering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from loopback import LoopbackServer


class PushingServer(Protocol):
    """An echo server on 127.0.0.1 that can send messages nobody asked for."""

    @property
    def uri(self) -> str:
        """Where to connect."""
        ...

    async def push(self, message: str, count: int = 1) -> None:
        """Send ``message``, ``count`` times, on every open connection."""
        ...


@dataclass
class WebsocketsServer:
    """The harness's :class:`LoopbackServer` (websockets), seen as a :class:`PushingServer`."""

    server: LoopbackServer

    @property
    def uri(self) -> str:
        """The loopback server's URI."""
        return self.server.uri

    async def push(self, message: str, count: int = 1) -> None:
        """Send ``message``, ``count`` times, on every open connection."""
        for _ in range(count):
            await self.server.push(message)
