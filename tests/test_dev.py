"""scripts/dev: what its commands install, and how it waits for another apt-get.

apt-get itself is replaced by a script on PATH that plays a second apt-get holding
the lock: the test must not touch the machine's packages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash") or "/bin/bash"
DEV = (ROOT / "scripts" / "dev").read_text()
#: apt_get, taken out of the script so that it runs alone.
APT_GET = re.search(r"^apt_get\(\) \{\n.*?^\}\n", DEV, re.MULTILINE | re.DOTALL)
#: Fails with apt's lock message while a counter is below $LOCKED, then succeeds.
FAKE_APT_GET = """#!/usr/bin/env bash
echo "$@" >> "$CALLS"
n=$(wc -l < "$CALLS")
if [ "$n" -le "$LOCKED" ]; then
    echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)" >&2
    exit 100
fi
[ -z "$BROKEN" ] || { echo "E: $BROKEN" >&2; exit 100; }
echo "Reading package lists..."
"""


def _apt_get(tmp_path: Path, *, locked: int, wait: int = 300, broken: str = "") -> tuple[
    subprocess.CompletedProcess[str], list[str]
]:  # fmt: skip
    assert APT_GET is not None
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text(FAKE_APT_GET)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    env = {
        **os.environ,
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "LOCKED": str(locked),
        "BROKEN": broken,
        "APT_LOCK_WAIT": str(wait),
    }
    done = subprocess.run(  # noqa: S603  (bash, on a function of our own script)
        [BASH, "-c", f"set -euo pipefail\n{APT_GET[0]}apt_get update -q", "dev"],
        capture_output=True, text=True, env=env, timeout=10, check=False,
    )  # fmt: skip
    return done, calls.read_text().splitlines()


def test_apt_get_waits_for_a_lock_another_apt_get_holds(tmp_path: Path) -> None:
    done, calls = _apt_get(tmp_path, locked=1)
    assert done.returncode == 0, done.stderr
    assert calls == ["-o DPkg::Lock::Timeout=300 update -q"] * 2
    assert "waiting for another apt-get to finish (apt-get update)" in done.stdout
    assert "Reading package lists" not in done.stdout  # quiet when it works


def test_apt_get_gives_up_on_the_lock_after_the_wait(tmp_path: Path) -> None:
    done, calls = _apt_get(tmp_path, locked=100, wait=0)
    assert done.returncode == 1
    assert len(calls) == 1
    assert "Could not get lock" in done.stderr


def test_apt_get_fails_at_once_for_anything_but_a_lock(tmp_path: Path) -> None:
    done, calls = _apt_get(tmp_path, locked=0, broken="Unable to locate package chromium")
    assert done.returncode == 1
    assert len(calls) == 1
    assert "Unable to locate package chromium" in done.stderr


def test_the_demo_venv_holds_the_package_without_extras() -> None:
    demo = re.search(r"^    demo\)\n(.*?)^        ;;", DEV, re.MULTILINE | re.DOTALL)
    assert demo is not None
    assert "ensure_venv .venv-demo .\n" in demo[1]
    assert ".venv-demo/" in (ROOT / ".gitignore").read_text().splitlines()


def test_an_unknown_command_is_a_usage_error_before_anything_is_installed(tmp_path: Path) -> None:
    python = tmp_path / "python"  # records how the script calls Python: no `-m venv`
    python.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    done = subprocess.run(  # noqa: S603  (bash on our own script)
        [BASH, str(ROOT / "scripts" / "dev"), "nonsense"],
        capture_output=True, text=True, timeout=10, check=False,
        env={**os.environ, "PYTHON": str(python)},
    )  # fmt: skip
    assert done.returncode == 2
    assert "usage: bash scripts/dev demo|check" in done.stderr
    assert (tmp_path / "calls").read_text().splitlines() == ["-"]  # the version check only
