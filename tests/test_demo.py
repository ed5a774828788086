"""The demo the README promises runs end to end and tells the truth."""

from __future__ import annotations

import pytest

from aio_websocket_pool.__main__ import main
from aio_websocket_pool._demo import DemoSettings, run_demo


async def test_demo_report_shows_counters_and_the_replaced_connection() -> None:
    report = await run_demo(DemoSettings(tasks=8, requests=3, connections=2))
    assert "8 tasks x 3 requests through max_connections=2" in report
    assert "replies mixed up: 0" in report
    assert "(2/2)" in report  # two connections held slots while the pool ran
    assert "closed by peer: close code 1001" in report  # the connection the server dropped
    assert "demo-secret" not in report
    assert report.splitlines()[-1].startswith("after close_all(): ")
    assert "(0/2)" in report.splitlines()[-1]


def test_command_line_runs_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tasks", "4", "--requests", "2", "--connections", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 tasks x 2 requests" in out
    assert "replies mixed up: 0" in out


def test_command_line_requires_a_command() -> None:
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2


@pytest.mark.parametrize("option", ["--tasks", "--requests", "--connections"])
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_command_line_rejects_a_count_below_one_with_a_usage_error(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["demo", option, value])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ")
    assert f"error: argument {option}: " in err
    assert "Traceback" not in err


def test_command_line_runs_the_demo_with_a_single_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tasks", "1", "--requests", "2", "--connections", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 tasks x 2 requests through max_connections=1" in out
    assert "replies mixed up: 0" in out
    assert "2 acquired (1 reused)" in out.splitlines()[-1]
