"""The interpreters each subject runs with, the 0.1.0 virtualenv, and the machine's description.

``ours`` and ``raw`` run with the interpreter of the run itself (the project's
``.venv``: our package from the working tree, the websockets it resolved).
``v010`` runs in ``.venv-0.1.0`` (beside ``.venv``, git ignores it), made on
first use with ``pip install aio-websocket-pool==0.1.0`` (it pins websockets < 16,
so it cannot share our venv).
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

#: The repository's root: workers and servers run from here, so ``benchmarks`` imports.
ROOT = Path(__file__).resolve().parent.parent
#: The virtualenv that holds aio-websocket-pool 0.1.0.
V010_VENV = ROOT / ".venv-0.1.0"
#: What goes into it.
V010_REQUIREMENT = "aio-websocket-pool==0.1.0"
#: Open files the run asks for: 1,000 connections need 1,000 descriptors on each side.
WANTED_OPEN_FILES = 65536


def _python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_v010_venv() -> Path:
    """Make ``.venv-0.1.0`` unless it is there already; return its interpreter."""
    python = _python_in(V010_VENV)
    stamp = V010_VENV / ".installed"
    if not stamp.exists():
        print(f"setting up {V010_VENV.relative_to(ROOT)} ({V010_REQUIREMENT})", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(V010_VENV)
        subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
            [python, "-m", "pip", "install", "--quiet", V010_REQUIREMENT], check=True
        )
        stamp.touch()
    return python


def interpreter(subject: str) -> Path:
    """The Python a subject's worker runs with (setting up 0.1.0's venv when needed)."""
    return ensure_v010_venv() if subject == "v010" else Path(sys.executable)


def raise_open_files_limit() -> int:
    """Raise this process's (and so its children's) open-file limit as far as allowed.

    Returns:
        The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, WANTED_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603  (fixed arguments)
            ["git", *args],  # noqa: S607  (git from PATH, as a developer runs it)
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def load_average() -> float:
    """Runnable processes over the last minute (what else keeps the cores busy), or NaN."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def machine() -> dict[str, Any]:
    """The machine and the code the run measured."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
