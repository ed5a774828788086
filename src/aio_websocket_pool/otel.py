"""A pool's figures as OpenTelemetry metrics: ``pip install 'aio-websocket-pool[otel]'``.

Only this module imports ``opentelemetry-api``; ``import aio_websocket_pool``
never does, so the core package works without it.

:func:`instrument` reports what :meth:`WebsocketConnectionPool.stats` knows:
connections by state, waiters and the running totals through observable
instruments, read from ``stats()`` when a reader collects; acquire waits and
connect times through two histograms, recorded as they happen by a listener
on the pool. Every point carries the server's host and port and the
attributes the caller gives, never the URI's user-info, path or query, nor a
header.

Instruments are created once per meter provider and report every pool
instrumented on it: a second set under the same names would be merged into
the first by the SDK, its callbacks lost. For the same reason a pool is
instrumented at most once per meter provider.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Histogram, Observation
    from opentelemetry.util.types import AttributeValue
except ImportError as exc:
    raise ImportError(
        "aio_websocket_pool.otel needs opentelemetry-api: pip install 'aio-websocket-pool[otel]'"
    ) from exc

from websockets.uri import parse_uri

from . import __version__
from ._fsm import CLOSED, State
from ._pool import WebsocketConnectionPool
from ._stats import PoolStats

__all__ = [
    "DURATION_BUCKETS",
    "METER_NAME",
    "METRICS",
    "STATE_ATTRIBUTE",
    "Metric",
    "PoolInstrumentation",
    "instrument",
]

#: The instrumentation scope of every instrument.
METER_NAME: Final = "aio_websocket_pool"
#: The attribute that tells the points of ``websocket.pool.connection.count`` apart.
STATE_ATTRIBUTE: Final = "websocket.pool.connection.state"
#: Histogram bucket boundaries in seconds (OpenTelemetry's HTTP duration buckets, and
#: 30 s, the default ``acquire_timeout``), for a View: the SDK's defaults suit milliseconds.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Metric:
    """One instrument, as docs/observability.md lists it.

    Attributes:
        name: The instrument's name.
        kind: The OpenTelemetry instrument. Observable ones are read from
            ``stats()`` when a reader collects; histograms are recorded as
            durations are measured.
        unit: UCUM unit: ``s`` or an annotation such as ``{connection}``.
        field: The :class:`~aio_websocket_pool.PoolStats` field reported; for
            the connection count, ``None``: one point per state.
        description: What it counts.
    """

    name: str
    kind: Literal["ObservableUpDownCounter", "ObservableCounter", "Histogram"]
    unit: str
    field: str | None
    description: str


#: Every instrument :func:`instrument` reports, in the order the docs list them.
METRICS: Final[tuple[Metric, ...]] = (
    Metric("websocket.pool.connection.count", "ObservableUpDownCounter",
           "{connection}", None,
           "Connections holding a slot, by state (connecting, idle, busy, draining)."),
    Metric("websocket.pool.connection.max", "ObservableUpDownCounter",
           "{connection}", "max_connections",
           "The pool's max_connections."),
    Metric("websocket.pool.acquire.pending", "ObservableUpDownCounter",
           "{request}", "waiting",
           "Acquirers queued for a connection."),
    Metric("websocket.pool.connection.opened", "ObservableCounter",
           "{connection}", "opened",
           "Handshakes that succeeded."),
    Metric("websocket.pool.connection.failed", "ObservableCounter",
           "{connection}", "failed_connects",
           "Connections that could not be opened, after retries."),
    Metric("websocket.pool.connection.closed", "ObservableCounter",
           "{connection}", "closed",
           "Open connections retired, for any reason."),
    Metric("websocket.pool.connection.lost", "ObservableCounter",
           "{connection}", "connections_lost",
           "Connections found closed by the peer or the network."),
    Metric("websocket.pool.acquire.completed", "ObservableCounter",
           "{acquire}", "acquired",
           "Times a connection was handed out."),
    Metric("websocket.pool.acquire.reused", "ObservableCounter",
           "{acquire}", "reused",
           "Hand-outs of a connection that had been handed out before."),
    Metric("websocket.pool.health_check.failed", "ObservableCounter",
           "{check}", "health_checks_failed",
           "Health-check pings that failed or timed out."),
    Metric("websocket.pool.hook.failed", "ObservableCounter",
           "{call}", "hooks_failed",
           "Hook calls that raised or timed out."),
    Metric("websocket.pool.message.drained", "ObservableCounter",
           "{message}", "messages_drained",
           "Stray messages read by drains after a release."),
    Metric("websocket.pool.message.unsolicited", "ObservableCounter",
           "{message}", "unsolicited_messages",
           "Messages that arrived while nobody held the connection."),
    Metric("websocket.pool.acquire.duration", "Histogram",
           "s", "acquire_wait",
           "Time from acquire() to the hand-out, for each successful acquire."),
    Metric("websocket.pool.connect.duration", "Histogram",
           "s", "connect_time",
           "Time to open each new connection, retries and on_connect included."),
)  # fmt: skip

_LIVE_STATES: Final = tuple(state for state in State if state is not CLOSED)

Attributes = Mapping[str, AttributeValue]
Read = Callable[[PoolStats, Attributes], Iterator[Observation]]


def instrument(
    pool: WebsocketConnectionPool,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    attributes: Attributes | None = None,
) -> PoolInstrumentation:
    """Publish ``pool``'s figures as OpenTelemetry metrics until :meth:`uninstrument`.

    Args:
        pool: The pool to report on. It is held weakly: a pool that was
            garbage-collected stops reporting.
        meter_provider: Where the instruments are created; by default the
            global one (``opentelemetry.metrics.get_meter_provider()``), so
            set that before the first call.
        attributes: Added to every point, to tell pools apart
            (``{"pool": "feeds"}``). They override ``server.address`` and
            ``server.port``. Never put a secret here.

    Returns:
        The handle whose :meth:`~PoolInstrumentation.uninstrument` stops it.
        A pool already instrumented on this meter provider, with the same
        attributes, gets the same handle back: a second set of points
        would count every figure of the pool twice. (Library code may
        instrument a pool its caller instrumented too.)

    Raises:
        ValueError: The pool is already instrumented on this meter provider
            with other attributes, whose points would count it again under
            another name. Uninstrument the first, or pass the same attributes.
    """
    provider = meter_provider or metrics.get_meter_provider()
    server = parse_uri(pool.uri)
    carried: dict[str, AttributeValue] = {
        "pool.name": pool.name,
        "server.address": server.host,
        "server.port": server.port,
    }
    carried.update(attributes or {})
    with _REGISTRY_LOCK:
        instruments = _REGISTRY.get(provider)
        if instruments is None:
            instruments = _REGISTRY[provider] = _Instruments(
                provider.get_meter(METER_NAME, __version__)
            )
        for existing in instruments.pools:
            if existing._pool() is not pool:
                continue
            if existing.attributes != carried:
                raise ValueError(
                    "this pool is already instrumented on this meter provider with other "
                    "attributes (its figures would be counted twice): call uninstrument() "
                    "on the first instrumentation, or pass the same attributes"
                )
            return existing
        instrumentation = PoolInstrumentation(pool, instruments, carried)
        instruments.pools.append(instrumentation)
        pool._core.totals.listeners.append(instrumentation._record)
    return instrumentation


class PoolInstrumentation:
    """One pool reporting to one meter provider; made by :func:`instrument`.

    Attributes:
        attributes: What every point of this pool carries.
    """

    def __init__(
        self,
        pool: WebsocketConnectionPool,
        instruments: _Instruments,
        attributes: Attributes,
    ) -> None:
        self._pool = weakref.ref(pool)
        self._instruments = instruments
        self.attributes: Attributes = dict(attributes)

    def uninstrument(self) -> None:
        """Stop reporting: no more histogram points, no more observations. Idempotent."""
        pool = self._pool()
        if pool is not None and self._record in pool._core.totals.listeners:
            pool._core.totals.listeners.remove(self._record)
        if self in self._instruments.pools:
            self._instruments.pools.remove(self)

    def stats(self) -> PoolStats | None:
        """The pool's stats, or None once it was garbage-collected.

        Readers such as the SDK's periodic one collect on their own thread:
        ``stats()`` only reads sizes and numbers, never iterates what the event
        loop may be changing, so it is safe to call from there.
        """
        pool = self._pool()
        return None if pool is None else pool.stats()

    def _record(self, what: str, seconds: float) -> None:
        # A listener of the pool: on the event loop, once per measured duration.
        histogram = self._instruments.histograms.get(what)
        if histogram is not None:
            histogram.record(seconds, self.attributes)


class _Instruments:
    """The instruments of one meter provider, reporting every pool instrumented on it."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.pools: list[PoolInstrumentation] = []
        self.histograms: dict[str, Histogram] = {}
        for metric in METRICS:
            if metric.kind == "Histogram":
                assert metric.field is not None  # noqa: S101  (every histogram has one)
                self.histograms[metric.field] = meter.create_histogram(
                    metric.name, unit=metric.unit, description=metric.description
                )
                continue
            create = (
                meter.create_observable_counter
                if metric.kind == "ObservableCounter"
                else meter.create_observable_up_down_counter
            )
            create(
                metric.name,
                callbacks=[self._observer(_read(metric.field))],
                unit=metric.unit,
                description=metric.description,
            )

    def _observer(self, read: Read) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for instrumentation in tuple(self.pools):
                stats = instrumentation.stats()
                if stats is None:  # the pool was garbage-collected
                    instrumentation.uninstrument()
                else:
                    yield from read(stats, instrumentation.attributes)

        return observe


def _read(field: str | None) -> Read:
    """How one observable instrument turns a pool's stats into points."""
    if field is None:
        return _by_state

    def one(stats: PoolStats, attributes: Attributes) -> Iterator[Observation]:
        yield Observation(getattr(stats, field), attributes)

    return one


def _by_state(stats: PoolStats, attributes: Attributes) -> Iterator[Observation]:
    for state in _LIVE_STATES:
        yield Observation(getattr(stats, state), {**attributes, STATE_ATTRIBUTE: state.value})


_REGISTRY_LOCK: Final = threading.Lock()
_REGISTRY: Final[weakref.WeakKeyDictionary[metrics.MeterProvider, _Instruments]] = (
    weakref.WeakKeyDictionary()
)
