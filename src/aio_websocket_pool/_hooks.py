"""Running the user's hooks: bounded, failing in one typed way, and visibly.

A hook is user code on the pool's path: it may raise anything, or never
return. Both must cost the pool only the connection the hook ran on, never a
slot or a task, so every hook runs under ``hook_timeout`` and any failure
becomes a :class:`~aio_websocket_pool.ConnectionHookError` whose message names
the hook and the exception's type, never its text (which may quote a token).
Each failure is also logged once, as a WARNING: a hook that always fails
otherwise only shows as connections that keep being replaced.

Cancellation of the task the hook runs in is not a failure of the hook: it
propagates. A ``CancelledError`` the hook raises while its task was not
cancelled (it awaited a future someone else cancelled) is one.

While a hook runs, it alone may talk on its pooled connection
(:class:`HookAccess`); one that leaves a reply owed fails as raising would.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from ._exceptions import ConnectionHookError
from ._redact import mask

logger: Final = logging.getLogger("aio_websocket_pool")


async def run_hook(
    name: str, call: Awaitable[None], *, seconds: float, where: str, secrets: tuple[str, ...]
) -> None:
    """Await ``call`` (a hook's coroutine) for at most ``seconds``.

    Args:
        name: The hook's name, for messages.
        call: The hook's coroutine.
        seconds: ``hook_timeout``.
        where: The id of the connection it runs on, for the log.
        secrets: The pool's secrets, masked in the logged exception message.

    Raises:
        ConnectionHookError: The hook raised or timed out; ``__cause__`` is why.
    """
    try:
        async with asyncio.timeout(seconds) as deadline:
            await call
    except TimeoutError as exc:
        if deadline.expired():
            error = ConnectionHookError(
                f"{name} did not finish within hook_timeout={seconds:g}s", hook=name
            )
        else:
            error = ConnectionHookError(f"{name} raised {type(exc).__name__}", hook=name)
        raise _reported(error, exc, where, secrets) from exc
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        error = ConnectionHookError(f"{name} raised CancelledError", hook=name)
        raise _reported(error, exc, where, secrets) from exc
    except Exception as exc:
        error = ConnectionHookError(f"{name} raised {type(exc).__name__}", hook=name)
        raise _reported(error, exc, where, secrets) from exc


def report_callback_failure(
    what: str, exc: BaseException, where: str, secrets: tuple[str, ...]
) -> None:
    """Log a user callback's failure: one WARNING, the traceback at DEBUG."""
    text = mask(str(exc), secrets)
    logger.warning("%s failed on %s: %s%s", what, where, type(exc).__name__,
                   f": {text}" if text else "")  # fmt: skip
    if logger.isEnabledFor(logging.DEBUG):
        printed = mask("".join(traceback.format_exception(exc)), secrets)
        logger.debug("%s failed on %s:\n%s", what, where, printed)


def _reported(
    error: ConnectionHookError, exc: BaseException, where: str, secrets: tuple[str, ...]
) -> ConnectionHookError:
    report_callback_failure(error.hook, exc, where, secrets)
    return error


#: The hook run now in this context, if any: its token lets it talk on a pooled
#: connection. A context variable rather than the task: ``asyncio.wait_for``
#: runs the awaited call in a new task on Python 3.11, which copies the context.
_hook_running: Final[contextvars.ContextVar[object | None]] = contextvars.ContextVar(
    "aio_websocket_pool hook", default=None
)


class HookAccess:
    """Who may talk on one pooled connection: the hook running on it, from its own context.

    A former borrower still holding a reference, or a task the hook left
    behind, must not talk on it: only code running in the hook's context (and
    tasks it starts meanwhile, such as ``wait_for``'s) holds the token.
    """

    __slots__ = ("_token", "cut_off")

    def __init__(self) -> None:
        self._token: object | None = None  # that of the hook running on it now
        self.cut_off = False  # that hook's send or receive was cancelled

    def permits_caller(self) -> bool:
        """Whether the caller runs in the context of the hook running now."""
        return self._token is not None and _hook_running.get() is self._token

    @contextlib.contextmanager
    def running(
        self,
        hook: str,
        *,
        left_receiving: Callable[[], bool],
        where: str,
        secrets: tuple[str, ...],
    ) -> Iterator[None]:
        """Let ``hook`` send and receive on the connection while it runs.

        A hook that leaves a receive pending (``left_receiving()`` after it)
        or cut one off (a timeout it caught) may still be owed a reply that
        would reach the next borrower: that fails the hook as raising would.

        Raises:
            ConnectionHookError: The hook left a reply owed.
        """
        token = self._token = object()
        self.cut_off = False
        reset = _hook_running.set(token)
        try:
            yield
        finally:
            _hook_running.reset(reset)
            self._token = None
        if self.cut_off or left_receiving():
            error = ConnectionHookError(
                f"{hook} left a receive pending or cut off: a reply may still come", hook=hook
            )
            report_callback_failure(hook, error, where, secrets)
            raise error
