"""Fixtures shared by the pool tests: a loopback server and a leak check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from loopback import LoopbackServer


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    """A fresh echo server on 127.0.0.1, port 0."""
    async with LoopbackServer().running() as running:
        yield running


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
