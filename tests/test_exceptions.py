"""The one hierarchy of exceptions (``_exceptions``): as its docstring draws it, with its fields."""

from __future__ import annotations

import re

import pytest

import aio_websocket_pool
from aio_websocket_pool import (
    ConnectionHookError,
    ConnectionPoolExhaustedError,
    HandshakeRejectedError,
    InvalidTransitionError,
    JsonRpcError,
    RequestTimeoutError,
    TooManyWaitersError,
    WebsocketError,
    _exceptions,
)

EXCEPTIONS = {
    name: value
    for name in aio_websocket_pool.__all__
    if isinstance(value := getattr(aio_websocket_pool, name), type)
    and issubclass(value, BaseException)
}


def drawn_parents() -> dict[str, str]:
    """Each class of the tree in the module docstring, and the class it hangs under."""
    doc = _exceptions.__doc__
    assert doc is not None
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        found = re.match(r"^\s*(?P<branch>[│ ]*[├└]── )?(?P<name>[A-Z]\w+Error)\b", line)
        if found is None:
            continue
        depth = len(found["branch"] or "")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[found["name"]] = stack[-1][1]
        stack.append((depth, found["name"]))
    return parents


def test_the_drawn_tree_is_the_real_hierarchy() -> None:
    parents = drawn_parents()
    assert set(parents) | {"WebsocketError"} == set(EXCEPTIONS)
    for name, parent in parents.items():
        assert EXCEPTIONS[name].__bases__[0] is EXCEPTIONS[parent], name
    assert WebsocketError.__bases__ == (RuntimeError,)


@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
def test_every_exception_is_a_websocket_error(name: str) -> None:
    assert issubclass(EXCEPTIONS[name], WebsocketError)


@pytest.mark.parametrize(
    "error", [ConnectionPoolExhaustedError, TooManyWaitersError, RequestTimeoutError]
)
def test_running_out_of_time_is_also_a_timeout_error(error: type[Exception]) -> None:
    """As httpx's and psycopg's pool timeouts are: ``except TimeoutError`` catches them."""
    with pytest.raises(TimeoutError):
        raise error("no connection came free")


def test_the_errors_with_fields_keep_them() -> None:
    rejected = HandshakeRejectedError("HTTP 401", status_code=401)
    hook = ConnectionHookError("on_connect raised ValueError", hook="on_connect")
    rpc = JsonRpcError(-32601, "Method not found", {"method": "nope"})
    illegal = InvalidTransitionError("idle", "settle")
    assert (rejected.status_code, str(rejected)) == (401, "HTTP 401")
    assert hook.hook == "on_connect"
    assert (rpc.code, rpc.message, rpc.data) == (-32601, "Method not found", {"method": "nope"})
    assert str(rpc) == "JSON-RPC error -32601: Method not found"
    assert (illegal.state, illegal.event) == ("idle", "settle")
    assert str(illegal) == "event 'settle' is not allowed in state 'idle'"
