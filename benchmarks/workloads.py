"""The workloads, written once against :class:`~benchmarks.subjects.Subject`.

Each workload opens its subject, runs one untimed warm-up round, then
``repeats`` timed rounds, and returns one sample (metric name → value) per
round; the runner takes the medians. Every loop is bounded by a count, and the
micro-loop of :func:`cycle` also by a time budget. Clocks are
``time.perf_counter_ns``.

Functions → the workloads of docs/performance.md: :func:`sequential` is W1, :func:`concurrent`
is W2 and W3, :func:`cold_burst` is W4, :func:`cycle` is W5,
:func:`scaling_cycle` and :func:`scaling_concurrent` are W6 (W5 and W2 at
several sizes), :func:`memory` is W7, and :func:`benchmarks.multiplexing.m1` is M1.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from .multiplexing import m1
from .subjects import Subject, make_subject

#: The request each round trip sends (the echo server sends it back).
PAYLOAD = '{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}'
#: Operations between two looks at the clock in :func:`cycle`'s time budget.
BATCH = 100

Sample = dict[str, float]


@dataclass(frozen=True, slots=True)
class Params:
    """A workload's sizes.

    Attributes:
        connections: The subject's limit (``max_connections``).
        workers: Concurrent tasks.
        requests: Operations per task and round (requests, or acquire + release cycles).
        repeats: Timed rounds, after one untimed warm-up round.
        budget: Seconds a round of :func:`cycle` may take: it stops early past it,
            so that a slow subject (0.1.0 pings on every reuse) stays bounded.
        scales: Connections open, one subject each, for the scaling workloads.
        exclusive_connections: M1: the connections of the pool of exclusive
            leases that the multiplexed calls are compared with.
    """

    connections: int = 1
    workers: int = 1
    requests: int = 1
    repeats: int = 1
    budget: float = 1.0
    scales: tuple[int, ...] = ()
    exclusive_connections: int = 0

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> Params:
        """The params a worker was sent (JSON has lists where the params have tuples)."""
        return cls(**{**fields, "scales": tuple(fields.get("scales", ()))})


def _us(nanoseconds: float) -> float:
    return nanoseconds / 1000


async def _opened(name: str, uri: str, params: Params, *, warm: int) -> Subject[Any]:
    subject = make_subject(name)
    await subject.open(uri, connections=params.connections, workers=params.workers, warm=warm)
    return subject


async def sequential(name: str, uri: str, params: Params) -> list[Sample]:
    """W1: one task, request after request, each through ``borrow()``: µs per request."""
    subject = await _opened(name, uri, params, warm=params.connections)
    try:
        samples = []
        for _ in range(params.repeats + 1):
            start = time.perf_counter_ns()
            for _ in range(params.requests):
                async with subject.borrow(0) as connection:
                    await connection.send(PAYLOAD)
                    await connection.recv()
            samples.append(
                {"us_per_request": _us(time.perf_counter_ns() - start) / params.requests}
            )
        return samples[1:]
    finally:
        await subject.close()


def _percentile(ordered: list[int], fraction: float) -> float:
    """The nearest-rank percentile of a sorted, non-empty list."""
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


async def _concurrent_round(subject: Subject[Any], params: Params) -> Sample:
    waits: list[int] = []
    errors = 0

    async def work(worker: int) -> None:
        nonlocal errors
        for _ in range(params.requests):
            asked = time.perf_counter_ns()
            try:
                async with subject.borrow(worker) as connection:
                    waits.append(time.perf_counter_ns() - asked)
                    await connection.send(PAYLOAD)
                    await connection.recv()
            except Exception:  # noqa: BLE001  (0.1.0 fails fast when full: count it, go on)
                errors += 1

    start = time.perf_counter_ns()
    await asyncio.gather(*(work(worker) for worker in range(params.workers)))
    elapsed = time.perf_counter_ns() - start
    done = params.workers * params.requests - errors
    waits.sort()
    return {
        "req_per_s": done / (elapsed / 1e9),
        "us_per_request": _us(elapsed) / max(done, 1),
        "errors": float(errors),
        "wait_p50_us": _us(_percentile(waits, 0.50)) if waits else 0.0,
        "wait_p99_us": _us(_percentile(waits, 0.99)) if waits else 0.0,
        "wait_max_us": _us(waits[-1]) if waits else 0.0,
    }


async def concurrent(name: str, uri: str, params: Params) -> list[Sample]:
    """W2, W3: ``workers`` tasks × ``requests`` requests over ``connections`` connections.

    Reports throughput, errors (a request that raised; the task goes on to its
    next one) and the wait for a connection (from asking to entering the block).
    """
    subject = await _opened(name, uri, params, warm=params.connections)
    try:
        return [await _concurrent_round(subject, params) for _ in range(params.repeats + 1)][1:]
    finally:
        await subject.close()


async def _burst_round(name: str, uri: str, params: Params) -> Sample:
    subject = await _opened(name, uri, params, warm=0)
    try:
        start = time.perf_counter_ns()
        got = await asyncio.gather(
            *(subject.acquire() for _ in range(params.workers)), return_exceptions=True
        )
        elapsed = time.perf_counter_ns() - start
        held = [connection for connection in got if not isinstance(connection, BaseException)]
        await asyncio.gather(*(subject.release(connection) for connection in held))
        return {"ms_all_acquired": elapsed / 1e6, "errors": float(len(got) - len(held))}
    finally:
        await subject.close()


async def cold_burst(name: str, uri: str, params: Params) -> list[Sample]:
    """W4: ``workers`` concurrent first acquires from a fresh subject: ms until all are held.

    Its warm-up round is one acquire (what is set up once per process), not a
    whole burst: 0.1.0 takes seconds for one.
    """
    await _burst_round(name, uri, Params())
    return [await _burst_round(name, uri, params) for _ in range(params.repeats)]


async def _cycles(subject: Subject[Any], params: Params) -> Sample:
    """One round of acquire + release cycles, with the garbage collector off.

    The collector is run before and is off during the round, so that a
    collection triggered by the pool's allocations does not land in one round
    and not another; the cost of the allocations themselves is still counted.
    """
    budget = params.budget * 1e9
    done = 0
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        while done < params.requests and time.perf_counter_ns() - start < budget:
            for _ in range(BATCH):
                connection = await subject.acquire()
                await subject.release(connection)
            done += BATCH
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return {"us_per_cycle": _us(elapsed) / done}


async def cycle(name: str, uri: str, params: Params) -> list[Sample]:
    """W5: acquire + release with no I/O in between, ``connections`` open: µs per cycle."""
    subject = await _opened(name, uri, params, warm=params.connections)
    try:
        return [await _cycles(subject, params) for _ in range(params.repeats + 1)][1:]
    finally:
        await subject.close()


Round = Callable[[Subject[Any], Params], Coroutine[Any, Any, Sample]]


async def _scaled(
    name: str, uri: str, params: Params, *, at: Callable[[int], Params], run: Round, metric: str
) -> list[Sample]:
    """Run ``run`` at each of ``params.scales``, a round at each scale in turn, all open at once.

    Each scale has a subject of its own, opened with ``at(scale)`` and all its
    connections before the first round. Taking turns pairs the rounds: a burst
    of load from elsewhere on the machine falls on neighbouring rounds of every
    scale, and each sample's ``ratio`` (``metric`` at the largest scale over
    the smallest) compares rounds run moments apart.
    """
    subjects: dict[int, tuple[Subject[Any], Params]] = {}
    try:
        for scale in params.scales:
            sized = at(scale)
            subjects[scale] = (await _opened(name, uri, sized, warm=scale), sized)
        samples = []
        for _ in range(params.repeats + 1):
            sample: Sample = {}
            for scale, (subject, sized) in subjects.items():
                measured = await run(subject, sized)
                sample.update({f"{key}@{scale}": value for key, value in measured.items()})
            low, high = min(params.scales), max(params.scales)
            sample["ratio"] = sample[f"{metric}@{high}"] / sample[f"{metric}@{low}"]
            samples.append(sample)
        return samples[1:]
    finally:
        for subject, _ in subjects.values():
            await subject.close()


async def scaling_cycle(name: str, uri: str, params: Params) -> list[Sample]:
    """W6: :func:`cycle` with each of ``scales`` connections open."""

    def at(scale: int) -> Params:
        return replace(params, connections=scale, workers=1)

    return await _scaled(name, uri, params, at=at, run=_cycles, metric="us_per_cycle")


async def scaling_concurrent(name: str, uri: str, params: Params) -> list[Sample]:
    """W6: :func:`concurrent` with as many workers as connections, for each of ``scales``.

    ``requests`` is the total per round, the same at every scale, shared
    evenly between the workers.
    """

    def at(scale: int) -> Params:
        return replace(
            params, connections=scale, workers=scale, requests=max(1, params.requests // scale)
        )

    return await _scaled(name, uri, params, at=at, run=_concurrent_round, metric="us_per_request")


def _rss_bytes() -> float:
    """Resident set size now (Linux: /proc/self/statm), or NaN where there is no /proc."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * float(os.sysconf("SC_PAGE_SIZE"))
    except OSError:
        return float("nan")


async def _grow(name: str, uri: str, params: Params, measure: Callable[[], float]) -> float:
    """Bytes per idle connection: ``measure()`` before and after opening them all."""
    gc.collect()
    before = measure()
    subject = await _opened(name, uri, params, warm=params.connections)
    try:
        gc.collect()
        return (measure() - before) / params.connections
    finally:
        await subject.close()


def _traced() -> float:
    return float(tracemalloc.get_traced_memory()[0])


async def memory(name: str, uri: str, params: Params) -> list[Sample]:
    """W7: RSS and Python heap per idle pooled connection; run it in a fresh process.

    A subject with one connection is opened and closed first, so that what is
    set up once per process (imports, caches) is not counted per connection.
    RSS is measured first, without tracemalloc (whose own records would
    inflate it), then the heap, with a new set of connections.
    """
    await _grow(name, uri, Params(), _rss_bytes)
    rss = await _grow(name, uri, params, _rss_bytes)
    tracemalloc.start()
    try:
        heap = await _grow(name, uri, params, _traced)
    finally:
        tracemalloc.stop()
    return [{"rss_kib_per_connection": rss / 1024, "heap_kib_per_connection": heap / 1024}]


Workload = Callable[[str, str, Params], Coroutine[Any, Any, list[Sample]]]

#: The workloads by the names the plan and the worker use.
WORKLOADS: dict[str, Workload] = {
    "sequential": sequential,
    "concurrent": concurrent,
    "cold_burst": cold_burst,
    "cycle": cycle,
    "scaling_cycle": scaling_cycle,
    "scaling_concurrent": scaling_concurrent,
    "memory": memory,
    "m1": m1,
}


def medians(samples: list[Sample]) -> Sample:
    """The median of each metric over the samples."""
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}
