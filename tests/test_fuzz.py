"""Fuzzing the public surface: every bad input gets a typed error, nothing else breaks.

Hypothesis throws values of every type and range at the constructors and at
the public methods. A bad value must raise ``TypeError`` or ``ValueError`` (or
one of the pool's :class:`~aio_websocket_pool.WebsocketError`\\ s), never any
other exception; a value the constructor accepts must give a pool that works,
and no call may leave the counters inconsistent.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aio_websocket_pool import WebsocketConnection, WebsocketConnectionPool, WebsocketError
from aio_websocket_pool.testing import LoopbackServer
from helpers import BOUND, assert_consistent, pooled, round_trip

#: The pool's keyword arguments, each of which the fuzzer may set.
ARGUMENTS = (
    "headers",
    "idle_timeout",
    "max_connections",
    "max_retries",
    "cleanup_interval",
    "connection_timeout",
    "warmup_connections",
    "check_server_data_on_release",
    "drain_timeout",
    "drain_quiet_period",
    "drain_condition",
    "acquire_timeout",
    "health_check_interval",
    "health_check_timeout",
    "history_size",
)
#: Names websockets' connect() takes (passed through), and some it does not.
CONNECT_ARGUMENTS = ("max_size", "ping_interval", "compression", "ssl", "open_timeout", "bogus")

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers()), max_size=2),
    st.just(len),
)
URIS = st.one_of(
    st.just("ws://127.0.0.1:9/"),
    st.text(max_size=24),
    st.from_regex(r"\A(wss?|http)://[a-z0-9.:@%\[\]]{0,16}(/[a-z?=&#%]{0,8})?\Z"),
)
TYPED = (TypeError, ValueError, WebsocketError)
fuzz = settings(max_examples=200, deadline=None)


@fuzz
@given(
    uri=URIS,
    kwargs=st.dictionaries(st.sampled_from(ARGUMENTS + CONNECT_ARGUMENTS), ANY_VALUE, max_size=4),
)
def test_the_pool_constructor_accepts_or_raises_a_typed_error(
    uri: Any, kwargs: dict[str, Any]
) -> None:
    try:
        pool = WebsocketConnectionPool(uri, **kwargs)
    except TYPED:
        return
    assert pool.stats().total == 0
    assert not pool.is_started
    repr(pool)


@fuzz
@given(
    uri=URIS,
    kwargs=st.dictionaries(
        st.sampled_from(("headers", "idle_timeout", "drain_timeout", "history_size", "max_size")),
        ANY_VALUE,
        max_size=3,
    ),
)
def test_the_connection_constructor_accepts_or_raises_a_typed_error(
    uri: Any, kwargs: dict[str, Any]
) -> None:
    try:
        connection = WebsocketConnection(uri=uri, **kwargs)
    except TYPED:
        return
    repr(connection)


#: Timing values the constructor accepts, from the tiniest to the infinite.
TIMINGS = st.one_of(
    st.sampled_from([0.0, 5e-324, 1e-9, 0.5, 1e9, 1e308, math.inf]),
    st.floats(min_value=0, max_value=2.0),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    timings=st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(
            ("idle_timeout", "acquire_timeout", "health_check_interval", "drain_timeout"), TIMINGS
        ),
    ),
    positive=st.fixed_dictionaries(
        {},
        optional={
            name: st.sampled_from([1e-3, 0.5, 1e9, math.inf])
            for name in ("connection_timeout", "health_check_timeout")
        },
    ),
)
async def test_any_accepted_timing_gives_a_pool_that_works_or_fails_typed(
    server: LoopbackServer, timings: dict[str, Any], positive: dict[str, Any]
) -> None:
    try:
        pool = WebsocketConnectionPool(
            server.uri,
            cleanup_interval=0.01,
            drain_quiet_period=0,
            max_retries=1,  # a handshake timed out by a tiny connection_timeout fails at once
            **timings,
            **positive,
        )
    except TYPED:
        return
    async with pool:
        for _ in range(2):
            try:
                async with pool.get_connection() as conn:
                    await round_trip(conn, "fuzzed")
            except WebsocketError:
                pass
            assert_consistent(pool)
    assert pool.stats().total == 0


@pytest.fixture
async def pool(server: LoopbackServer) -> Any:
    async with WebsocketConnectionPool(server.uri, acquire_timeout=BOUND) as pool:
        yield pool


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(message=ANY_VALUE | st.binary(max_size=64) | st.text(max_size=64), force=ANY_VALUE)
async def test_send_and_release_take_anything_without_corrupting_the_pool(
    pool: WebsocketConnectionPool, message: Any, force: Any
) -> None:
    async with pool.get_connection() as conn:
        if isinstance(message, str | bytes):
            await conn.send(message)
            assert await conn.recv() == message
        else:
            with pytest.raises(TypeError):
                await conn.send(message)
        await pool.release(message)  # not a connection: a warning, nothing else
        assert conn.is_busy
    assert_consistent(pool)
    conn = await pool.acquire()
    await pool.release(conn, force_remove=force)
    assert pooled(conn).is_closed == bool(force)
    await pool.release(conn, force_remove=force)  # twice: a warning, nothing else
    assert_consistent(pool)
