"""What runs: the cases of each size (full, quick, tiny) and the rows of the table with targets.

A :class:`Case` is one workload with its sizes, run for every subject (M1:
for ours alone). A :class:`Row` is one line of the table: one metric of one
case (or the ratio of two cases, for scaling and M1) with its target.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .workloads import Params

#: Open connections of the scaling workload (W6), per size; rows compare the last to the first.
SCALES = {"full": (10, 100, 1000), "quick": (10, 100, 1000), "tiny": (2, 8)}
#: Times the whole list of cases is run, per size: a burst of load from elsewhere on the
#: machine then lands in one pass of every subject rather than in all the samples of one.
PASSES = {"full": 3, "quick": 1, "tiny": 1}


@dataclass(frozen=True, slots=True)
class Case:
    """One workload with its sizes.

    Attributes:
        key: Names the case in the results (``w1``, ``w6-cycle-1000``, ...).
        title: What it measures, for the progress lines.
        workload: A name in :data:`benchmarks.workloads.WORKLOADS`.
        params: Its sizes.
        handshake_delay: Seconds the echo server holds each handshake.
        fresh_process: Run it in a worker of its own (memory: nothing from
            earlier cases in the heap).
        json_rpc: The server answers JSON-RPC 2.0 instead of echoing (M1).
        subjects: The subjects whose workers run it, or None for all (M1
            measures what it compares in ours' worker alone).
    """

    key: str
    title: str
    workload: str
    params: Params
    handshake_delay: float = 0.0
    fresh_process: bool = False
    json_rpc: bool = False
    subjects: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What ours must reach on a row; every row also asks ours to be ahead of 0.1.0.

    Attributes:
        over_raw: The most ours may cost as a multiple of raw (for a
            throughput, raw / ours), or None.
        at_most: The most ours may be, in the row's unit, or None.
        at_least: The least ours may be, in the row's unit, or None (M1's
            ratios, measured in ours' worker).
        text: The target in words, for the table.
    """

    text: str
    over_raw: float | None = None
    at_most: float | None = None
    at_least: float | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table.

    Attributes:
        label: The workload, short.
        case: The case key whose median ``metric`` is shown.
        metric: A key of that case's samples.
        unit: The metric's unit.
        lower_is_better: False for throughputs.
        target: What ours must reach, or None for a row shown for information.
    """

    label: str
    case: str
    metric: str
    unit: str
    lower_is_better: bool = True
    target: Target | None = field(default=None)


def _sizes(size: str) -> dict[str, Params]:
    full = size == "full"
    tiny = size == "tiny"
    repeats = 1 if tiny else 3  # per pass
    return {
        "w1": Params(requests=50 if tiny else (3000 if full else 1000), repeats=repeats),
        "w2": Params(
            connections=5 if tiny else 50,
            workers=5 if tiny else 50,
            requests=5 if tiny else (100 if full else 30),
            repeats=repeats,
        ),
        "w3": Params(
            connections=4 if tiny else 20,
            workers=40 if tiny else 200,
            requests=2 if tiny else (25 if full else 8),
            repeats=repeats,
        ),
        "w4": Params(
            connections=10 if tiny else 100,
            workers=10 if tiny else 100,
            repeats=1 if tiny else 2,
        ),
        "w5": Params(
            requests=200 if tiny else (20000 if full else 5000),
            repeats=repeats,
            budget=0.5 if full else 0.3,
        ),
        "w7": Params(connections=5 if tiny else (200 if full else 50)),
        "m1": Params(
            connections=2 if tiny else 4,
            workers=20 if tiny else 1000,
            requests=2 if tiny else (5 if full else 2),
            repeats=1 if tiny else 5,
            exclusive_connections=5 if tiny else 50,
        ),
    }


def _scaling(size: str, sizes: dict[str, Params]) -> list[Case]:
    """W6: the cycle (W5) and the concurrent requests (W2), at each of :data:`SCALES`.

    The concurrent requests keep the same total per round at every scale, with
    as many workers as connections.
    """
    scales = SCALES[size]
    cycle, concurrent = sizes["w5"], sizes["w2"]
    total = concurrent.workers * concurrent.requests
    shown = "/".join(str(scale) for scale in scales)
    return [
        Case(
            "w6-cycle",
            f"W6 acquire + release with {shown} connections open",
            "scaling_cycle",
            replace(cycle, scales=scales),
        ),
        Case(
            "w6-concurrent",
            f"W6 {shown} workers over as many connections",
            "scaling_concurrent",
            replace(
                concurrent, requests=total, repeats=max(1, concurrent.repeats - 1), scales=scales
            ),
        ),
    ]


def cases(size: str) -> list[Case]:
    """Every case of a run of ``size`` (``full``, ``quick`` or ``tiny``), in the order run."""
    sizes = _sizes(size)
    w2, w3, w4, w7, m1 = sizes["w2"], sizes["w3"], sizes["w4"], sizes["w7"], sizes["m1"]
    return [
        Case("w1", "W1 sequential request/response", "sequential", sizes["w1"]),
        Case("w2", f"W2 {w2.workers} workers over {w2.connections} connections", "concurrent", w2),
        Case("w3", f"W3 {w3.workers} workers share {w3.connections} connections", "concurrent", w3),
        Case(
            "w4",
            f"W4 {w4.workers} cold acquires, 20 ms handshakes",
            "cold_burst",
            w4,
            handshake_delay=0.02,
        ),
        Case("w5", "W5 acquire + release, no I/O", "cycle", sizes["w5"]),
        *_scaling(size, sizes),
        Case(
            "w7",
            f"W7 memory of {w7.connections} idle connections",
            "memory",
            w7,
            fresh_process=True,
        ),
        Case(
            "m1",
            f"M1 {m1.workers} JSON-RPC calls over {m1.connections} multiplexed connections, "
            f"a dispatcher over {m1.connections}, {m1.exclusive_connections} exclusive leases",
            "m1",
            m1,
            json_rpc=True,
            subjects=("ours",),
        ),
    ]


def rows(size: str) -> list[Row]:
    """The lines of the table for a run of ``size``, with their targets."""
    low, high = SCALES[size][0], SCALES[size][-1]
    flat = Target(f"≤ 1.1 ({high}/{low})", at_most=1.1)
    return [
        Row("W1 sequential", "w1", "us_per_request", "µs/req", target=Target("≤ 1.05× raw", 1.05)),
        Row(
            "W2 concurrent",
            "w2",
            "req_per_s",
            "req/s",
            lower_is_better=False,
            target=Target("≥ raw / 1.10", 1.10),
        ),
        Row(
            "W3 oversubscribed",
            "w3",
            "req_per_s",
            "req/s",
            lower_is_better=False,
            target=Target("≥ raw queue / 1.15", 1.15),
        ),
        Row("W3 errors", "w3", "errors", "count", target=Target("0", at_most=0)),
        Row("W3 wait p50", "w3", "wait_p50_us", "µs"),
        Row("W3 wait p99", "w3", "wait_p99_us", "µs"),
        Row("W3 wait max", "w3", "wait_max_us", "µs"),
        Row("W4 cold burst", "w4", "ms_all_acquired", "ms", target=Target("≤ 1.15× raw", 1.15)),
        Row(
            "W5 acquire+release",
            "w5",
            "us_per_cycle",
            "µs",
            target=Target("≤ 4 µs and ≤ 6× raw queue", over_raw=6, at_most=4),
        ),
        Row(f"W6 cycle @{low}", "w6-cycle", f"us_per_cycle@{low}", "µs"),
        Row(f"W6 cycle @{high}", "w6-cycle", f"us_per_cycle@{high}", "µs"),
        Row("W6 cycle scaling", "w6-cycle", "ratio", "×", target=flat),
        Row(f"W6 requests @{low}", "w6-concurrent", f"us_per_request@{low}", "µs/req"),
        Row(f"W6 requests @{high}", "w6-concurrent", f"us_per_request@{high}", "µs/req"),
        Row("W6 request scaling", "w6-concurrent", "ratio", "×", target=flat),
        Row(
            "W7 RSS per idle conn",
            "w7",
            "rss_kib_per_connection",
            "KiB",
            target=Target("≤ 1.1× raw", 1.1),
        ),
        Row(
            "W7 heap per idle conn",
            "w7",
            "heap_kib_per_connection",
            "KiB",
            target=Target("≤ 1.1× raw", 1.1),
        ),
        Row("M1 multiplexed calls", "m1", "mux_per_s", "calls/s", lower_is_better=False),
        Row(
            "M1 vs dispatcher",
            "m1",
            "over_dispatcher",
            "×",
            lower_is_better=False,
            target=Target("≥ 0.9× hand-written", at_least=0.9),
        ),
        Row(
            "M1 vs exclusive leases",
            "m1",
            "over_exclusive",
            "×",
            lower_is_better=False,
            target=Target("≥ 2× exclusive", at_least=2.0),
        ),
    ]
