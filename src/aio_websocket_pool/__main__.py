"""Command line: ``python -m aio_websocket_pool demo`` and ``... diagram``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ._demo import DemoSettings, run_demo
from ._demo_json_rpc import run_json_rpc_demo
from ._diagram import FORMATS, MACHINES, DiagramFormat, Machine, render_diagram
from ._exceptions import GraphvizNotFoundError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m aio_websocket_pool")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run concurrent tasks through a small pool against a loopback echo server"
    )
    defaults = DemoSettings()
    demo.add_argument(
        "--tasks", type=_at_least_one, default=defaults.tasks, metavar="N",
        help=f"concurrent tasks sharing the pool (default {defaults.tasks})",
    )  # fmt: skip
    demo.add_argument(
        "--requests", type=_at_least_one, default=defaults.requests, metavar="N",
        help=f"round trips per task (default {defaults.requests})",
    )  # fmt: skip
    demo.add_argument(
        "--connections", type=_at_least_one, default=defaults.connections, metavar="N",
        help=f"the pool's max_connections (default {defaults.connections})",
    )  # fmt: skip
    demo.add_argument(
        "--json-rpc", action="store_true",
        help="the JSON-RPC demo instead: calls and a subscription over multiplexed connections",
    )  # fmt: skip
    demo.add_argument(
        "--debug", action="store_true", help="log every transition on the aio_websocket_pool logger"
    )
    demo.add_argument(
        "--history",
        type=Path,
        metavar="FILE",
        help="write the pool's transition history to FILE as JSON lines",
    )
    diagram = commands.add_parser(
        "diagram", help="print the connection state diagram, generated from the transition table"
    )
    diagram.add_argument("--format", choices=FORMATS, default="mermaid")
    diagram.add_argument(
        "--machine", choices=MACHINES, default="connection", help="which lifecycle to draw"
    )
    diagram.add_argument(
        "--output", type=Path, metavar="FILE", help="write to FILE instead of standard output"
    )
    args = parser.parse_args(argv)
    if args.command == "diagram":
        return _diagram(args.format, args.output, args.machine)
    if args.debug:
        logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
        logging.getLogger("aio_websocket_pool").setLevel(logging.DEBUG)
    if args.json_rpc:
        print(asyncio.run(run_json_rpc_demo()))
        return 0
    settings = DemoSettings(
        tasks=args.tasks,
        requests=args.requests,
        connections=args.connections,
        history_file=args.history,
    )
    print(asyncio.run(run_demo(settings)))
    return 0


def _at_least_one(text: str) -> int:
    """Parse a count of the demo: with none of them, there is nothing to show.

    Raised as ``ArgumentTypeError``, argparse prints a usage error naming the
    option and exits with 2, instead of the demo failing with a traceback.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _diagram(format: DiagramFormat, output: Path | None, machine: Machine) -> int:
    try:
        text = render_diagram(format, machine=machine)
    except GraphvizNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
