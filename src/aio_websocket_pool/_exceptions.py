"""The exceptions this package raises, in one hierarchy.

Every error the pool raises on purpose is a :class:`WebsocketError`, so one
``except WebsocketError`` catches them all. The names are those of
aio-websocket-pool 0.1.0, so code written against it keeps working::

    WebsocketError (RuntimeError)
    ├── ConnectionBusyError           the connection is not yours to use right now
    │   └── LeaseEndedError           the lease this handle stood for has ended
    ├── ConnectionClosedError         the connection closed under you
    ├── ConnectionDrainTimeoutError   kept for 0.1.0 imports; the pool never raises it
    ├── ConnectionUnavailableError    no connection could be opened
    │   ├── HandshakeRejectedError    the server answered the handshake with 4xx
    │   └── ConnectionHookError       on_connect or on_acquire failed on a new connection
    ├── ConnectionPoolExhaustedError  no connection came free in time (also a TimeoutError)
    │   └── TooManyWaitersError       max_waiting acquirers are queued already
    ├── ConnectionPoolUnavailableError  the pool is closed
    │   └── WrongEventLoopError       the pool belongs to another event loop
    ├── RequestTimeoutError           a multiplexed request got no reply in time (a TimeoutError)
    ├── RequestLostError              a multiplexed request's connection was lost before its reply
    ├── JsonRpcError                  a JSON-RPC server answered with an error (.code, .data)
    ├── InvalidTransitionError        a lifecycle event that is illegal in the current state
    └── GraphvizNotFoundError         an SVG diagram was asked for without Graphviz installed

Messages never carry secrets: URIs in them are redacted (no user-info, no
query string) and header values are never mentioned.
"""

from __future__ import annotations


class WebsocketError(RuntimeError):
    """Base class of every error this package raises on purpose."""


class ConnectionBusyError(WebsocketError):
    """The connection is not acquired by the caller, or is in use by someone else."""


class LeaseEndedError(ConnectionBusyError):
    """The handle's lease has ended (released, closed, or the pool closed).

    What ``acquire()`` hands out stands for one hand-out: once it is given
    back, the connection may already be lent to someone else, so everything
    but its ``id`` and ``repr`` raises this.
    """


class ConnectionClosedError(WebsocketError):
    """The connection was closed (by the peer, the network or the pool) while in use."""


class ConnectionDrainTimeoutError(WebsocketError):
    """Exported by 0.1.0; kept so that its imports keep working.

    Draining happens in the background here, so a drain that times out
    discards the connection instead of raising to anyone.
    """


class ConnectionUnavailableError(WebsocketError):
    """No connection could be opened: the cause is chained as ``__cause__``."""


class HandshakeRejectedError(ConnectionUnavailableError):
    """The server refused the WebSocket handshake with a 4xx status other than 429.

    Such a refusal is not retried: asking again with the same credentials
    gets the same answer. (A 429, Too Many Requests, is retried like a 503.)

    Attributes:
        status_code: The HTTP status the server answered with.
    """

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ConnectionHookError(ConnectionUnavailableError):
    """A hook of the pool raised or timed out, so its connection was discarded.

    Raised to an acquirer when ``on_connect`` or ``on_acquire`` fails on a
    newly opened connection (on a reused one, the pool tries another). The
    hook's own exception is chained as ``__cause__``; the message names only
    the hook and the exception's type.

    Attributes:
        hook: The hook's name (``"on_connect"``, ``"on_acquire"``, ...).
    """

    def __init__(self, message: str, *, hook: str) -> None:
        super().__init__(message)
        self.hook = hook


class ConnectionPoolExhaustedError(WebsocketError, TimeoutError):
    """Every connection stayed in use for the whole ``acquire_timeout``.

    Also a :class:`TimeoutError`, as the pool timeouts of httpx and psycopg
    are: ``except TimeoutError`` around an acquire catches it.
    """


class TooManyWaitersError(ConnectionPoolExhaustedError):
    """``max_waiting`` acquirers were already queued, so this one failed at once."""


class ConnectionPoolUnavailableError(WebsocketError):
    """The pool is closed, or closed while the caller was waiting."""


class WrongEventLoopError(ConnectionPoolUnavailableError):
    """The pool was used from an event loop other than the one it started on.

    Its connections, tasks and futures belong to that first loop (each
    ``asyncio.run`` makes a new one): make one pool per loop.
    """


class RequestTimeoutError(WebsocketError, TimeoutError):
    """A multiplexed request (``mux.request``, ``rpc.call``) had no reply within its timeout.

    Also a :class:`TimeoutError`, like :class:`ConnectionPoolExhaustedError`.
    A reply that comes later is counted and dropped, never given to anyone.
    """


class RequestLostError(WebsocketError):
    """The connection a multiplexed request went out on was lost before its reply.

    Not retried: the server may have acted on the request already, and a
    JSON-RPC call need not be idempotent. Also raised from the ``async for``
    of a subscription whose connection was lost when ``resubscribe`` is off.
    """


class JsonRpcError(WebsocketError):
    """A JSON-RPC 2.0 server answered a call with an ``error`` object.

    Attributes:
        code: The error's ``code`` (an integer, e.g. -32601 method not found).
        message: The error's ``message``.
        data: The error's ``data``, or ``None`` when it had none.
    """

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class InvalidTransitionError(WebsocketError):
    """A lifecycle event was fired in a state that has no edge for it.

    The connection's state is left unchanged.

    Attributes:
        state: The state the connection was in.
        event: The event (trigger) that was refused.
    """

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"event {event!r} is not allowed in state {str(state)!r}")
        self.state = str(state)
        self.event = event


class GraphvizNotFoundError(WebsocketError):
    """An SVG diagram was asked for, but the Graphviz ``dot`` program is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "rendering SVG needs the Graphviz 'dot' program, which is not on PATH; "
            "install it (Debian/Ubuntu: apt-get install graphviz), "
            "or ask for the 'mermaid' or 'dot' format instead"
        )
