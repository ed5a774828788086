"""cProfile of our pool on a workload's hot path, per operation: where the microseconds go.

``bash scripts/dev bench`` does not run it; run it by hand after the venv exists::

    .venv/bin/python -m benchmarks.hotpath               # W5: acquire + release
    .venv/bin/python -m benchmarks.hotpath sequential    # W1: request/response

It opens our pool on the echo server (in its own process, as in the suite),
warms up, then profiles a bounded number of operations and prints the
functions with the largest cumulative time, divided by the number of
operations. cProfile roughly doubles the cost of each Python call, so read the
figures as shares of the cost, next to the unprofiled µs per operation printed
first.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
from pathlib import Path

from .runner import echo_server
from .subjects import PoolSubject
from .workloads import PAYLOAD, Params, cycle, sequential

#: Operations profiled (and timed) after the warm-up.
OPERATIONS = 20_000


async def _operations(subject: PoolSubject, workload: str, count: int) -> None:
    for _ in range(count):
        if workload == "cycle":
            await subject.release(await subject.acquire())
        else:
            async with subject.borrow(0) as connection:
                await connection.send(PAYLOAD)
                await connection.recv()


async def profile(workload: str, count: int) -> tuple[float, pstats.Stats]:
    """Time ``count`` operations of ``workload`` unprofiled (median of 3), then profile as many.

    Returns:
        The unprofiled µs per operation and the profile's statistics.
    """
    timed = cycle if workload == "cycle" else sequential
    metric = "us_per_cycle" if workload == "cycle" else "us_per_request"
    async with echo_server(0.0) as uri:
        samples = await timed("ours", uri, Params(requests=count, repeats=3, budget=10.0))
        unprofiled = sorted(sample[metric] for sample in samples)[1]
        subject = PoolSubject("ours")
        await subject.open(uri, connections=1, workers=1, warm=1)
        try:
            await _operations(subject, workload, count // 10)  # warm-up
            profiler = cProfile.Profile()
            profiler.enable()
            await _operations(subject, workload, count)
            profiler.disable()
        finally:
            await subject.close()
    return unprofiled, pstats.Stats(profiler)


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
    parser.add_argument("workload", nargs="?", choices=("cycle", "sequential"), default="cycle")
    parser.add_argument("--operations", type=int, default=OPERATIONS)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    unprofiled, stats = asyncio.run(profile(args.workload, args.operations))
    print(f"{args.workload}: {unprofiled:.2f} µs per operation unprofiled (median of 3)")
    print(table(stats, args.operations, args.top))


if __name__ == "__main__":
    main()
