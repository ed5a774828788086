"""The pytest plugin of aio_websocket_pool.testing, as a user's test run meets it.

Each test runs pytest in a subprocess on a tiny project of a user's, with no
``pytest_plugins`` line: pytest finds the plugin through the ``pytest11``
entry point that pyproject.toml declares, written into a distribution's
metadata on the subprocess's path (so the test holds from a plain clone as
well as from an installed checkout), and the package from this checkout.
The fixtures the plugin registers (``_fixtures``) are tested here too, as a
user's tests use them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from aio_websocket_pool.testing._plugin import INSTALL_HINT
from helpers import BOUND

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]

#: A user's tests: a pool through each fixture, and one that needs neither.
USER_TESTS = """
import pytest

from aio_websocket_pool import WebsocketConnectionPool


@pytest.mark.asyncio  # not needed in auto mode; harmless there
async def test_echo_through_the_server(websocket_server):
    async with WebsocketConnectionPool(websocket_server.uri, max_connections=1) as pool:
        async with pool.get_connection() as conn:
            await conn.send("hello")
            assert await conn.recv() == "hello"
    assert websocket_server.handshakes == 1


@pytest.mark.asyncio
async def test_echo_through_the_proxy(websocket_proxy):
    async with WebsocketConnectionPool(websocket_proxy.uri, max_connections=1) as pool:
        async with pool.get_connection() as conn:
            await conn.send("hello")
            assert await conn.recv() == "hello"
    assert websocket_proxy.total_connections == 1


def test_without_the_fixtures():
    pass
"""

#: The pytest-asyncio settings docs/testing.md gives, in its two modes.
AUTO = """
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""
STRICT = AUTO.replace("auto", "strict")


def run_pytest(
    project: Path, ini: str, *args: str, path: tuple[Path, ...] = (), autoload: bool = True
) -> str:
    """Run pytest on ``project`` with ``ini`` as its pytest.ini; return its report.

    ``path`` goes first on the subprocess's ``PYTHONPATH``, before the entry
    point's metadata and this checkout's ``src``. Without ``autoload``, pytest
    loads no plugin's entry point unless ``-p`` names it.
    """
    (project / "pytest.ini").write_text(f"[pytest]\n{ini}")
    (project / "test_user.py").write_text(USER_TESTS)
    metadata = project.parent / "site" / "aio_websocket_pool_entry_points-0.dist-info"
    metadata.mkdir(parents=True)
    (metadata / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: aio-websocket-pool-entry-points\nVersion: 0\n"
    )
    (metadata / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
            for group, points in ENTRY_POINTS.items()
        )
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_PLUGINS"}
    }
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(map(str, (*path, metadata.parent, ROOT / "src")))
    done = subprocess.run(  # noqa: S603  (this interpreter, on files the test wrote)
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND * 4,
        check=False,
    )
    return done.stdout + done.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project directory, with no conftest.py."""
    (tmp_path / "project").mkdir()
    return tmp_path / "project"


@pytest.mark.parametrize("ini", [AUTO, STRICT], ids=["auto", "strict"])
def test_the_fixtures_need_no_pytest_plugins_line(project: Path, ini: str) -> None:
    report = run_pytest(project, ini)
    assert "3 passed" in report, report


def test_a_pytest_plugins_line_left_in_a_conftest_is_harmless(project: Path) -> None:
    """The entry point has the module's name: the line finds the plugin loaded, not a duplicate."""
    (project / "conftest.py").write_text('pytest_plugins = ["aio_websocket_pool.testing"]\n')
    report = run_pytest(project, AUTO)
    assert "3 passed" in report, report


def test_with_pytest_asyncio_disabled_the_fixtures_name_the_extra(project: Path) -> None:
    report = run_pytest(project, "", "-p", "no:asyncio")
    assert "1 passed" in report, report
    assert "2 errors" in report, report
    for fixture in ("websocket_server", "websocket_proxy"):
        assert f"the {fixture} fixture of aio_websocket_pool.testing needs pytest-asyncio" in report
    assert report.count(INSTALL_HINT) >= 2
    assert "Traceback" not in report


def test_without_pytest_asyncio_installed_the_run_still_works(
    project: Path, tmp_path: Path
) -> None:
    """Not installed: no entry point of its own, and its import fails; the plugin never tries it.

    Entry points are off, as if pytest-asyncio's were not there; ``-p``
    loads this package's by its name. A ``pytest_asyncio`` that cannot be
    imported shadows the real one.
    """
    missing = tmp_path / "missing"
    (missing / "pytest_asyncio").mkdir(parents=True)
    (missing / "pytest_asyncio" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pytest_asyncio'\", name='pytest_asyncio')\n"
    )
    report = run_pytest(
        project, "", "-p", "aio_websocket_pool.testing", path=(missing,), autoload=False
    )
    assert "1 passed" in report, report
    assert "2 errors" in report, report
    assert report.count(INSTALL_HINT) >= 2
    assert "Traceback" not in report
