"""Messages nobody asked for, and the cleaning after a release.

While nobody holds a connection its messages are the pool's (see
:mod:`._inbox`): one bounded reader, the connection's inbox, takes them
whether the connection is idle or being drained after a release, and
:meth:`Cleaning.take_message` decides what each one means: counted, checked by
``drain_condition`` during a drain, passed to ``on_unsolicited``. The cleaning
after a release runs ``on_release`` and then waits for the drain's quiet
period, and parks the connection through the coordinator.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ._exceptions import ConnectionHookError
from ._fsm import CLOSED, DRAINING
from ._hooks import report_callback_failure, run_hook
from ._inbox import Inbox
from ._tasks import BackgroundTasks

if TYPE_CHECKING:
    from ._connection import WebsocketConnection
    from ._coordinator import Coordinator

_T = TypeVar("_T")


def _call_weakly(
    method: Callable[[Cleaning, WebsocketConnection, _T], None],
    cleaning: weakref.ref[Cleaning],
    connection: weakref.ref[WebsocketConnection],
    argument: _T,
) -> None:
    """``method(cleaning, connection, argument)``, if both are still alive.

    For the inbox's callbacks (bound by :func:`functools.partial`): a socket
    keeps its websocket, and so its inbox, alive; through strong callbacks it
    would keep an abandoned pool alive too, which then could never warn that
    it was left open. One weak reference to the cleaning serves every
    connection, one to each connection serves both its callbacks: a
    ``WeakMethod`` and a closure per callback cost about 1 KiB per connection.
    """
    owner, target = cleaning(), connection()
    if owner is not None and target is not None:
        method(owner, target, argument)


class Cleaning:
    """What the pool does with a connection's messages while nobody holds it."""

    def __init__(self, core: Coordinator[WebsocketConnection], tasks: BackgroundTasks) -> None:
        self._core = core
        self._tasks = tasks
        self._weak_self = weakref.ref(self)

    def adopt(self, connection: WebsocketConnection) -> None:
        """Give a newly opened connection its inbox: its messages are the pool's until lent."""
        config, weak_connection = self._core.config, weakref.ref(connection)
        connection._inbox = Inbox(
            max_messages=config.drain_max_messages,
            max_bytes=config.drain_max_bytes,
            on_message=functools.partial(
                _call_weakly, Cleaning.take_message, self._weak_self, weak_connection
            ),
            on_failure=functools.partial(
                _call_weakly, Cleaning._inbox_failed, self._weak_self, weak_connection
            ),
            keeping=self._core.keeps_for_first_borrower(connection),
        )
        connection._lend_to_nobody()

    def take_message(self, connection: WebsocketConnection, message: str | bytes) -> None:
        """A message arrived while nobody held the connection: count it, check it, pass it on.

        Runs inside websockets' ``data_received`` (see :mod:`._inbox`): no await.
        """
        if connection.state is CLOSED:
            return
        core = self._core
        config, totals = core.config, core.totals
        if connection in core.draining:
            totals.messages_drained += 1
            try:
                keep = config.drain_condition(message)
            except Exception as exc:  # noqa: BLE001  (a user drain_condition may raise anything)
                report_callback_failure("drain_condition", exc, connection.id, connection._secrets)
                core.discard(connection, f"drain_condition raised {type(exc).__name__}",
                             abort=True)  # fmt: skip
                return
            if not keep:
                core.discard(connection, "drain_condition rejected a drained message",
                             abort=True)  # fmt: skip
                return
        else:
            totals.unsolicited_messages += 1
        if config.on_unsolicited is None:
            return
        inbox = connection._inbox
        assert inbox is not None  # noqa: S101  (it is what called us)
        if inbox.undelivered is None:
            inbox.undelivered = deque()
        inbox.undelivered.append(message)
        if inbox.delivery is None:
            inbox.delivery = self._tasks.spawn(
                self._deliver(connection, inbox), f"on_unsolicited {connection.id}"
            )

    async def _deliver(self, connection: WebsocketConnection, inbox: Inbox) -> None:
        """Give ``on_unsolicited`` each message taken, in order, as soon as it came."""
        core = self._core
        hook = core.config.on_unsolicited
        assert hook is not None  # noqa: S101  (it is set, or nothing was queued)
        try:
            while inbox.undelivered and connection.state is not CLOSED:
                message = inbox.undelivered.popleft()
                with connection._hook_access("on_unsolicited"):
                    await run_hook(
                        "on_unsolicited", hook(connection, message),
                        seconds=core.config.hook_timeout,
                        where=connection.id, secrets=connection._secrets,
                    )  # fmt: skip
        except ConnectionHookError as exc:
            core.totals.hooks_failed += 1
            core.discard(connection, str(exc), abort=True)
        finally:
            if inbox.delivery is asyncio.current_task():
                inbox.delivery = None

    def stop_delivery(self, connection: WebsocketConnection) -> None:
        """Stop giving a retired connection's messages to ``on_unsolicited``."""
        inbox = connection._inbox
        if inbox is None or (delivery := inbox.delivery) is None:
            return
        inbox.delivery = None
        if delivery is not asyncio.current_task():
            delivery.cancel()

    def _inbox_failed(self, connection: WebsocketConnection, reason: str) -> None:
        """A flood, or a message that cannot be taken: the connection cannot be kept.

        Aborted: a closing handshake would wait behind the flood.
        """
        if connection.state is not CLOSED:
            self._core.discard(connection, f"{reason}, while {connection.state}", abort=True)

    # -- after a release ----------------------------------------------------------------

    def start(self, connection: WebsocketConnection) -> None:
        """Clean a connection that just went from busy to draining, in a pool task."""
        self._tasks.spawn(self._clean(connection), f"clean {connection.id}")

    async def _clean(self, connection: WebsocketConnection) -> None:
        """Make a given-back connection fit for reuse: ``on_release``, then the drain."""
        core = self._core
        config = core.config
        hook = config.on_release
        if hook is not None:
            try:
                with connection._hook_access("on_release"):
                    await run_hook(
                        "on_release", hook(connection), seconds=config.hook_timeout,
                        where=connection.id, secrets=connection._secrets,
                    )  # fmt: skip
            except ConnectionHookError as exc:
                core.totals.hooks_failed += 1
                core.discard(connection, str(exc), abort=True)
                return
        if connection.state is not DRAINING:  # closed by its user, or the pool, meanwhile
            return
        # Closing: park() closes it right after, so there is nothing to drain for.
        drain = config.check_server_data_on_release and not core.closing
        if drain:
            core.draining.add(connection)
        core.lend_to_nobody(connection)  # what the borrower and the hook left unread, first
        reason = None
        if drain:
            try:
                drained = await self._drain(connection)
            finally:
                core.draining.discard(connection)
            if drained is None:
                return
            reason = f"{drained} messages drained" if drained else None
        if connection.state is DRAINING:
            core.park(connection, reason)

    async def _drain(self, connection: WebsocketConnection) -> int | None:
        """Wait for a quiet period: how many messages came, or ``None`` if it was discarded.

        The inbox takes the messages as they arrive (each through
        ``drain_condition``, then to ``on_unsolicited``; a flood discards the
        connection at once): this only waits for ``drain_quiet_period`` of
        silence, up to ``drain_timeout``.
        """
        inbox = connection._inbox
        assert inbox is not None  # noqa: S101  (it is open)
        core = self._core
        config = core.config
        quiet = config.drain_quiet_period
        began = time.monotonic()
        give_up = began + config.drain_timeout
        while connection.state is DRAINING:
            if not connection.is_connected:
                core.retire_lost(connection, during="drain")
                return None
            now = time.monotonic()
            silent_since = max(began, inbox.last_arrival)
            if now - silent_since >= quiet:
                return inbox.messages
            if now >= give_up:
                core.discard(
                    connection,
                    f"still receiving after drain_timeout="
                    f"{config.drain_timeout:g}s ({inbox.messages} messages drained)",
                )
                return None
            await asyncio.sleep(min(silent_since + quiet, give_up) - now)
        return None
