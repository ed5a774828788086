"""Command line: ``python -m aio_websocket_pool demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from ._demo import DemoSettings, run_demo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m aio_websocket_pool")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run concurrent tasks through a small pool against a loopback echo server"
    )
    defaults = DemoSettings()
    demo.add_argument("--tasks", type=int, default=defaults.tasks)
    demo.add_argument("--requests", type=int, default=defaults.requests)
    demo.add_argument("--connections", type=int, default=defaults.connections)
    demo.add_argument(
        "--debug", action="store_true", help="log every transition on the aio_websocket_pool logger"
    )
    args = parser.parse_args(argv)
    if args.debug:
        logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
        logging.getLogger("aio_websocket_pool").setLevel(logging.DEBUG)
    settings = DemoSettings(tasks=args.tasks, requests=args.requests, connections=args.connections)
    print(asyncio.run(run_demo(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
