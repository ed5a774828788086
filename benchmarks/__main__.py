"""Run the benchmark suite, print the table, write the results JSON and its chart.

``bash scripts/dev bench [options]`` runs it with the project's venv (run it
that way: it sets the venv up); docs/performance.md says what it measures.
``--render FILE`` runs nothing: it prints the table of an earlier results JSON
and redraws its chart beside it (docs/performance.json's is docs/performance.svg).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import chart, envs, plan, report
from .runner import run_cases
from .subjects import SUBJECTS

#: Where the results go unless --output says otherwise (git ignores the folder).
DEFAULT_OUTPUT = envs.ROOT / "benchmarks" / "results" / "latest.json"
#: A one-minute load average above this at the start means something else is using the cores.
BUSY = 1.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bash scripts/dev bench", description=__doc__)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--quick",
        action="store_const",
        dest="size",
        const="quick",
        help="smaller sizes, one pass: under a minute",
    )
    sizes.add_argument(
        "--tiny",
        action="store_const",
        dest="size",
        const="tiny",
        help="the smallest sizes, one round (the smoke test's; figures mean nothing)",
    )
    parser.set_defaults(size="full")
    parser.add_argument(
        "--subjects",
        default=",".join(SUBJECTS),
        metavar="LIST",
        help=f"comma-separated, among {','.join(SUBJECTS)} (default: all)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help=f"where the results JSON goes (default: {DEFAULT_OUTPUT.relative_to(envs.ROOT)})",
    )
    parser.add_argument(
        "--compare", type=Path, metavar="FILE",
        help="also print the change since an earlier results JSON",
    )  # fmt: skip
    parser.add_argument(
        "--render", type=Path, metavar="FILE",
        help="run nothing: print the table of a results JSON and redraw its chart (FILE.svg)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.subjects = [name.strip() for name in args.subjects.split(",") if name.strip()]
    unknown = set(args.subjects) - set(SUBJECTS)
    if unknown or not args.subjects:
        parser.error(f"--subjects takes names among {', '.join(SUBJECTS)}")
    return args


def run(size: str, subjects: list[str]) -> dict[str, Any]:
    """Run the suite of ``size`` for ``subjects``; return the whole results document."""
    open_files = envs.raise_open_files_limit()
    if open_files < 2 * max(plan.SCALES[size]) + 200:
        print(
            f"warning: only {open_files} open files allowed; big scales may fail", file=sys.stderr
        )
    for subject in subjects:
        envs.interpreter(subject)  # sets up 0.1.0's venv before anything is timed
    started = datetime.datetime.now(datetime.UTC)
    began = time.perf_counter()
    load = envs.load_average()
    print(f"benchmarks ({size}): {', '.join(subjects)}; load average {load}", file=sys.stderr)
    if load > BUSY:
        print("warning: the machine is busy; figures will be noisy", file=sys.stderr)
    measured = asyncio.run(run_cases(plan.cases(size), subjects, plan.PASSES[size]))
    return {
        "schema": 1,
        "size": size,
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - began, 1),
        "machine": {
            **envs.machine(),
            "load_average": {"start": load, "end": envs.load_average()},
        },
        **measured,
        "rows": report.table_rows(plan.rows(size), measured["cases"]),
    }


def write_chart(results_file: Path, rows: list[dict[str, Any]]) -> Path:
    """Draw the chart of ``rows`` beside their results JSON, with the same name; return it."""
    svg = results_file.with_suffix(".svg")
    svg.write_text(chart.render_svg(rows))
    return svg


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render is not None:
        rows = json.loads(args.render.read_text())["rows"]
        print(report.render(rows))
        print(f"\nchart: {write_chart(args.render, rows)}")
        return 0
    previous = json.loads(args.compare.read_text()) if args.compare else None
    results = run(args.size, args.subjects)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    svg = write_chart(args.output, results["rows"])
    machine = results["machine"]
    load = machine["load_average"]
    print(
        f"\n{machine['cpu']}, {machine['cores']} cores, {machine['python']}, "
        f"load average {load['start']} → {load['end']}"
    )
    print(report.render(results["rows"]))
    for line in report.errors(results["cases"]):
        print(f"error: {line}")
    if previous is not None:
        print(f"\nchange since {args.compare}:")
        if previous.get("size") != results["size"]:
            print(f"(its size was {previous.get('size')}, this run's {results['size']}: "
                  "the workloads' sizes differ, so only large changes mean anything)")  # fmt: skip
        print(report.comparison(previous, results))
    print(f"\nresults: {args.output}\nchart: {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
