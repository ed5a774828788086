"""cProfile of our pool on a workload's hot path, per operation: where the microseconds go.

``bash scripts/dev bench`` does not run it; run it by hand after the venv exists::

    .venv/bin/python -m benchmarks.hotpath               # W5: acquire + release
    .venv/bin/python -m benchmarks.hotpath sequential    # W1: request/response
    .venv/bin/python -m benchmarks.hotpath concurrent    # W2: 50 tasks, 50 connections
    .venv/bin/python -m benchmarks.hotpath oversubscribed  # W3: 200 tasks, 20 connections

It runs the suite's own workload for ours against the echo server (in its own
process, as in the suite): unprofiled first (median of 3 rounds), then once
under cProfile, and prints the functions with the largest cumulative time,
divided by the number of operations (the profiled run's warm-up round and the
pool's set-up are in the profile too: they are small next to the rounds).
cProfile roughly triples the cost of each Python call and not that of a system
call, so read the figures as shares of the cost, next to the unprofiled µs per
operation printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
from dataclasses import replace
from pathlib import Path

from .runner import echo_server
from .workloads import WORKLOADS, Params

#: What each profile runs: the workload, its sizes, the metric that is its cost per operation.
PROFILES = {
    "cycle": ("cycle", Params(requests=20_000, repeats=3, budget=60.0), "us_per_cycle"),
    "sequential": ("sequential", Params(requests=3_000, repeats=3), "us_per_request"),
    "concurrent": (
        "concurrent",
        Params(connections=50, workers=50, requests=100, repeats=3),
        "us_per_request",
    ),
    "oversubscribed": (
        "concurrent",
        Params(connections=20, workers=200, requests=25, repeats=3),
        "us_per_request",
    ),
}


async def profile(name: str) -> tuple[float, int, pstats.Stats]:
    """Run profile ``name`` unprofiled, then once more under cProfile.

    Returns:
        The unprofiled µs per operation (median of 3 rounds), the number of
        operations profiled, and the profile's statistics.
    """
    workload, params, metric = PROFILES[name]
    run = WORKLOADS[workload]
    async with echo_server(0.0) as uri:
        samples = await run("ours", uri, params)
        unprofiled = sorted(sample[metric] for sample in samples)[len(samples) // 2]
        once = replace(params, repeats=1)
        profiler = cProfile.Profile()
        profiler.enable()
        await run("ours", uri, once)
        profiler.disable()
    operations = once.workers * once.requests * (once.repeats + 1)  # with the warm-up round
    return unprofiled, operations, pstats.Stats(profiler)


def _where(file: str, line: int, function: str) -> str:
    if file == "~":
        return function  # a built-in
    parts = Path(file).parts
    return f"{'/'.join(parts[-2:])}:{line}({function})"


def table(stats: pstats.Stats, count: int, top: int) -> str:
    """The ``top`` functions by cumulative time, in µs and calls per operation."""
    entries = stats.stats  # type: ignore[attr-defined]  # pstats keeps it undocumented
    lines = [f"{'cum µs/op':>10} {'self µs/op':>10} {'calls/op':>9}  function"]
    ranked = sorted(entries.items(), key=lambda item: item[1][3], reverse=True)
    for (file, line, function), (_, calls, own, cumulative, _) in ranked[:top]:
        lines.append(
            f"{cumulative / count * 1e6:10.2f} {own / count * 1e6:10.2f} "
            f"{calls / count:9.2f}  {_where(file, line, function)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    parser.add_argument("profile", nargs="?", choices=tuple(PROFILES), default="cycle")
    parser.add_argument("--top", type=int, default=40, help="how many functions to show")
    args = parser.parse_args(argv)
    unprofiled, operations, stats = asyncio.run(profile(args.profile))
    print(f"{args.profile}: {unprofiled:.2f} µs per operation unprofiled (median of 3 rounds)")
    print(table(stats, operations, args.top))


if __name__ == "__main__":
    main()
