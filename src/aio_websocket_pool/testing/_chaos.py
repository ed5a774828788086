"""Random faults while a tagged workload runs: the reliability tests' engine, and the soak's.

:class:`Chaos` turns the harness's knobs at random (seeded) moments while
:func:`tagged_workload` has many tasks send requests that each carry a unique
tag, through ``pool.get_connection()``, and cancels some of them at random
points (after the send and before the receive among them); with ``misuse_rate``
some borrowers also misuse their leases, as real code does. The echo server
answers each request with the request itself, so a reply that is not the
caller's own tag is a misdelivery: the bug a pool must never have. Strays
(:data:`~aio_websocket_pool.testing.STRAY_PREFIX`) are told apart and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from .._connection import WebsocketConnection
from .._exceptions import LeaseEndedError, WebsocketError
from .._pool import WebsocketConnectionPool
from ._proxy import TcpProxy
from ._server import STRAY_PREFIX, LoopbackServer, Which

#: Pool settings under which every fault is noticed and recovered from in
#: milliseconds, for tests and soaks: ``WebsocketConnectionPool(uri, **FAST_RECOVERY)``.
FAST_RECOVERY: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "check_server_data_on_release": True,
        "drain_quiet_period": 0.002,
        "drain_timeout": 0.3,
        "acquire_timeout": 2.0,
        "health_check_interval": 0.05,
        "health_check_timeout": 0.1,
        "connection_timeout": 0.5,
        "max_retries": 2,
        "cleanup_interval": 0.05,
        "idle_timeout": 0.5,
        "close_timeout": 0.1,  # websockets': a silent peer holds a closing socket this long
    }
)
#: Close codes the faults use: normal, going away, internal error, service restart.
CLOSE_CODES: Final = (1000, 1001, 1011, 1012)
#: Handshake refusals the faults use: transient (5xx, retried) and final (403).
REFUSALS: Final = (500, 503, 403)
#: The ways a borrower interrupts its own request (``cancel_rate``).
INTERRUPTIONS: Final = ("after send", "random", "raise")
#: The ways a borrower misuses its lease (``misuse_rate``): a receive timed out
#: inside the block, a receive left pending at release, a handle kept after it.
MISUSES: Final = ("timed out", "pending", "stale")
#: Seconds a "timed out" borrower waits for its reply before it stops waiting.
IMPATIENCE: Final = 0.0005


@dataclass
class Chaos:
    """Injects one random fault every ``interval`` seconds (on average) while it runs.

    Faults on the server: close a connection (idle, busy or any; a random close
    code), close one instead of replying, push a stray message, refuse a
    handshake, stop and restart the server. With a proxy, also: freeze a link
    for a while (a silent, half-open peer), drop a link, slow every chunk.

    Args:
        server: The loopback server the pool talks to (directly or via ``proxy``).
        proxy: The proxy in front of it, if any: enables the network faults.
        seed: Seeds every random choice, so that a run repeats its faults.
        interval: Mean seconds between two faults.
        restarts: Whether stopping and restarting the server is one of the faults.
        freeze_for: Longest time a frozen link stays frozen, in seconds.
        kinds: Inject only these kinds of fault (names as in ``injected``);
            ``None`` injects every kind the set-up allows.

    Attributes:
        injected: How many faults of each kind were injected.
    """

    server: LoopbackServer
    proxy: TcpProxy | None = None
    seed: int = 0
    interval: float = 0.01
    restarts: bool = True
    freeze_for: float = 0.3
    kinds: Collection[str] | None = None
    injected: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(init=False, repr=False)
    _thaws: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311  (repeatable runs, not secrets)
        unknown = set(self.kinds or ()) - set(self._faults())
        if unknown:
            raise ValueError(f"no such fault with this set-up: {', '.join(sorted(unknown))}")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Chaos]:
        """Inject faults during the ``async with`` block; undo the lasting ones after it.

        On exit the server is serving again, no link is frozen or slowed, and
        no refusal or close is left pending for the next test.
        """
        task = asyncio.create_task(self._inject_forever())
        try:
            yield self
        finally:
            task.cancel()
            for thaw in self._thaws:
                thaw.cancel()
            await asyncio.gather(task, *self._thaws, return_exceptions=True)
            await self.server.start()
            self.server._refusals.clear()
            self.server._closes_instead_of_replies.clear()
            if self.proxy is not None:
                self.proxy.delay = 0.0
                self.proxy.thaw()

    async def _inject_forever(self) -> None:
        faults = self._faults()
        kinds = sorted(faults if self.kinds is None else self.kinds)
        while True:
            await asyncio.sleep(self._random.uniform(0, 2 * self.interval))
            kind = self._random.choice(kinds)
            await faults[kind]()
            self.injected[kind] += 1

    def _faults(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        faults = {
            "close": self._close,
            "close instead of replying": self._close_instead_of_replying,
            "stray": self._stray,
            "refuse": self._refuse,
        }
        if self.restarts:
            faults["restart"] = self._restart
        if self.proxy is not None:
            faults |= {"freeze": self._freeze, "drop": self._drop, "slow": self._slow}
        return faults

    async def _close(self) -> None:
        which: Which = self._random.choice(("idle", "busy", "all"))
        code = self._random.choice(CLOSE_CODES)
        await self.server.close_connections(code, which=which, limit=1)

    async def _close_instead_of_replying(self) -> None:
        self.server.close_instead_of_replying(1, self._random.choice(CLOSE_CODES))

    async def _stray(self) -> None:
        which: Which = self._random.choice(("idle", "all"))
        await self.server.push(f"{STRAY_PREFIX}pushed", which=which)

    async def _refuse(self) -> None:
        self.server.refuse(1, self._random.choice(REFUSALS))

    async def _restart(self) -> None:
        await self.server.stop(self._random.choice((1001, 1012)))
        await asyncio.sleep(self._random.uniform(0, self.interval))
        await self.server.start()

    async def _freeze(self) -> None:
        assert self.proxy is not None  # noqa: S101  (a proxy fault only runs with a proxy)
        links = self.proxy.links
        if links:
            link = self._random.choice(links)
            link.freeze()
            thaw = asyncio.create_task(self._thaw_later(link.thaw))
            self._thaws.add(thaw)
            thaw.add_done_callback(self._thaws.discard)

    async def _thaw_later(self, thaw: Callable[[], None]) -> None:
        await asyncio.sleep(self._random.uniform(0, self.freeze_for))
        thaw()

    async def _drop(self) -> None:
        assert self.proxy is not None  # noqa: S101
        links = self.proxy.links
        if links:
            self._random.choice(links).abort()

    async def _slow(self) -> None:
        assert self.proxy is not None  # noqa: S101
        self.proxy.delay = self._random.choice((0.0, 0.0, 0.0005, 0.002))


@dataclass
class Tally:
    """What happened to the requests of a :func:`tagged_workload`.

    Attributes:
        succeeded: Requests answered with their own tag.
        cancelled: Requests cancelled on purpose (at a random point).
        abandoned: Requests whose borrower raised an error of its own after sending.
        timed_out: Requests that took longer than the workload's ``request_timeout``.
        gave_up: Requests whose borrower stopped waiting for its reply inside the
            block and left normally (a receive timed out, or was left pending).
        stale: Handles kept after their block that the pool refused, as it must,
            with :class:`~aio_websocket_pool.LeaseEndedError` (not requests: a
            request's own outcome is counted elsewhere).
        stale_misjudged: Handles kept after their block that could still send,
            or that were refused with another error than ``LeaseEndedError``:
            must stay 0.
        strays: Stray messages that borrowers received (and skipped).
        errors: The pool's typed errors (:class:`~aio_websocket_pool.WebsocketError`
            subclasses), counted by class name.
        first_errors: The first error of each of those classes, as raised
            (for a test that inspects messages and causes).
        misdelivered: ``(tag sent, reply received)`` for every reply that was not
            the borrower's own: must stay empty.
        untyped: Any other exception a request raised: must stay empty.
    """

    succeeded: int = 0
    cancelled: int = 0
    abandoned: int = 0
    timed_out: int = 0
    gave_up: int = 0
    stale: int = 0
    stale_misjudged: int = 0
    strays: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: dict[str, WebsocketError] = field(default_factory=dict)
    misdelivered: list[tuple[str, str | bytes]] = field(default_factory=list)
    untyped: list[BaseException] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Requests made, whatever their outcome."""
        return (
            self.succeeded + self.cancelled + self.abandoned + self.timed_out + self.gave_up
            + sum(self.errors.values()) + len(self.misdelivered) + len(self.untyped)
        )  # fmt: skip


class _BorrowerError(Exception):
    """Raised by a borrower after its send, as application code might."""


async def tagged_workload(
    pool: WebsocketConnectionPool,
    *,
    tasks: int,
    requests: int,
    seed: int = 0,
    cancel_rate: float = 0.2,
    misuse_rate: float = 0.0,
    request_timeout: float = 2.0,
) -> Tally:
    """Run ``tasks`` concurrent tasks, each making ``requests`` tagged requests.

    Each request sends its unique tag and reads until a message that is not a
    stray comes: it must be the tag. A share ``cancel_rate`` of the requests is
    interrupted on purpose, spread evenly over three ways: cancelled right after
    the send (before the receive), cancelled after a random short delay, or left
    by the borrower raising an error of its own after the send.

    A further share ``misuse_rate`` is made by borrowers that misuse their
    lease, spread evenly over three ways (:data:`MISUSES`): one stops waiting
    for its reply after a moment (``wait_for`` caught inside the block) and
    leaves normally; one leaves while a task of its own still awaits
    ``recv()``, and looks at what that task got afterwards; one keeps its
    handle and tries to send on it after the block.

    Returns:
        The tally of every request's outcome.
    """
    tally = Tally()
    rng = random.Random(seed)  # noqa: S311  (repeatable runs, not secrets)

    async def one_task(task_id: int) -> None:
        for n in range(requests):
            draw = rng.random()
            if draw < cancel_rate:
                mode = INTERRUPTIONS[int(draw / cancel_rate * 3)]
            elif draw < cancel_rate + misuse_rate:
                mode = MISUSES[int((draw - cancel_rate) / misuse_rate * 3)]
            else:
                mode = "plain"
            try:
                async with asyncio.timeout(request_timeout):
                    await _one_request(pool, f"req {task_id}:{n}", mode, rng, tally)
            except WebsocketError as exc:  # before TimeoutError: an exhausted pool is both
                tally.errors[type(exc).__name__] += 1
                tally.first_errors.setdefault(type(exc).__name__, exc)
            except TimeoutError:
                tally.timed_out += 1
            except Exception as exc:  # noqa: BLE001  (what the tally is for)
                tally.untyped.append(exc)

    await asyncio.gather(*(one_task(task_id) for task_id in range(tasks)))
    return tally


async def _one_request(
    pool: WebsocketConnectionPool, tag: str, mode: str, rng: random.Random, tally: Tally
) -> None:
    sent = asyncio.Event()
    pending: list[asyncio.Task[str | bytes]] = []
    kept: list[WebsocketConnection] = []

    async def exchange() -> None:
        async with pool.get_connection() as conn:
            kept.append(conn)
            await conn.send(tag)
            sent.set()
            if mode == "raise":
                raise _BorrowerError
            while mode == "pending":
                receiving = asyncio.create_task(conn.recv())
                await asyncio.sleep(0)  # it is in recv() now: leave it there
                if not receiving.done():
                    pending.append(receiving)
                    return
                # It read at once what had come already. Had that been a stray
                # and the borrower left now, its reply would be owed with no
                # receive pending: a borrower that does not wait for its reply
                # (fire and forget) is not what this mode is about.
                reply = receiving.result()
                if not _is_stray(reply):
                    _check_reply(tally, tag, reply)
                    return
                tally.strays += 1
            while True:
                try:
                    if mode == "timed out":
                        reply = await asyncio.wait_for(conn.recv(), IMPATIENCE)
                    else:
                        reply = await conn.recv()
                except TimeoutError:
                    tally.gave_up += 1  # caught inside the block: it leaves normally
                    return
                if _is_stray(reply):
                    tally.strays += 1
                    continue
                _check_reply(tally, tag, reply)
                return

    try:
        if mode in ("after send", "random"):
            await _interrupted(exchange(), sent if mode == "after send" else rng.uniform(0, 0.002))
        else:
            await exchange()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # cancelled from outside (the request timed out), not by us
        tally.cancelled += 1
    except _BorrowerError:
        tally.abandoned += 1
    finally:
        for task in pending:
            await _settle_pending(task, tag, tally)
    if mode == "stale" and kept:
        await _try_stale(kept[0], tag, tally)


def _is_stray(message: str | bytes) -> bool:
    return isinstance(message, str) and message.startswith(STRAY_PREFIX)


def _check_reply(tally: Tally, tag: str, reply: str | bytes) -> None:
    if reply == tag:
        tally.succeeded += 1
    else:
        tally.misdelivered.append((tag, reply))


async def _settle_pending(task: asyncio.Task[str | bytes], tag: str, tally: Tally) -> None:
    """Let a receive left pending at release run on a moment, then stop it: what did it read?

    Its own reply, or a typed pool error, is fine (the request gave up); a
    stray is skipped; anything else was read past its lease: a misdelivery.
    """
    await asyncio.sleep(0.001)
    task.cancel()
    await asyncio.wait({task})
    if task.cancelled() or isinstance(task.exception(), WebsocketError):
        tally.gave_up += 1
        return
    exc = task.exception()
    if exc is not None:
        tally.untyped.append(exc)
        return
    reply = task.result()
    if _is_stray(reply):
        tally.strays += 1
        tally.gave_up += 1
    else:
        _check_reply(tally, tag, reply)


async def _try_stale(handle: WebsocketConnection, tag: str, tally: Tally) -> None:
    """Send on a handle whose block has ended: the pool must refuse it, whoever holds it now."""
    try:
        await handle.send(f"{tag} (stale)")
    except LeaseEndedError:
        tally.stale += 1
        return
    except WebsocketError:
        pass
    tally.stale_misjudged += 1


async def _interrupted(exchange: Coroutine[Any, Any, None], when: asyncio.Event | float) -> None:
    """Run ``exchange`` in a task and cancel it once ``when`` is set, or after ``when`` seconds.

    Raises:
        asyncio.CancelledError: It was cancelled before it finished.
    """
    task = asyncio.create_task(exchange)
    waiting = asyncio.create_task(
        when.wait() if isinstance(when, asyncio.Event) else asyncio.sleep(when)
    )
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        await task
    finally:
        waiting.cancel()
        if not task.done():  # we were cancelled from outside meanwhile
            task.cancel()
            await asyncio.wait({task})
