"""The pool's background tasks (``_tasks``): names, cancelling workers, waiting for closers.

On a real event loop with plain coroutines; the pool's own tasks (handshakes,
drains, closings) are exercised against servers in the pool's tests, and the
suite's conftest fails any test that leaves one running.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Hashable

import pytest

from aio_websocket_pool import ConnectionUnavailableError
from aio_websocket_pool._tasks import BackgroundTasks


def tasks_of(closed: list[Hashable]) -> BackgroundTasks:
    return BackgroundTasks("pool-test", closed.append)


async def test_a_task_is_named_after_its_pool_and_forgotten_once_it_ends() -> None:
    tasks = tasks_of([])
    task = tasks.spawn(asyncio.sleep(0), "open conn-1")
    assert task.get_name() == "aio_websocket_pool pool-test open conn-1"
    assert tasks.workers == {task}
    await task
    await asyncio.sleep(0)  # its done callbacks run
    assert tasks.workers == set()


async def test_cancelling_workers_leaves_the_closers_running() -> None:
    closed: list[Hashable] = []
    tasks = tasks_of(closed)
    worker = tasks.spawn(asyncio.sleep(10), "keeper")
    closer = tasks.spawn_closer("conn-1", asyncio.sleep(0.01), "close conn-1")
    assert tasks.closer_of("conn-1") is closer
    tasks.cancel_workers()
    async with asyncio.timeout(1.0):
        await tasks.wait_all()
    assert worker.cancelled()
    assert not closer.cancelled()
    assert closed == ["conn-1"]  # told once its closing ended
    assert tasks.closer_of("conn-1") is None


async def test_waiting_for_all_waits_for_tasks_started_meanwhile() -> None:
    tasks = tasks_of([])
    finished: list[str] = []

    async def second() -> None:
        await asyncio.sleep(0.01)
        finished.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        tasks.spawn(second(), "second")  # started while wait_all waits
        finished.append("first")

    tasks.spawn(first(), "first")
    async with asyncio.timeout(1.0):
        await tasks.wait_all()
    assert finished == ["first", "second"]


async def test_cancelling_the_wait_does_not_cancel_a_closer() -> None:
    tasks = tasks_of([])
    closer = tasks.spawn_closer("conn-1", asyncio.sleep(0.05), "close conn-1")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await tasks.wait_all()
    assert not closer.done()
    await closer


async def test_an_unexpected_failure_is_logged_and_the_pools_own_errors_are_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = tasks_of([])

    async def fails(error: Exception) -> None:
        raise error

    expected = tasks.spawn(fails(ConnectionUnavailableError("no route")), "open conn-1")
    bug = tasks.spawn(fails(ZeroDivisionError("a bug")), "drain conn-2")
    await asyncio.wait({expected, bug})
    await asyncio.sleep(0)
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == [
        "background task aio_websocket_pool pool-test drain conn-2 failed"
    ]


async def test_a_running_task_does_not_keep_its_pool_alive() -> None:
    """The done callback holds the task set weakly: an abandoned pool can still be collected."""
    tasks = tasks_of([])
    task = tasks.spawn(asyncio.sleep(0.01), "keeper")
    alive = weakref.ref(tasks)
    del tasks
    gc.collect()
    assert alive() is None
    assert not task.done()
    await task  # its callback finds nobody to tell, and says nothing
