"""Command line: ``python -m aio_websocket_pool demo`` and ``... diagram``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ._demo import DemoSettings, run_demo
from ._diagram import FORMATS, DiagramFormat, render_diagram
from ._exceptions import GraphvizNotFoundError


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
        "--output", type=Path, metavar="FILE", help="write to FILE instead of standard output"
    )
    args = parser.parse_args(argv)
    if args.command == "diagram":
        return _diagram(args.format, args.output)
    if args.debug:
        logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
        logging.getLogger("aio_websocket_pool").setLevel(logging.DEBUG)
    settings = DemoSettings(
        tasks=args.tasks,
        requests=args.requests,
        connections=args.connections,
        history_file=args.history,
    )
    print(asyncio.run(run_demo(settings)))
    return 0


def _diagram(format: DiagramFormat, output: Path | None) -> int:
    try:
        text = render_diagram(format)
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
