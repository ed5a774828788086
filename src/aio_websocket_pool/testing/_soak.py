"""The soak: mixed load and faults for minutes, to see that memory and sockets stay flat.

Not a test (it takes minutes): a command, ``python -m aio_websocket_pool.testing
soak --minutes 10``. One pool serves round after round of
:func:`~aio_websocket_pool.testing.tagged_workload` through the proxy while
:class:`~aio_websocket_pool.testing.Chaos` injects every fault. Every
``sample`` seconds it prints the process's resident memory, its open file
descriptors and the sockets the server sees; at the end it compares the
second half of the run with the first and says whether they stayed flat.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TextIO

from .._pool import WebsocketConnectionPool
from ._chaos import FAST_RECOVERY, Chaos, Tally, tagged_workload
from ._proxy import TcpProxy
from ._server import LoopbackServer

#: Growth of resident memory, from the first half's peak to the second's, still called flat.
RSS_SLACK: Final = 8 * 2**20
#: Growth of open file descriptors, likewise (sockets in flight come and go).
FD_SLACK: Final = 40


@dataclass(frozen=True, slots=True)
class SoakSettings:
    """What the soak runs.

    Attributes:
        minutes: How long it runs.
        sample: Seconds between two samples.
        tasks: Concurrent tasks per round of the workload.
        connections: The pool's ``max_connections``.
        seed: Seeds the faults and the workload.
    """

    minutes: float = 10.0
    sample: float = 10.0
    tasks: int = 100
    connections: int = 20
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Sample:
    elapsed: float
    rss: int
    fds: int
    server_sockets: int
    pool_total: int
    requests: int


@dataclass
class _Totals:
    requests: int = 0
    succeeded: int = 0
    misdelivered: int = 0
    untyped: int = 0
    samples: list[Sample] = field(default_factory=list)

    def add(self, tally: Tally) -> None:
        self.requests += tally.requests
        self.succeeded += tally.succeeded
        self.misdelivered += len(tally.misdelivered)
        self.untyped += len(tally.untyped)


def resident_memory() -> int:
    """Bytes of resident memory now (on Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def open_descriptors() -> int:
    """File descriptors open in this process (sockets included)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(directory):
            return len(os.listdir(directory))
    return -1


async def run_soak(settings: SoakSettings, out: TextIO | None = None) -> bool:
    """Run the soak, printing samples to ``out`` (stdout); whether all stayed flat and correct."""
    out = sys.stdout if out is None else out
    totals = _Totals()
    async with (
        LoopbackServer(stray_chance=0.02, seed=settings.seed).running() as server,
        TcpProxy(server.port).running() as proxy,
    ):
        pool = WebsocketConnectionPool(
            proxy.uri, max_connections=settings.connections, **FAST_RECOVERY
        )
        chaos = Chaos(server, proxy, seed=settings.seed, interval=0.05)

        def sample(started: float) -> None:
            taken = Sample(
                elapsed=time.monotonic() - started,
                rss=resident_memory(),
                fds=open_descriptors(),
                server_sockets=server.open_sockets,
                pool_total=pool.total_connections,
                requests=totals.requests,
            )
            totals.samples.append(taken)
            print(
                f"{taken.elapsed:7.0f}s  rss {taken.rss / 2**20:7.1f} MiB  fds {taken.fds:4d}  "
                f"server sockets {taken.server_sockets:3d}  pool {taken.pool_total:3d}  "
                f"requests {taken.requests}",
                file=out,
                flush=True,
            )

        async with pool, chaos.running():
            await _run_rounds(pool, server, settings, totals, sample)
        for _ in range(100):  # the server learns of the last closes within a few turns
            if server.open_sockets == 0:
                break
            await asyncio.sleep(0.01)
        print(f"faults injected: {dict(sorted(chaos.injected.items()))}", file=out)
        print(
            f"after close_all(): {pool.stats().total} connections in the pool, "
            f"{server.open_sockets} sockets open on the server",
            file=out,
        )
        clean = pool.stats().total == 0 and server.open_sockets == 0
    return _report(totals, out) and clean


async def _run_rounds(
    pool: WebsocketConnectionPool,
    server: LoopbackServer,
    settings: SoakSettings,
    totals: _Totals,
    sample: Callable[[float], None],
) -> None:
    started = time.monotonic()
    deadline = started + settings.minutes * 60
    next_sample = started
    round_number = 0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_sample:
            sample(started)
            next_sample += settings.sample
        round_number += 1
        tally = await tagged_workload(
            pool, tasks=settings.tasks, requests=5, seed=settings.seed + round_number
        )
        totals.add(tally)
        # The server records every handshake's headers: forgotten each round, so
        # that what is measured is the pool, not the harness's records.
        server.request_headers.clear()
    sample(started)


def _report(totals: _Totals, out: TextIO) -> bool:
    samples = totals.samples[1:]  # the first is taken before anything warmed up
    half = max(1, len(samples) // 2)
    first, second = samples[:half], samples[half:] or samples[-1:]
    rss_growth = max(s.rss for s in second) - max(s.rss for s in first)
    fd_growth = max(s.fds for s in second) - max(s.fds for s in first)
    flat = rss_growth <= RSS_SLACK and fd_growth <= FD_SLACK
    correct = totals.misdelivered == 0 and totals.untyped == 0
    print(
        f"requests: {totals.requests} ({totals.succeeded} answered), "
        f"misdelivered: {totals.misdelivered}, untyped errors: {totals.untyped}\n"
        f"peak rss: first half {max(s.rss for s in first) / 2**20:.1f} MiB, "
        f"second half {max(s.rss for s in second) / 2**20:.1f} MiB "
        f"(growth {rss_growth / 2**20:+.1f} MiB, allowed {RSS_SLACK / 2**20:.0f})\n"
        f"peak fds: first half {max(s.fds for s in first)}, second half "
        f"{max(s.fds for s in second)} (growth {fd_growth:+d}, allowed {FD_SLACK})\n"
        f"verdict: {'flat' if flat else 'GROWING'}, {'correct' if correct else 'INCORRECT'}",
        file=out,
    )
    return flat and correct
