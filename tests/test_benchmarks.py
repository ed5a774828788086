"""The benchmark suite runs end to end in its tiny size and writes well-formed results.

Only ours and raw: 0.1.0 would need its own venv from the package index, and
the tests need no network. No timing is asserted: a slow machine fails nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = ("ours", "raw")
#: The benchmark's own bound on itself is per case; this bounds the whole tiny run.
RUN_BOUND = 25.0


def _run_tiny(tmp_path: Path) -> tuple[dict[str, Any], str]:
    previous = tmp_path / "previous.json"
    previous.write_text(
        json.dumps({"rows": [{"label": "W1 sequential", "values": {"ours": 100.0, "raw": 50.0}}]})
    )
    output = tmp_path / "results.json"
    done = subprocess.run(  # noqa: S603  (this interpreter, fixed arguments)
        [sys.executable, "-m", "benchmarks", "--tiny", "--subjects", ",".join(SUBJECTS),
         "--output", str(output), "--compare", str(previous)],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_BOUND, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(output.read_text()), done.stdout


def _is_number(value: object) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value >= 0


def test_tiny_run_measures_every_case_for_ours_and_raw(tmp_path: Path) -> None:
    results, stdout = _run_tiny(tmp_path)

    assert results["schema"] == 1
    assert results["size"] == "tiny"
    assert results["machine"]["cores"] >= 1
    assert results["machine"]["cpu"]
    for subject in SUBJECTS:
        versions = results["subjects"][subject]["versions"]
        assert versions["aio-websocket-pool"].startswith("0.2")  # ours, not 0.1.0
        assert versions["websockets"]
    assert {key[:2] for key in results["cases"]} == {f"w{n}" for n in range(1, 8)}
    for key, case in results["cases"].items():
        assert set(case["results"]) == set(SUBJECTS), key
        for subject, result in case["results"].items():
            assert "error" not in result, (key, subject, result)
            assert len(result["samples"]) == case["params"]["repeats"] * case["passes"]
            assert set(result["median"]) == set(result["samples"][0]), (key, subject)
            assert all(_is_number(value) for value in result["median"].values()), (key, subject)

    # No request failed and no connection was refused, for either subject.
    for key in ("w2", "w3", "w4"):
        for subject in SUBJECTS:
            assert results["cases"][key]["results"][subject]["median"]["errors"] == 0

    labels = [row["label"] for row in results["rows"]]
    assert len(labels) == len(set(labels))
    for row in results["rows"]:
        assert _is_number(row["values"]["ours"]), row["label"]
        assert _is_number(row["values"]["raw"]), row["label"]
        assert row["values"]["v010"] is None
        assert row["verdict"] == "info" or row["verdict"].startswith(("pass", "MISS"))

    # The table and the comparison with the earlier file are printed.
    assert "| workload | unit | ours | raw | 0.1.0 |" in stdout
    assert "| W1 sequential | µs/req | 100 |" in stdout.split("change since")[1]
