"""An asyncio WebSocket client connection pool.

Drop-in compatible with aio-websocket-pool 0.1.0: the same classes, arguments
and exceptions. Each connection is a ``transitions`` state machine
(connecting → idle → busy → draining → closed) whose table lives in one place
(:data:`TRANSITIONS`); the pool derives every counter from those states.
"""

from ._config import ConnectionHook, DrainConditionCallback, UnsolicitedMessageHook
from ._connection import WebsocketConnection
from ._diagram import DiagramFormat, render_connection_diagram, render_diagram
from ._exceptions import (
    ConnectionBusyError,
    ConnectionClosedError,
    ConnectionDrainTimeoutError,
    ConnectionHookError,
    ConnectionPoolExhaustedError,
    ConnectionPoolUnavailableError,
    ConnectionUnavailableError,
    GraphvizNotFoundError,
    HandshakeRejectedError,
    InvalidTransitionError,
    JsonRpcError,
    LeaseEndedError,
    RequestLostError,
    RequestTimeoutError,
    TooManyWaitersError,
    WebsocketError,
    WrongEventLoopError,
)
from ._fsm import TRANSITIONS, Edge, State, TransitionRecord
from ._history import write_history_jsonl
from ._jsonrpc import JsonRpcClient, Subscription
from ._lease import ConnectionLease
from ._mux import Multiplexer
from ._mux_fsm import (
    REQUEST_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    MuxStats,
    RequestState,
    SubscriptionState,
)
from ._pool import WebsocketConnectionPool
from ._stats import PoolStats, Timing

__all__ = [
    "REQUEST_TRANSITIONS",
    "SUBSCRIPTION_TRANSITIONS",
    "TRANSITIONS",
    "ConnectionBusyError",
    "ConnectionClosedError",
    "ConnectionDrainTimeoutError",
    "ConnectionHook",
    "ConnectionHookError",
    "ConnectionLease",
    "ConnectionPoolExhaustedError",
    "ConnectionPoolUnavailableError",
    "ConnectionUnavailableError",
    "DiagramFormat",
    "DrainConditionCallback",
    "Edge",
    "GraphvizNotFoundError",
    "HandshakeRejectedError",
    "InvalidTransitionError",
    "JsonRpcClient",
    "JsonRpcError",
    "LeaseEndedError",
    "Multiplexer",
    "MuxStats",
    "PoolStats",
    "RequestLostError",
    "RequestState",
    "RequestTimeoutError",
    "State",
    "Subscription",
    "SubscriptionState",
    "Timing",
    "TooManyWaitersError",
    "TransitionRecord",
    "UnsolicitedMessageHook",
    "WebsocketConnection",
    "WebsocketConnectionPool",
    "WebsocketError",
    "WrongEventLoopError",
    "render_connection_diagram",
    "render_diagram",
    "write_history_jsonl",
]

__version__ = "0.2.0.dev0"
__title__ = "aio_websocket_pool"
