"""Command line: ``python -m aio_websocket_pool.testing soak [--minutes N]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from ._soak import SoakSettings, run_soak


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv``; 0 if the soak stayed flat and correct, else 1."""
    parser = argparse.ArgumentParser(prog="python -m aio_websocket_pool.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    soak = commands.add_parser(
        "soak", help="mixed load and faults for minutes; check that memory and sockets stay flat"
    )
    defaults = SoakSettings()
    soak.add_argument("--minutes", type=float, default=defaults.minutes)
    soak.add_argument("--sample", type=float, default=defaults.sample, help="seconds per sample")
    soak.add_argument("--tasks", type=int, default=defaults.tasks)
    soak.add_argument("--connections", type=int, default=defaults.connections)
    soak.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    settings = SoakSettings(
        minutes=args.minutes,
        sample=args.sample,
        tasks=args.tasks,
        connections=args.connections,
        seed=args.seed,
    )
    return 0 if asyncio.run(run_soak(settings)) else 1


if __name__ == "__main__":
    sys.exit(main())
