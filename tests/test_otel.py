"""The OpenTelemetry metrics of ``aio_websocket_pool.otel``, and the logging example.

Each test instruments a pool on the loopback echo server with its own SDK
``MeterProvider`` and collects through the SDK's in-memory reader: what a
collection reports must be what ``pool.stats()`` says at that moment, state
by state and total by total, and the histograms must hold one point per
duration the pool measured. The logging test runs the snippet that
docs/observability.md shows and checks it yields one line per transition.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from aio_websocket_pool import HandshakeRejectedError, PoolStats
from aio_websocket_pool.otel import (
    DURATION_BUCKETS,
    METER_NAME,
    METRICS,
    STATE_ATTRIBUTE,
    instrument,
)
from helpers import BOUND, assert_consistent, pool_maker, pooled, wait_until
from loopback import LoopbackServer

ROOT = Path(__file__).resolve().parent.parent
OBSERVABILITY = (ROOT / "docs" / "observability.md").read_text()
POOL_LOGGER = "aio_websocket_pool"
LIVE_STATES = ("connecting", "idle", "busy", "draining")
HISTOGRAMS = {metric.name: metric.field for metric in METRICS if metric.kind == "Histogram"}

#: Health checks off (no pings to count), bounded acquires.
make_pool = pool_maker(health_check_interval=None, acquire_timeout=BOUND, max_retries=1)

Points = dict[str, list[Any]]


# -- helpers ------------------------------------------------------------------------------


class Collector:
    """An SDK meter provider with in-memory readers, and the View the docs recommend.

    Attributes:
        reader: Cumulative, like most exporters: each collection holds the totals.
        delta: Reports histograms as deltas: each collection holds only the
            durations recorded since the one before.
    """

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.delta = InMemoryMetricReader(
            preferred_temporality={Histogram: AggregationTemporality.DELTA}
        )
        self.provider = MeterProvider(
            metric_readers=[self.reader, self.delta],
            views=[
                View(
                    instrument_name="websocket.pool.*.duration",
                    aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
                )
            ],
        )

    def collect(self, reader: InMemoryMetricReader | None = None) -> Points:
        """Every data point of one collection (of ``reader``, by default the cumulative one)."""
        found: Points = {}
        data = (reader or self.reader).get_metrics_data()
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == METER_NAME
                for metric in scope.metrics:  # older SDKs list metrics with no points
                    if metric.data.data_points:
                        found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Collector]:
    """A provider of the test's own: no global state, no export thread."""
    collector = Collector()
    yield collector
    collector.provider.shutdown()


def point(points: Points, name: str, **attributes: Any) -> Any:
    """The one point of ``name`` whose attributes include ``attributes``."""
    matching = [
        p for p in points.get(name, []) if attributes.items() <= dict(p.attributes or {}).items()
    ]
    assert len(matching) == 1, f"{name} {attributes}: {matching}"
    return matching[0]


def assert_reports(points: Points, stats: PoolStats, **attributes: Any) -> None:
    """Every instrument of the table reports what ``stats`` says, for the given pool."""
    for metric in METRICS:
        if metric.kind == "Histogram":
            assert metric.field is not None
            timing = getattr(stats, metric.field)
            found: HistogramDataPoint = point(points, metric.name, **attributes)
            assert found.count == timing.count, metric.name
            assert found.sum == pytest.approx(timing.total), metric.name
            assert found.max == pytest.approx(timing.max), metric.name
        elif metric.field is None:
            for state in LIVE_STATES:
                found_state: NumberDataPoint = point(
                    points, metric.name, **attributes, **{STATE_ATTRIBUTE: state}
                )
                assert found_state.value == getattr(stats, state), state
        else:
            found_value: NumberDataPoint = point(points, metric.name, **attributes)
            assert found_value.value == getattr(stats, metric.field), metric.name


def code_block(markdown: str, heading: str) -> str:
    """The first ``python`` code block under ``heading`` in ``markdown``."""
    section = markdown.split(f"\n{heading}\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, f"no python block under {heading!r}"
    return found.group(1)


# -- the metrics ----------------------------------------------------------------------------


async def test_every_instrument_reports_what_stats_says(
    server: LoopbackServer, otel: Collector
) -> None:
    """States, waiters, totals and timings, each as stats() has them, on a pool mid-flight.

    The pool is caught with a handshake in flight, an acquirer queued, two
    connections busy, one reuse and one refused handshake behind it; then
    again once everything came back.
    """
    pool = make_pool(server, max_connections=3)
    async with pool:
        instrument(pool, meter_provider=otel.provider, attributes={"pool": "feeds"})
        first = await pool.acquire()
        second = await pool.acquire()
        await pool.release(second)
        second = await pool.acquire()
        server.refuse(1, 403)
        with pytest.raises(HandshakeRejectedError):
            await pool.acquire_new()
        server.hold_handshakes()
        opening = asyncio.create_task(pool.acquire())
        queued = asyncio.create_task(pool.acquire())
        await wait_until(
            lambda: (pool.stats().connecting, pool.stats().waiting) == (1, 1),
            "one handshake in flight and one acquirer queued",
        )
        stats = assert_consistent(pool)
        points = otel.collect()
        assert (stats.busy, stats.opened, stats.failed_connects, stats.reused) == (2, 2, 1, 1)
        assert_reports(points, stats, pool="feeds")
        assert point(points, "websocket.pool.acquire.pending", pool="feeds").value == 1

        server.release_handshakes()
        await pool.release(first)
        for conn in await asyncio.gather(opening, queued):
            await pool.release(conn)
        await pool.release(second)
        await wait_until(lambda: pool.stats().idle == 3, "every connection back and idle")
        assert_reports(otel.collect(), assert_consistent(pool), pool="feeds")


async def test_uninstrument_stops_every_report(server: LoopbackServer, otel: Collector) -> None:
    """After uninstrument(), durations are no longer recorded and the observers report nothing."""
    async with make_pool(server) as pool:
        instrumentation = instrument(pool, meter_provider=otel.provider)
        for _ in range(3):
            async with pool.get_connection():
                pass
        assert_reports(otel.collect(), assert_consistent(pool))
        recorded = otel.collect(otel.delta)
        assert point(recorded, "websocket.pool.acquire.duration").count == 3
        assert point(recorded, "websocket.pool.connect.duration").count == 1

        instrumentation.uninstrument()
        instrumentation.uninstrument()  # idempotent
        assert pool._core.totals.listeners == []
        for _ in range(3):
            async with pool.get_new_connection():
                pass
        assert pool.stats().acquire_wait.count == 6
        assert pool.stats().connect_time.count == 4
        assert otel.collect(otel.delta) == {}
        # Cumulative histograms may repeat the totals of before; nothing else is reported.
        assert set(otel.collect()) <= set(HISTOGRAMS)


async def test_pools_on_one_provider_report_apart(server: LoopbackServer, otel: Collector) -> None:
    """Two pools on one provider each get their own points, told apart by their attributes.

    The SDK merges a second instrument of the same name into the first and
    drops its callbacks, so the instruments must be shared, not made per pool.
    """
    async with make_pool(server) as feeds, make_pool(server) as orders:
        instrument(feeds, meter_provider=otel.provider, attributes={"pool": "feeds"})
        instrument(orders, meter_provider=otel.provider, attributes={"pool": "orders"})
        held = [await feeds.acquire() for _ in range(3)]
        async with orders.get_connection():
            pass
        points = otel.collect()
        assert_reports(points, assert_consistent(feeds), pool="feeds")
        assert_reports(points, assert_consistent(orders), pool="orders")
        busy = {STATE_ATTRIBUTE: "busy"}
        assert point(points, "websocket.pool.connection.count", pool="feeds", **busy).value == 3
        assert point(points, "websocket.pool.connection.count", pool="orders", **busy).value == 0
        for conn in held:
            await feeds.release(conn)


async def test_instrumenting_a_pool_twice_counts_it_once(
    server: LoopbackServer, otel: Collector
) -> None:
    """The same call again returns the first instrumentation: one point per figure, one record."""
    async with make_pool(server) as pool:
        first = instrument(pool, meter_provider=otel.provider, attributes={"pool": "feeds"})
        again = instrument(pool, meter_provider=otel.provider, attributes={"pool": "feeds"})
        assert again is first
        assert pool._core.totals.listeners == [first._record]
        for _ in range(2):
            async with pool.get_connection():
                pass
        points = otel.collect()
        assert_reports(points, assert_consistent(pool), pool="feeds")  # one point each
        assert point(points, "websocket.pool.acquire.duration", pool="feeds").count == 2


async def test_instrumenting_a_pool_again_with_other_attributes_raises(
    server: LoopbackServer, otel: Collector
) -> None:
    """Other attributes would report the pool twice: ValueError, until the first is undone."""
    async with make_pool(server) as pool:
        first = instrument(pool, meter_provider=otel.provider, attributes={"pool": "feeds"})
        with pytest.raises(ValueError, match="already instrumented"):
            instrument(pool, meter_provider=otel.provider, attributes={"pool": "orders"})
        with pytest.raises(ValueError, match="already instrumented"):
            instrument(pool, meter_provider=otel.provider)
        async with pool.get_connection():
            pass
        points = otel.collect(otel.delta)
        assert_reports(points, assert_consistent(pool), pool="feeds")
        assert "orders" not in str(points)

        first.uninstrument()
        renamed = instrument(pool, meter_provider=otel.provider, attributes={"pool": "orders"})
        assert renamed is not first
        async with pool.get_connection():
            pass
        assert (
            point(otel.collect(otel.delta), "websocket.pool.acquire.duration").attributes["pool"]
            == "orders"
        )


async def test_a_pool_instrumented_on_two_providers_reports_once_to_each(
    server: LoopbackServer, otel: Collector
) -> None:
    """Another meter provider is another pipeline, not a second count in the same one."""
    other = Collector()
    try:
        async with make_pool(server) as pool:
            here = instrument(pool, meter_provider=otel.provider)
            there = instrument(pool, meter_provider=other.provider, attributes={"pool": "x"})
            assert there is not here
            async with pool.get_connection():
                pass
            stats = assert_consistent(pool)
            assert_reports(otel.collect(), stats)
            assert_reports(other.collect(), stats, pool="x")
    finally:
        other.provider.shutdown()


async def test_a_collected_pool_stops_reporting(server: LoopbackServer, otel: Collector) -> None:
    """The pool is held weakly: once garbage-collected, its points are gone, nothing breaks."""
    pool = make_pool(server)
    instrument(pool, meter_provider=otel.provider, attributes={"pool": "gone"})
    assert point(otel.collect(), "websocket.pool.connection.max", pool="gone").value == 50
    del pool
    gc.collect()
    assert otel.collect() == {}


async def test_no_secret_reaches_a_point(server: LoopbackServer, otel: Collector) -> None:
    """User-info, query and header values appear in no point; host and port do."""
    uri = f"ws://user:SECRET-PW@127.0.0.1:{server.port}/feed?token=SECRET-TOKEN"
    async with make_pool(uri, headers={"Authorization": "Bearer SECRET-HEADER"}) as pool:
        instrument(pool, meter_provider=otel.provider)
        async with pool.get_connection():
            pass
        server.refuse(1, 401)
        with pytest.raises(HandshakeRejectedError):
            await pool.acquire_new()
        data = otel.reader.get_metrics_data()
    assert data is not None
    dumped = data.to_json()
    assert "SECRET" not in dumped
    assert "/feed" not in dumped
    assert "token" not in dumped
    opened = point(otel.collect(), "websocket.pool.connection.opened")
    assert dict(opened.attributes) == {
        "pool.name": pool.name,
        "server.address": "127.0.0.1",
        "server.port": server.port,
    }


async def test_collecting_on_another_thread_while_the_pool_works(
    server: LoopbackServer, otel: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader collects on its own thread (the SDK's periodic one does) without errors.

    Eight tasks share two connections, so the waiter queue that stats()
    iterates changes all the time while the thread collects.
    """
    async with make_pool(server, max_connections=2) as pool:
        instrument(pool, meter_provider=otel.provider)
        done = threading.Event()
        collections = 0

        def keep_collecting() -> None:
            nonlocal collections
            while not done.is_set():
                otel.collect(otel.delta)  # the cumulative reader is read once, at the end
                collections += 1

        async def borrow() -> None:
            for _ in range(40):
                async with pool.get_connection():
                    await asyncio.sleep(0)

        collecting = asyncio.create_task(asyncio.to_thread(keep_collecting))
        try:
            await asyncio.gather(*(borrow() for _ in range(8)))
        finally:
            done.set()
            await collecting
        assert collections > 0
        assert_reports(otel.collect(), assert_consistent(pool))
    failures = [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert not failures, [r.getMessage() for r in failures]


# -- packaging -------------------------------------------------------------------------------


def test_the_core_package_does_not_import_opentelemetry() -> None:
    """``import aio_websocket_pool`` works without the extra: it imports none of it."""
    probe = (
        "import sys, aio_websocket_pool\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'opentelemetry']\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=BOUND * 4)  # noqa: S603


def test_without_the_api_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the module without opentelemetry-api says which extra to install."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "aio_websocket_pool.otel")
    with pytest.raises(ImportError, match=re.escape("pip install 'aio-websocket-pool[otel]'")):
        importlib.import_module("aio_websocket_pool.otel")


# -- the docs -------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS, ids=lambda metric: metric.name)
def test_every_instrument_is_documented(metric: Any) -> None:
    """docs/observability.md has a row for each instrument, as the code defines it."""
    source = "one point per state" if metric.field is None else f"`{metric.field}`"
    assert f"| `{metric.name}` | {metric.kind} | `{metric.unit}` | {source} |" in OBSERVABILITY


async def test_the_logging_example_shows_every_transition(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The docs' snippet is what turns the lines on, and then each transition is one line."""
    root, pool_logger = logging.getLogger(), logging.getLogger(POOL_LOGGER)
    handlers, levels = list(root.handlers), (root.level, pool_logger.level)
    root.setLevel(logging.WARNING)  # an application's usual setting: no DEBUG anywhere
    try:
        assert not pool_logger.isEnabledFor(logging.DEBUG)
        exec(code_block(OBSERVABILITY, "## Logging"), {})  # noqa: S102  (our own docs)
        assert pool_logger.isEnabledFor(logging.DEBUG)
        caplog.handler.setLevel(logging.DEBUG)  # capture all; the loggers' levels are the doc's
        caplog.clear()
        async with make_pool(server) as pool:
            conns = [await pool.acquire() for _ in range(2)]
            for conn in conns:
                await pool.release(conn)
            async with pool.get_connection():
                pass
    finally:
        root.setLevel(levels[0])
        pool_logger.setLevel(levels[1])
        for handler in set(root.handlers) - set(handlers):
            root.removeHandler(handler)
    lines = [r.getMessage() for r in caplog.records if r.name == POOL_LOGGER]
    history = [str(record) for conn in conns for record in pooled(conn).history]
    assert sorted(lines) == sorted(history)
    assert len(history) == 10  # each opened and closed, three hand-outs and releases
