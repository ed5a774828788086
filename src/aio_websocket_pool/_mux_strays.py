"""Messages a multiplexer's readers matched to nothing: counted, given to ``on_unsolicited``.

Rules:

* A message that answers no request and no subscription, or that cannot be
  parsed, never stops the reader: it is counted here (``unmatched``).
* With the pool's ``on_unsolicited`` set, each is handed to it with the lease
  it came on, in the order they came, one at a time, by a task of the
  multiplexer (so the reader never waits for the hook). The hook runs through
  :func:`~._hooks.run_hook`: bounded by ``hook_timeout``, its failure logged
  with the pool's secrets masked, never raised. At most
  :data:`UNDELIVERED_KEPT` wait for it; more are counted and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from ._config import UnsolicitedMessageHook
from ._exceptions import ConnectionHookError
from ._hooks import run_hook

if TYPE_CHECKING:
    from ._lease import ConnectionLease
    from ._mux_channel import Message

#: Messages waiting for ``on_unsolicited`` at most; more are dropped (and counted).
UNDELIVERED_KEPT: Final = 1000
#: ``spawn(work, what)``: run ``work`` in a task its multiplexer cancels when it closes.
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[Any]"]


class Strays:
    """A multiplexer's unmatched messages: their count and their way to ``on_unsolicited``.

    Args:
        hook: The pool's ``on_unsolicited``, or ``None``.
        where: The multiplexer's name, for the hook's reports.
        hook_timeout: Seconds the hook may take for one message.
        secrets: What the reports mask.
        spawn: How the multiplexer runs a task of its own.
    """

    def __init__(
        self,
        hook: UnsolicitedMessageHook | None,
        *,
        where: str,
        hook_timeout: float,
        secrets: tuple[str, ...],
        spawn: Spawn,
    ) -> None:
        self.count = 0
        self._hook = hook
        self._where = where
        self._hook_timeout = hook_timeout
        self._secrets = secrets
        self._spawn = spawn
        self._undelivered: deque[tuple[ConnectionLease, Message]] = deque()
        self._delivery: asyncio.Task[Any] | None = None

    def take(self, lease: ConnectionLease, message: Message) -> None:
        """Count ``message``, which came on ``lease``; queue it for the hook, if there is one."""
        self.count += 1
        if self._hook is None or len(self._undelivered) >= UNDELIVERED_KEPT:
            return
        self._undelivered.append((lease, message))
        if self._delivery is None:
            self._delivery = self._spawn(self._deliver(), "on_unsolicited")

    async def _deliver(self) -> None:
        hook = self._hook
        assert hook is not None  # noqa: S101  (nothing is queued without it)
        try:
            while self._undelivered:
                lease, message = self._undelivered.popleft()
                # Logged by run_hook; the multiplexer keeps its connection.
                with contextlib.suppress(ConnectionHookError):
                    await run_hook("on_unsolicited", hook(lease, message),
                                   seconds=self._hook_timeout, where=self._where,
                                   secrets=self._secrets)  # fmt: skip
        finally:
            self._delivery = None
