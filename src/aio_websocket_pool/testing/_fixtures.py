"""The pytest fixtures of :mod:`aio_websocket_pool.testing`.

Registered by the plugin (``_plugin``) only once pytest-asyncio is active:
this module imports it. The fixtures are declared with
``pytest_asyncio.fixture``, which works in pytest-asyncio's strict mode as
well as its auto mode; they run in the event loop of
``asyncio_default_fixture_loop_scope``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from ._proxy import TcpProxy
from ._server import LoopbackServer


@pytest_asyncio.fixture
async def websocket_server() -> AsyncIterator[LoopbackServer]:
    """A fresh echo server on 127.0.0.1, on an ephemeral port, for one test."""
    async with LoopbackServer().running() as server:
        yield server


@pytest_asyncio.fixture
async def websocket_proxy(websocket_server: LoopbackServer) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of ``websocket_server``: connect to ``websocket_proxy.uri``."""
    async with TcpProxy(websocket_server.port).running() as proxy:
        yield proxy
