"""The client side of the benchmarks for one subject, run with that subject's interpreter.

``python -m benchmarks.worker SUBJECT`` (from the repository's root) first
prints one JSON line describing itself (Python and package versions), then
reads one JSON request per line on standard input::

    {"workload": "concurrent", "uri": "ws://127.0.0.1:1234/", "params": {...}}

and answers each with one JSON line, ``{"samples": [...]}`` or ``{"error": "..."}``,
until standard input closes. Each request runs in a fresh event loop. Nothing
else is written to standard output; logs go to standard error.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
from importlib import metadata
from typing import Any

from .subjects import make_subject
from .workloads import WORKLOADS, Params

#: The distributions whose versions each worker reports.
PACKAGES = ("aio-websocket-pool", "websockets", "transitions", "tenacity")


def describe(subject: str) -> dict[str, Any]:
    """What this worker runs on: the subject, its Python and its packages' versions."""
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "subject": subject,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "versions": versions,
    }


def answer(subject: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run one request; a failure becomes ``{"error": ...}`` so the suite goes on."""
    try:
        workload = WORKLOADS[request["workload"]]
        params = Params.from_json(request["params"])
        return {"samples": asyncio.run(workload(subject, request["uri"], params))}
    except Exception as exc:  # noqa: BLE001  (reported in the results, not raised)
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.worker SUBJECT", file=sys.stderr)
        return 2
    subject = args[0]
    make_subject(subject)  # fails here, before any request, if this venv has the wrong pool
    print(json.dumps(describe(subject)), flush=True)
    for line in sys.stdin:
        print(json.dumps(answer(subject, json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
