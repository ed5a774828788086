"""What the multiplexer's tests share: the key of an echoed request, and a pool to multiplex.

The echo servers answer a request with itself, so a request that carries its
key (``{"tag": ...}``) is its own reply: enough to match, time out, cancel
and lose requests against any server.
"""

from __future__ import annotations

import json
from collections.abc import Hashable

from aio_websocket_pool import WebsocketConnectionPool


def tag(message: str | bytes) -> Hashable | None:
    """The key of an echoed request: its ``tag`` field (strays are not JSON: no key)."""
    return json.loads(message)["tag"]  # type: ignore[no-any-return]


def tagged(key: Hashable) -> str:
    """A request whose echo is its own reply, under ``key``."""
    return json.dumps({"tag": key})


def pool_for(uri: str, **kwargs: object) -> WebsocketConnectionPool:
    """A pool that fails fast (an acquire within a second) and cleans up often."""
    return WebsocketConnectionPool(uri, acquire_timeout=1.0, cleanup_interval=0.2, **kwargs)  # type: ignore[arg-type]
