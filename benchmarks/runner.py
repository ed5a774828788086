"""Runs the plan: echo servers and one worker per subject, each in a process of its own.

For each case, the subjects take turns (ours, raw, 0.1.0), so that a change in
the machine's load in the middle of a run spreads over all three instead of
landing on one. A worker that fails or exceeds :data:`CASE_TIMEOUT` is
replaced, and its case is recorded as an error; the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self

from .envs import ROOT, interpreter
from .plan import Case
from .workloads import medians

#: Seconds one case may take for one subject before its worker is killed.
CASE_TIMEOUT = 300.0
#: Seconds a server or worker may take to start and say it is ready.
START_TIMEOUT = 60.0


class _Process:
    """A child process that speaks in lines on its standard input and output."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
    ) -> None:
        self.process = process
        self._stdin = stdin
        self._stdout = stdout

    @classmethod
    async def start(cls, python: Path, module: str, *args: str) -> Self:
        process = await asyncio.create_subprocess_exec(
            python,
            "-m",
            module,
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**24,  # a reply with many samples is one long line
        )
        if process.stdin is None or process.stdout is None:
            raise OSError("no pipes to the child process")
        return cls(process, process.stdin, process.stdout)

    async def read_line(self, within: float) -> str:
        """The next line the process writes, within ``within`` seconds."""
        line = await asyncio.wait_for(self._stdout.readline(), within)
        if not line:
            raise EOFError(f"process exited with code {await self.process.wait()}")
        return line.decode()

    def write_line(self, text: str) -> None:
        self._stdin.write(text.encode() + b"\n")

    async def stop(self) -> None:
        """Close its standard input (it exits on its own), kill it if it lingers."""
        self._stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@contextlib.asynccontextmanager
async def echo_server(handshake_delay: float, *, json_rpc: bool = False) -> AsyncIterator[str]:
    """``benchmarks.echo_server`` in a child process for the block; yields its URI.

    ``json_rpc``: the server answers JSON-RPC 2.0 (M1) instead of echoing.
    """
    args = ["--json-rpc"] if json_rpc else [f"--handshake-delay={handshake_delay}"]
    process = await _Process.start(Path(sys.executable), "benchmarks.echo_server", *args)
    try:
        port = (await process.read_line(START_TIMEOUT)).split()[1]
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await process.stop()


class Worker:
    """``benchmarks.worker`` for one subject, started on first use and after a failure."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.description: dict[str, Any] = {}
        self._process: _Process | None = None

    async def run(self, case: Case, uri: str) -> dict[str, Any]:
        """The worker's answer for ``case``: samples, or the error that stopped it."""
        try:
            process = await self._started()
            process.write_line(
                json.dumps({"workload": case.workload, "uri": uri, "params": asdict(case.params)})
            )
            answer: dict[str, Any] = json.loads(await process.read_line(CASE_TIMEOUT))
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            await self.stop(kill=True)
            return {"error": f"worker failed: {type(exc).__name__}: {exc}"}
        return answer

    async def _started(self) -> _Process:
        if self._process is None:
            self._process = await _Process.start(
                interpreter(self.subject), "benchmarks.worker", self.subject
            )
            self.description = json.loads(await self._process.read_line(START_TIMEOUT))
        return self._process

    async def stop(self, *, kill: bool = False) -> None:
        """Let the worker exit (or kill it, when it failed or hangs)."""
        process, self._process = self._process, None
        if process is not None:
            if kill and process.process.returncode is None:
                process.process.kill()
            await process.stop()


def _runs(case: Case, workers: list[Worker]) -> list[Worker]:
    """The workers that run ``case``: all, or those of the subjects it names."""
    return [w for w in workers if case.subjects is None or w.subject in case.subjects]


async def _run_case(case: Case, subjects: list[Worker], uri: str) -> dict[str, Any]:
    results = {}
    for worker in _runs(case, subjects):
        if case.fresh_process:
            worker = Worker(worker.subject)  # noqa: PLW2901  (a worker of its own, stopped after)
        try:
            results[worker.subject] = await worker.run(case, uri)
        finally:
            if case.fresh_process:
                await worker.stop()
    return results


def _merge(into: dict[str, Any], answer: dict[str, Any]) -> None:
    """Add one pass's answer to a subject's results: samples add up, the first error stays."""
    into.setdefault("samples", []).extend(answer.get("samples", []))
    if "error" in answer:
        into.setdefault("error", answer["error"])


async def run_cases(cases: list[Case], subjects: list[str], passes: int) -> dict[str, Any]:
    """Run every case for every subject, the whole list ``passes`` times; progress on stderr.

    Returns:
        ``{"subjects": {subject: worker description}, "cases": {key: {...}}}``,
        each case with its title, workload, params and per-subject results:
        the samples of every pass, their medians, and the first error if any.
    """
    workers = [Worker(subject) for subject in subjects]
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        servers = {
            kind: await stack.enter_async_context(echo_server(kind[0], json_rpc=kind[1]))
            for kind in sorted({(case.handshake_delay, case.json_rpc) for case in cases})
        }
        for worker in workers:
            stack.push_async_callback(worker.stop)
        for number in range(1, passes + 1):
            for case in cases:
                if not _runs(case, workers):
                    continue
                began = time.perf_counter()
                server = servers[case.handshake_delay, case.json_rpc]
                outcome = await _run_case(case, workers, server)
                entry = results.setdefault(
                    case.key,
                    {
                        "title": case.title,
                        "workload": case.workload,
                        "params": asdict(case.params),
                        "passes": passes,
                        "handshake_delay": case.handshake_delay,
                        "results": {worker.subject: {} for worker in _runs(case, workers)},
                    },
                )
                for subject, answer in outcome.items():
                    _merge(entry["results"][subject], answer)
                took = time.perf_counter() - began
                print(f"  pass {number}/{passes}: {case.title}: {took:.1f} s", file=sys.stderr)
    for entry in results.values():
        for result in entry["results"].values():
            if result["samples"]:
                result["median"] = medians(result["samples"])
    return {"subjects": {w.subject: w.description for w in workers}, "cases": results}
