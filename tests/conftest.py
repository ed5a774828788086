"""Fixtures shared by the pool tests: the loopback servers and a leak check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported at run time, the plugin could not be loaded as a plugin
    from aio_websocket_pool.testing import JsonRpcServer, LoopbackServer
    from servers import PushingServer

# Installed, the package's pytest11 entry point has loaded the plugin under this very name, and
# the line does nothing; run from a clone on PYTHONPATH, with no entry point, it loads it.
pytest_plugins = ["aio_websocket_pool.testing"]


@pytest.fixture
def server(websocket_server: LoopbackServer) -> LoopbackServer:
    """A fresh echo server on 127.0.0.1, port 0 (the harness's fixture, by its short name)."""
    return websocket_server


@pytest.fixture(params=["websockets", "aiohttp"])
async def any_server(request: pytest.FixtureRequest) -> AsyncIterator[PushingServer]:
    """An echo server on 127.0.0.1 of each kind in turn: websockets', then aiohttp's."""
    # Imported here: at the top they would import the harness before pytest loads it.
    from aio_websocket_pool.testing import LoopbackServer  # noqa: PLC0415
    from aiohttp_server import AiohttpServer  # noqa: PLC0415
    from servers import WebsocketsServer  # noqa: PLC0415

    if request.param == "websockets":
        async with LoopbackServer().running() as server:
            yield WebsocketsServer(server)
    else:
        async with AiohttpServer().running() as other:
            yield other


@pytest.fixture
async def rpc_server() -> AsyncIterator[JsonRpcServer]:
    """A fresh JSON-RPC 2.0 server on 127.0.0.1, port 0."""
    from aio_websocket_pool.testing import JsonRpcServer  # noqa: PLC0415  (as any_server's)

    async with JsonRpcServer().running() as server:
        yield server


@pytest.fixture(autouse=True)
async def no_task_left_behind() -> AsyncIterator[None]:
    """Fail a test that leaves any task of the pool running after it ends."""
    yield
    await asyncio.sleep(0)  # let done-callbacks of finished tasks run
    left = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("aio_websocket_pool") and not task.done()
    ]
    assert not left, f"tasks left running: {[task.get_name() for task in left]}"


@pytest.fixture
def quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    """No DEBUG logs from the libraries: websockets logs every frame, which slows heavy tests.

    Set on the libraries' own loggers: pytest sets the root logger back to
    the configured DEBUG for the call phase of each test.
    """
    for name in ("websockets", "aio_websocket_pool", "transitions"):
        caplog.set_level(logging.WARNING, logger=name)
