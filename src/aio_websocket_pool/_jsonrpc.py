"""JSON-RPC 2.0 over a :class:`~._mux.Multiplexer`: calls matched by id, subscriptions that survive.

A call is a request whose key is its ``id`` (a counter of the client's own);
a reply is a JSON object with that ``id``. A message with a ``method`` is the
server talking first: a notification, routed by ``params.subscription`` (the
shape Ethereum, Solana and most JSON-RPC pub/sub servers use) to the
subscription that the server gave that id, on the connection it gave it on.

Subscriptions and reconnects (the rules):

* A subscription is bound to the connection its subscribe request was
  answered on, from inside that connection's reader, before it reads another
  message: a notification right behind the answer is never missed.
* That connection lost, with ``resubscribe`` on: the subscription goes
  ``resubscribing``, its subscribe request is sent again on a healthy
  connection (at most :data:`RESUBSCRIBE_AT_ONCE` at once, so that a reconnect
  never bursts past a server's rate limit), and the new server id is bound to
  the same object: the user's ``async for`` goes on. ``.gaps`` gets the
  (lost_at, restored_at) pair, for a backfill. With ``resubscribe`` off, the
  ``async for`` raises :class:`~aio_websocket_pool.RequestLostError`.
* A notification for no known subscription goes to ``on_unsolicited``, or is
  dropped; either way it is counted (``unmatched``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from ._exceptions import (
    ConnectionBusyError,
    ConnectionPoolUnavailableError,
    JsonRpcError,
    RequestLostError,
    RequestTimeoutError,
    WebsocketError,
)
from ._mux import Multiplexer
from ._mux_channel import Channel, Message, OnAnswer
from ._mux_fsm import (
    ACTIVE,
    RESUBSCRIBING,
    SUB_CLOSED,
    MuxStats,
    SubscriptionLifecycle,
    SubscriptionState,
)

if TYPE_CHECKING:
    from ._pool import WebsocketConnectionPool

logger: Final = logging.getLogger("aio_websocket_pool")

#: Subscribe requests a reconnect sends at once, at most.
RESUBSCRIBE_AT_ONCE: Final = 3
#: Notifications one subscription keeps for its reader, at most; more are dropped (counted).
MAX_QUEUED_NOTIFICATIONS: Final = 10_000
_RETRY_PAUSE: Final = 0.05  # between two resubscribe attempts of one subscription
_INTERNAL_ERROR: Final = -32603
Timeout = float | None | Literal["default"]
#: Compact JSON from one encoder made once: ``json.dumps(separators=...)`` makes one per call.
_compact: Final = json.JSONEncoder(separators=(",", ":")).encode


def encode(request_id: int, method: str, params: Any) -> str:
    """A JSON-RPC 2.0 request, as compact JSON; no ``params`` member for ``None``."""
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        request["params"] = params
    return _compact(request)


def parse(message: Message) -> tuple[Hashable | None, Any]:
    """A reply's id and the reply; no id (``None``) for what the server sends first.

    Our ids are ints; only an int names a request. Python calls ``true`` and
    ``1.0`` equal to ``1``, as dict keys too: such an id must not answer call 1.
    """
    data = json.loads(message)
    if type(data) is not dict or "method" in data:
        return None, data
    request_id = data.get("id")
    return (request_id if type(request_id) is int else None), data


def result_of(reply: Any) -> Any:
    """A reply's ``result``.

    Raises:
        JsonRpcError: It is an ``error`` reply, or not a JSON-RPC reply.
    """
    if type(reply) is dict:
        if "result" in reply:
            return reply["result"]
        error = reply.get("error")
        if type(error) is dict and type(error.get("code")) is int:
            raise JsonRpcError(error["code"], str(error.get("message", "")), error.get("data"))
    raise JsonRpcError(_INTERNAL_ERROR, "the reply has neither a result nor a valid error")


#: The types of ``params`` a call takes without a look at subclasses.
_PLAIN_PARAMS: Final = frozenset({list, tuple, dict, type(None)})


def _checked_call(method: object, params: object) -> None:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, not {type(method).__name__}")
    if params is not None and not isinstance(params, list | tuple | dict):
        raise TypeError(f"params must be a list or a dict, not {type(params).__name__}")


class Subscription:
    """One subscription: ``async with`` it to subscribe, ``async for`` its notifications' results.

    Made by :meth:`JsonRpcClient.subscribe`.

    Attributes:
        gaps: ``(lost_at, restored_at)`` pairs (``time.time()``), one per
            connection loss it was resubscribed after: what it may have missed.
        dropped: Notifications dropped because :data:`MAX_QUEUED_NOTIFICATIONS`
            were waiting for the ``async for`` already.
    """

    def __init__(
        self, client: JsonRpcClient, method: str, params: Any, unsubscribe: str | None
    ) -> None:
        self._client = client
        self.method, self.params, self.unsubscribe = method, params, unsubscribe
        self._lifecycle = SubscriptionLifecycle(client._mux.name + f"/sub-{next(client._ids)}",
                                                client._mux._journal)  # fmt: skip
        self.server_id: Hashable | None = None  # the server's id for it, on ``_channel``
        self._channel: Channel | None = None
        self.gaps: list[tuple[float, float]] = []
        self.dropped = 0
        self._lost_at = 0.0
        self._queue: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    @property
    def state(self) -> SubscriptionState:
        """subscribing, active, resubscribing or closed."""
        return self._lifecycle.state

    async def __aenter__(self) -> Self:
        try:
            await self._client._subscribe(self)
        except BaseException:
            # Answered, then cancelled before it ran on: bound, so the server has it too.
            self._leave("the subscribe request failed")
            raise
        self._lifecycle.fire("confirm")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if exc_value is not None:  # what the block raised goes on at once, never masked
            self._leave("left by its user")
            return False
        channel, server_id = self._channel, self.server_id
        self._end("left by its user")
        if self.unsubscribe is None or channel is None or server_id is None:
            return False  # its connection gone, the server's subscription went with it
        try:
            with contextlib.suppress(RequestLostError, ConnectionPoolUnavailableError):
                await self._client._call(self.unsubscribe, [server_id], "default", channel)
        except (asyncio.CancelledError, RequestTimeoutError):
            # Perhaps never sent (it waited for room): sent again, so that it ends either way.
            self._client._unsubscribe_in_background(self, channel, server_id)
            raise
        return False

    def _leave(self, why: str) -> None:
        """End it, and its server's subscription in the background: nothing is awaited."""
        channel, server_id = self._channel, self.server_id
        self._end(why)
        if channel is not None and server_id is not None:
            self._client._unsubscribe_in_background(self, channel, server_id)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        if self._waiter is not None:
            raise ConnectionBusyError(
                f"{self._lifecycle.subject}: another task is reading this subscription; "
                "read it from one task at a time"
            )
        while not self._queue:
            if self._lifecycle.state is SUB_CLOSED:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    # -- what the client tells it -----------------------------------------------------------

    def _bind(self, channel: Channel, server_id: Hashable) -> None:
        self._unbind()  # moved: the old connection's notifications are not its own any more
        self._channel, self.server_id = channel, server_id
        channel.routes[server_id] = self

    def _unbind(self) -> None:
        channel = self._channel
        if channel is not None and channel.routes.get(self.server_id) is self:
            del channel.routes[self.server_id]
        self._channel = None

    def _push(self, result: Any) -> None:
        if len(self._queue) >= MAX_QUEUED_NOTIFICATIONS:
            self.dropped += 1
            return
        self._queue.append(result)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _interrupt(self) -> None:
        self._channel = None  # its routes went with the connection
        self._lost_at = time.time()
        self._lifecycle.fire("interrupt")

    def _restore(self) -> None:
        self._lifecycle.fire("restore")
        self.gaps.append((self._lost_at, time.time()))

    def _end(self, why: str, error: BaseException | None = None) -> None:
        self._unbind()
        if self._lifecycle.state is not SUB_CLOSED:
            self._lifecycle.fire("close", why)
            self._error = error
        self._client._subscriptions.discard(self)
        self._wake()

    def __repr__(self) -> str:
        return f"<Subscription {self._lifecycle.subject} {self.method} [{self.state}]>"


class JsonRpcClient:
    """JSON-RPC 2.0 calls and subscriptions over a few multiplexed connections.

    Made by :meth:`WebsocketConnectionPool.json_rpc`; use it as ``async with``.
    ``resubscribe``: send a lost connection's subscriptions again elsewhere.
    The other arguments are the :class:`~._mux.Multiplexer`'s.
    """

    def __init__(
        self, pool: WebsocketConnectionPool, *, resubscribe: bool = True, **multiplexer: Any
    ) -> None:
        if not isinstance(resubscribe, bool):
            raise TypeError(f"resubscribe must be a bool, not {type(resubscribe).__name__}")
        self._mux = Multiplexer(pool, parse=parse, **multiplexer)
        self._mux.on_keyless = self._notification
        self._mux.on_channel_lost = self._channel_lost
        self._mux.on_channel_retiring = self._move_subscriptions
        self._resubscribe = resubscribe
        self._ids = itertools.count(1)
        self._subscriptions: set[Subscription] = set()
        self._to_resubscribe: deque[Subscription] = deque()
        self._resubscribers = 0
        self.name = self._mux.name

    @property
    def history(self) -> tuple[Any, ...]:
        """Recent transitions of its requests and subscriptions, oldest first; no payloads."""
        return self._mux.history

    def stats(self) -> MuxStats:
        """Its multiplexer's figures."""
        return self._mux.stats()

    async def __aenter__(self) -> Self:
        await self._mux.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        for subscription in tuple(self._subscriptions):
            subscription._end("its client closed")
        await self._mux.aclose()
        return False

    def call(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: Timeout = "default",
    ) -> Coroutine[Any, Any, Any]:
        """Call ``method``: ``await`` it for its result.

        Not a coroutine function itself, but one that returns the
        multiplexer's exchange to await: a call pays for one coroutine less
        (about 1 µs); and bad arguments raise at once, before any ``await``.

        Args:
            method: The method's name.
            params: A list or dict, or ``None`` for none.
            timeout: Seconds; default ``request_timeout``; ``None``: no limit.

        Raises:
            JsonRpcError: The server answered with an error.
            RequestTimeoutError: No answer in time (also a ``TimeoutError``).
            RequestLostError: Its connection was lost before the answer.
            ConnectionPoolUnavailableError: The client is not open, or its pool closed.
            TypeError: ``method`` is not a str, or ``params`` not a list or dict.
        """
        if type(method) is not str or type(params) not in _PLAIN_PARAMS:  # else no call to check
            _checked_call(method, params)
        return self._exchange(method, params, timeout, unwrap=result_of)

    def subscribe(
        self, method: str, params: Any = None, *, unsubscribe: str | None = None
    ) -> Subscription:
        """A subscription, made by ``async with`` (see :class:`Subscription`).

        Raises:
            TypeError: ``method``/``unsubscribe`` are not str, or ``params`` not a list or dict.
        """
        _checked_call(method, params)
        if unsubscribe is not None and not isinstance(unsubscribe, str):
            raise TypeError(f"unsubscribe must be a str, not {type(unsubscribe).__name__}")
        return Subscription(self, method, params, unsubscribe)

    def _call(
        self, method: str, params: Any, seconds: Timeout, channel: Channel | None = None
    ) -> Coroutine[Any, Any, Any]:
        return self._exchange(method, params, seconds, channel=channel)

    def _exchange(
        self,
        method: str,
        params: Any,
        seconds: Timeout,
        *,
        on_answer: OnAnswer | None = None,
        channel: Channel | None = None,
        unwrap: Callable[[Any], Any] | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """The multiplexer's exchange of one request, with an id of its own, to await.

        Not a coroutine itself: a call pays for one coroutine less on its way.
        """
        request_id = next(self._ids)
        mux = self._mux
        return mux.exchange(encode(request_id, method, params), request_id, mux._timeout(seconds),
                            on_answer=on_answer, channel=channel, unwrap=unwrap)  # fmt: skip

    async def _subscribe(self, subscription: Subscription) -> None:
        """Send its subscribe request; bound to the answer's id, on the answer's connection."""

        def bind(channel: Channel, reply: Any, late: bool) -> None:
            server_id = reply.get("result") if type(reply) is dict else None
            if type(server_id) not in (str, int):
                return
            if not late:
                subscription._bind(channel, server_id)
            else:  # it timed out (a resubscribe sends it again): nobody's subscription
                self._unsubscribe_in_background(subscription, channel, server_id)

        await self._exchange(
            subscription.method, subscription.params, "default", on_answer=bind, unwrap=result_of
        )
        if subscription._channel is None:
            raise JsonRpcError(_INTERNAL_ERROR, "the subscription id is not a string or an integer")
        self._subscriptions.add(subscription)

    # -- the reader's callbacks -------------------------------------------------------------

    def _notification(self, channel: Channel, message: Message, data: Any) -> None:
        if type(data) is dict:
            params = data.get("params")
            if type(params) is dict:
                try:
                    subscription = channel.routes.get(params.get("subscription"))
                except TypeError:  # an unhashable id
                    subscription = None
                if subscription is not None:
                    subscription._push(params.get("result"))
                    return
        self._mux.unmatched(channel, message, data)

    def _channel_lost(self, channel: Channel) -> None:
        routes = tuple(channel.routes.values())
        channel.routes.clear()
        for subscription in routes:
            if not self._resubscribe or subscription.state is not ACTIVE:
                subscription._end("its connection was lost", RequestLostError(
                    f"{subscription._lifecycle.subject}: its connection was lost"))  # fmt: skip
                continue
            subscription._interrupt()
            self._to_resubscribe.append(subscription)
        while self._resubscribers < min(RESUBSCRIBE_AT_ONCE, len(self._to_resubscribe)):
            self._resubscribers += 1
            self._mux.spawn(self._resubscribe_some(), "resubscribe")

    async def _move_subscriptions(self, old: Channel) -> None:
        """Subscribe again, elsewhere, what is routed on ``old`` (retiring), then end it there.

        One that cannot be moved stays; it is resubscribed with a gap when ``old`` closes.
        """
        at_once = asyncio.Semaphore(RESUBSCRIBE_AT_ONCE)

        async def move(subscription: Subscription) -> None:
            async with at_once:
                old_id = subscription.server_id
                if subscription.state is not ACTIVE or subscription._channel is not old:
                    return  # left by its user meanwhile
                try:
                    await self._subscribe(subscription)
                except WebsocketError as exc:
                    logger.warning("%r: not moved, for now: %s", subscription, exc)
                    return
                subscription._lifecycle.fire("move")
                if subscription.unsubscribe is not None:  # else it ends as ``old`` closes
                    with contextlib.suppress(WebsocketError):
                        await self._call(subscription.unsubscribe, [old_id], "default", old)

        await asyncio.gather(*(move(subscription) for subscription in tuple(old.routes.values())))

    async def _resubscribe_some(self) -> None:
        """Take subscriptions to send again, one at a time, until none is left."""
        try:
            while self._to_resubscribe:
                subscription = self._to_resubscribe.popleft()
                if subscription.state is not RESUBSCRIBING:
                    continue  # left by its user meanwhile
                try:
                    await self._subscribe(subscription)
                except (RequestTimeoutError, RequestLostError):
                    self._to_resubscribe.append(subscription)  # no healthy connection yet
                    await asyncio.sleep(_RETRY_PAUSE)
                except JsonRpcError as exc:
                    subscription._end("the server refused to resubscribe", exc)
                except ConnectionPoolUnavailableError as exc:
                    subscription._end("its pool closed", exc)
                else:
                    if subscription.state is RESUBSCRIBING:
                        subscription._restore()
                    else:  # left by its user while it was being sent again
                        channel, server_id = subscription._channel, subscription.server_id
                        subscription._unbind()
                        if channel is not None and server_id is not None:
                            self._unsubscribe_in_background(subscription, channel, server_id)
        finally:
            self._resubscribers -= 1

    def _unsubscribe_in_background(
        self, subscription: Subscription, channel: Channel, server_id: Hashable
    ) -> None:
        """End a server's subscription that no user waits on, if the method to end it is known.

        Else it notifies for as long as its connection lives: counted as unmatched.
        """
        method = subscription.unsubscribe
        if method is None:
            return

        async def unsubscribe() -> None:
            with contextlib.suppress(WebsocketError):  # lost or refused: nothing more to do
                await self._call(method, [server_id], "default", channel=channel)

        self._mux.spawn(unsubscribe(), "unsubscribe an orphan")

    def __repr__(self) -> str:
        return f"<JsonRpcClient {self._mux!r}>"
