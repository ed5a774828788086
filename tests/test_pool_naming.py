"""A pool's ``name`` (psycopg_pool's): where it shows, and which names are refused.

With several pools in one process (one per upstream, one per tenant), a log
line, a history record, a task or a metric point is only useful if it says
which pool it comes from. The default, ``pool-N``, tells pools apart too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from aio_websocket_pool import ConnectionUnavailableError, WebsocketConnectionPool
from aio_websocket_pool.otel import instrument
from helpers import pool_maker, pooled
from loopback import LoopbackServer

POOL_LOGGER = "aio_websocket_pool"
make_pool = pool_maker(health_check_interval=None, acquire_timeout=1.0, close_timeout=0.1)


# -- the default ---------------------------------------------------------------------------


def test_default_names_are_pool_n_distinct_in_order_of_creation(server: LoopbackServer) -> None:
    first, second = make_pool(server), make_pool(server)
    numbers = []
    for pool in (first, second):
        shaped = re.fullmatch(r"pool-(\d+)", pool.name)
        assert shaped is not None, pool.name
        numbers.append(int(shaped[1]))
    assert numbers[0] < numbers[1]


async def test_a_default_named_pools_connections_say_so(server: LoopbackServer) -> None:
    async with make_pool(server) as pool, pool.get_connection() as lease:
        assert lease.id == f"{pool.name}/conn-1"


# -- where the name shows ---------------------------------------------------------------------


async def test_the_name_shows_in_repr_stats_and_connection_ids(server: LoopbackServer) -> None:
    async with make_pool(server, name="feeds") as pool:
        assert repr(pool).startswith("<WebsocketConnectionPool feeds ")
        assert pool.stats().name == "feeds"
        leases = [await pool.acquire() for _ in range(2)]
        assert [lease.id for lease in leases] == ["feeds/conn-1", "feeds/conn-2"]
        assert "feeds/conn-1" in repr(leases[0])
        for lease in leases:
            await pool.release(lease)


async def test_connection_ids_are_numbered_per_pool(server: LoopbackServer) -> None:
    async with (
        make_pool(server, name="a") as a,
        make_pool(server, name="b") as b,
        a.get_connection() as on_a,
        b.get_connection() as on_b,
    ):
        assert (on_a.id, on_b.id) == ("a/conn-1", "b/conn-1")


async def test_history_records_carry_the_named_id(server: LoopbackServer) -> None:
    async with make_pool(server, name="feeds") as pool:
        async with pool.get_connection() as lease:
            pass
        records = pooled(lease).history
        assert records
        assert {record.connection_id for record in records} == {"feeds/conn-1"}
        assert {record.connection_id for record in pool.history} == {"feeds/conn-1"}
        assert all(str(record).split()[1] == "feeds/conn-1" for record in records)


async def test_the_log_line_of_each_transition_names_the_connection_of_the_pool(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=POOL_LOGGER)
    async with make_pool(server, name="feeds") as pool, pool.get_connection():
        pass
    lines = [r.getMessage() for r in caplog.records if r.name == POOL_LOGGER]
    opened = [line for line in lines if " open: connecting -> " in line]
    assert len(opened) == 1, lines
    assert " feeds/conn-1 open: " in opened[0]


async def test_the_pools_tasks_are_named_after_it(server: LoopbackServer) -> None:
    async with make_pool(server, name="feeds", min_connections=1) as pool:
        await pool.wait(timeout=1)
        names = [task.get_name() for task in asyncio.all_tasks()]
        ours = [name for name in names if name.startswith("aio_websocket_pool ")]
        assert ours
        assert all(name.startswith("aio_websocket_pool feeds ") for name in ours), ours


# -- every warning names the pool ---------------------------------------------------------------


async def warm_up_refused(server: LoopbackServer) -> None:
    server.refuse(1, 401)
    async with make_pool(server, name="feeds", warmup_connections=1, max_retries=1):
        pass


async def handshake_retried(server: LoopbackServer) -> None:
    server.refuse(1, 503)
    async with make_pool(server, name="feeds", max_retries=2) as pool, pool.get_connection():
        pass


async def nothing_of_a_pool_released(server: LoopbackServer) -> None:
    async with make_pool(server, name="feeds") as pool:
        await pool.release(None)  # type: ignore[arg-type]  # what a failed acquire left


async def an_ended_lease_released(server: LoopbackServer) -> None:
    async with make_pool(server, name="feeds") as pool:
        lease = await pool.acquire()
        await pool.release(lease)
        pool._lending.release_now(lease)  # what release() does, without its LeaseEndedError


async def closed_with_a_borrower(server: LoopbackServer) -> None:
    async with make_pool(server, name="feeds") as pool:
        lease = await pool.acquire()
        await pool.close(timeout=0.05)
        assert pooled(lease).is_closed


async def a_message_size_limit_like_a_pool_size(server: LoopbackServer) -> None:
    make_pool(server, name="feeds", max_size=10)


@pytest.mark.parametrize(
    "scenario",
    [
        warm_up_refused,
        handshake_retried,
        nothing_of_a_pool_released,
        an_ended_lease_released,
        closed_with_a_borrower,
        a_message_size_limit_like_a_pool_size,
    ],
)
async def test_every_line_the_pool_logs_above_debug_names_it(
    server: LoopbackServer,
    caplog: pytest.LogCaptureFixture,
    scenario: Callable[[LoopbackServer], Awaitable[None]],
) -> None:
    caplog.set_level(logging.INFO, logger=POOL_LOGGER)
    async with asyncio.timeout(2):
        await scenario(server)
    logged = [r for r in caplog.records if r.name == POOL_LOGGER and r.levelno >= logging.INFO]
    assert logged, "the scenario logged nothing"
    unnamed = [r.getMessage() for r in logged if "feeds" not in r.getMessage()]
    assert not unnamed


async def test_wait_failing_names_the_pool(server: LoopbackServer) -> None:
    server.hold_handshakes()
    async with make_pool(server, name="feeds", min_connections=1) as pool:
        with pytest.raises(ConnectionUnavailableError, match=r"^feeds: "):
            await pool.wait(timeout=0.05)
        server.release_handshakes()


# -- OpenTelemetry ------------------------------------------------------------------------------


@pytest.fixture
def reader() -> Iterator[tuple[InMemoryMetricReader, MeterProvider]]:
    """An SDK provider of the test's own, read in memory: no global state, no thread."""
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    yield metric_reader, provider
    provider.shutdown()


async def test_every_point_carries_the_pool_name(
    server: LoopbackServer, reader: tuple[InMemoryMetricReader, MeterProvider]
) -> None:
    """Two pools on one provider are told apart by their names, with no attributes= given."""
    metric_reader, provider = reader
    async with (
        make_pool(server, name="feeds", max_connections=2) as feeds,
        make_pool(server, name="orders", max_connections=3) as orders,
    ):
        instrument(feeds, meter_provider=provider)
        instrument(orders, meter_provider=provider)
        async with feeds.get_connection(), orders.get_connection():
            pass
        data = metric_reader.get_metrics_data()
    assert data is not None
    points = [
        (metric.name, point)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    ]
    assert points
    assert {dict(point.attributes or {}).get("pool.name") for _, point in points} == {
        "feeds",
        "orders",
    }
    limits = {
        dict(point.attributes or {})["pool.name"]: point.value
        for name, point in points
        if name == "websocket.pool.connection.max" and isinstance(point, NumberDataPoint)
    }
    assert limits == {"feeds": 2, "orders": 3}


# -- refused names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        pytest.param(7, TypeError, id="int"),
        pytest.param(b"feeds", TypeError, id="bytes"),
        pytest.param("", ValueError, id="empty"),
        pytest.param("feeds\nFAKE LOG LINE", ValueError, id="newline"),
        pytest.param("feeds\x00", ValueError, id="nul"),
        pytest.param("\x1b[31mred", ValueError, id="escape"),
    ],
)
def test_a_name_that_is_not_printable_text_is_refused_at_construction(
    server: LoopbackServer, name: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="name"):
        WebsocketConnectionPool(server.uri, name=name)  # type: ignore[arg-type]
