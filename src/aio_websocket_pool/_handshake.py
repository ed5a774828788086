"""Opening a WebSocket: the handshake, its retries, and the pool's backoff gate.

One place builds what websockets' ``connect`` is given, so that every
connection of a pool, and a standalone one, is opened the same way: the
user's ``connect`` arguments, with the logger wrapped so that it never shows
a secret, and the connection class mixed with :class:`PooledWebSocket` (the
frame sink and the pong clock the pool relies on).

Inside a pool, every attempt first passes the pool's shared :class:`Backoff`
gate, and an attempt the server answered with "not now" (HTTP 429 or 503,
with or without ``Retry-After``) trips it for all of them.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Final

from websockets.asyncio.client import ClientConnection

from ._backoff import Backoff
from ._redact import RedactingLogger, redact_uri
from ._retry import open_with_retries, server_says_not_now
from ._websocket import PooledConnect, pooled_class

_websockets_logger: Final = logging.getLogger("websockets.client")


async def open_websocket(
    uri: str,
    *,
    headers: dict[str, str],
    connect_kwargs: dict[str, Any],
    open_timeout: float,
    max_attempts: int,
    gate: Backoff | None,
    secrets: tuple[str, ...],
    who: str,
) -> ClientConnection:
    """Open a WebSocket to ``uri``, retrying transient failures up to ``max_attempts``.

    Raises:
        HandshakeRejectedError: The server answered with a 4xx (not 429).
        ConnectionUnavailableError: The last attempt failed, chained from a
            redacted copy of its cause.
    """
    kwargs = {
        "additional_headers": headers or None,
        "open_timeout": open_timeout,
        **connect_kwargs,
    }
    kwargs["logger"] = RedactingLogger(kwargs.get("logger") or _websockets_logger, secrets)
    kwargs["create_connection"] = pooled_class(kwargs.get("create_connection") or ClientConnection)
    attempt = functools.partial(_attempt, uri, kwargs, gate)
    return await open_with_retries(
        attempt, max_attempts=max_attempts, where=redact_uri(uri), who=who
    )


async def _attempt(uri: str, kwargs: dict[str, Any], gate: Backoff | None) -> ClientConnection:
    if gate is None:
        return await PooledConnect(uri, **kwargs)
    await gate.wait()
    try:
        websocket = await PooledConnect(uri, **kwargs)
    except Exception as exc:
        if (not_now := server_says_not_now(exc)) is not None:
            gate.trip(retry_after=not_now)
        raise
    gate.reset()
    return websocket
