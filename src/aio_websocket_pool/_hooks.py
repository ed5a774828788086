"""Running the user's hooks: bounded, and failing in one typed way.

A hook is user code on the pool's path: it may raise anything, or never
return. Both must cost the pool only the connection the hook ran on, never a
slot or a task, so every hook runs under ``hook_timeout`` and any failure
becomes a :class:`~aio_websocket_pool.ConnectionHookError` whose message names
the hook and the exception's type, never its text (which may quote a token).
Cancellation of the task the hook runs in is not a failure of the hook: it
propagates. A ``CancelledError`` the hook raises while its task was not
cancelled (it awaited a future someone else cancelled) is one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from ._exceptions import ConnectionHookError


async def run_hook(name: str, call: Awaitable[None], *, seconds: float) -> None:
    """Await ``call`` (a hook's coroutine) for at most ``seconds``.

    Raises:
        ConnectionHookError: The hook raised or timed out; ``__cause__`` is why.
    """
    try:
        async with asyncio.timeout(seconds) as deadline:
            await call
    except TimeoutError as exc:
        if deadline.expired():
            raise ConnectionHookError(
                f"{name} did not finish within hook_timeout={seconds:g}s", hook=name
            ) from exc
        raise ConnectionHookError(f"{name} raised TimeoutError", hook=name) from exc
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        raise ConnectionHookError(f"{name} raised CancelledError", hook=name) from exc
    except Exception as exc:
        raise ConnectionHookError(f"{name} raised {type(exc).__name__}", hook=name) from exc
