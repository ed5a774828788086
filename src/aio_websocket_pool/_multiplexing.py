"""Making a pool's multiplexers: what ``pool.multiplexed()`` and ``pool.json_rpc()`` build.

A multiplexer is handed what it must know of its pool's settings (its
``connections`` may not exceed ``max_connections``; a message that answers
no request goes to ``on_unsolicited``, under ``hook_timeout``), taken here
from the pool's checked config, so that the pool's two methods are left with
their signatures and their docs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from ._jsonrpc import JsonRpcClient
from ._mux import Multiplexer

if TYPE_CHECKING:
    from ._config import PoolConfig
    from ._pool import WebsocketConnectionPool


def multiplexer(
    pool: WebsocketConnectionPool,
    config: PoolConfig,
    *,
    key: Callable[[str | bytes], Hashable | None],
    connections: int,
    max_in_flight: int,
    request_timeout: float | None,
) -> Multiplexer:
    """A :class:`Multiplexer` over ``pool`` whose replies are matched by ``key``.

    Raises:
        TypeError: ``key`` is not callable, or a count is not an int.
        ValueError: ``connections`` or ``max_in_flight`` is below 1, or
            ``connections`` above ``max_connections``.
    """
    if not callable(key):
        raise TypeError(f"key must be callable, not {type(key).__name__}")
    return Multiplexer(
        pool, parse=lambda message: (key(message), message), connections=connections,
        max_in_flight=max_in_flight, request_timeout=request_timeout,
        max_connections=config.max_connections,
        on_unsolicited=config.on_unsolicited, hook_timeout=config.hook_timeout,
        outdated=pool._core.outdated, rotation_interval=config.cleanup_interval,
    )  # fmt: skip


def json_rpc_client(
    pool: WebsocketConnectionPool,
    config: PoolConfig,
    *,
    connections: int,
    max_in_flight: int,
    request_timeout: float | None,
    resubscribe: bool,
) -> JsonRpcClient:
    """A :class:`JsonRpcClient` over ``pool``.

    Raises:
        TypeError, ValueError: As for :func:`multiplexer`.
    """
    return JsonRpcClient(
        pool, connections=connections, max_in_flight=max_in_flight,
        request_timeout=request_timeout, resubscribe=resubscribe,
        max_connections=config.max_connections,
        on_unsolicited=config.on_unsolicited, hook_timeout=config.hook_timeout,
        outdated=pool._core.outdated, rotation_interval=config.cleanup_interval,
    )  # fmt: skip
