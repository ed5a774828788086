"""The ``demo --json-rpc`` command: calls, an error and a resubscribed subscription."""

from __future__ import annotations

import re

import pytest

from aio_websocket_pool.__main__ import main


def test_command_line_runs_the_json_rpc_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json-rpc"]) == 0
    report = capsys.readouterr().out
    assert "200 concurrent calls over 2 connections" in report
    assert "'quick' came first, then 'slow'" in report
    assert "code -32601" in report
    assert "{'head': 1} then, after a reconnect, {'head': 2}" in report
    assert re.search(r"answered=(\d+)", report) is not None
    assert "lost=0" in report
