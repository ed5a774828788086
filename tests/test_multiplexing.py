"""Making a pool's multiplexers (``_multiplexing``): they take the pool's settings of the moment.

The refusals of bad arguments are tested with the multiplexers themselves
(``tests/test_mux.py``, ``tests/test_jsonrpc.py``); here, that what bounds a
multiplexer is the pool's config when it is made, a resize included.
"""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from aio_websocket_pool import WebsocketConnectionPool


def key(message: str | bytes) -> Hashable | None:
    return message


def test_a_multiplexer_is_bounded_by_the_pools_max_connections_after_a_resize() -> None:
    pool = WebsocketConnectionPool("ws://127.0.0.1:9/", max_connections=2)
    with pytest.raises(ValueError, match="max_connections=2"):
        pool.multiplexed(key=key, connections=3)
    with pytest.raises(ValueError, match="max_connections=2"):
        pool.json_rpc(connections=3)
    pool.resize(max_connections=3)
    assert pool.multiplexed(key=key, connections=3) is not None
    assert pool.json_rpc(connections=3) is not None
