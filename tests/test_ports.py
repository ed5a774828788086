"""The coordinator's ports (``_ports``): what the pool's real classes must offer it.

mypy checks the same through ``Machinery`` (``driver=self``); this says it by
name, so that a port that grows a member the pool lacks fails here first.
"""

from __future__ import annotations

import pytest

from aio_websocket_pool import WebsocketConnection, WebsocketConnectionPool
from aio_websocket_pool._machinery import Machinery
from aio_websocket_pool._ports import Driver, Grant, PooledConnection


def members(protocol: type) -> set[str]:
    """What a protocol declares: its methods and properties, and its annotated attributes."""
    declared = {name for name in vars(protocol) if not name.startswith("__")}
    return (declared | set(getattr(protocol, "__annotations__", {}))) - {
        "_is_protocol",
        "_abc_impl",
    }


def pooled_connection() -> tuple[Machinery, WebsocketConnection]:
    """A pool's machinery and a connection it made (in ``connecting``; nothing opened)."""
    machinery = WebsocketConnectionPool("ws://127.0.0.1:9/")._machinery
    return machinery, machinery._new_connection(0, None)


@pytest.mark.parametrize(("port", "side"), [(PooledConnection, 1), (Driver, 0)],
                         ids=["connection", "driver"])  # fmt: skip
def test_the_pool_offers_every_member_of_each_port(port: type, side: int) -> None:
    implementation = pooled_connection()[side]
    declared = members(port)
    assert len(declared) > 5  # the protocol was read at all
    assert sorted(name for name in declared if not hasattr(implementation, name)) == []


def test_a_grant_starts_with_no_handshake_and_for_its_acquirer() -> None:
    _, connection = pooled_connection()
    grant = Grant(connection)
    assert (grant.connection, grant.opening, grant.abandoned) == (connection, None, False)
    assert Grant(connection, abandoned=True).abandoned
