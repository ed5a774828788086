"""The benchmark suite runs end to end in its tiny size and writes well-formed results.

Only ours and raw: 0.1.0 would need its own venv from the package index, and
the tests need no network. No timing is asserted: a slow machine fails nothing.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pytest
from benchmarks import chart, plan, report
from benchmarks.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
#: The run docs/performance.md shows, its chart, and the page.
PUBLISHED = json.loads((ROOT / "docs" / "performance.json").read_text())
CHART = (ROOT / "docs" / "performance.svg").read_text()
PAGE = (ROOT / "docs" / "performance.md").read_text()
SUBJECTS = ("ours", "raw")
#: The benchmark's own bound on itself is per case; this bounds the whole tiny run.
RUN_BOUND = 25.0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One tiny run for the module's tests: its results and what it printed."""
    tmp_path = tmp_path_factory.mktemp("tiny")
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
    results = json.loads(output.read_text())
    assert output.with_suffix(".svg").read_text() == chart.render_svg(results["rows"])
    assert f"chart: {output.with_suffix('.svg')}" in done.stdout
    return results, done.stdout


def _is_number(value: object) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value >= 0


def test_tiny_run_measures_every_case_for_ours_and_raw(
    tiny_run: tuple[dict[str, Any], str],
) -> None:
    results, stdout = tiny_run

    assert results["schema"] == 1
    assert results["size"] == "tiny"
    assert results["machine"]["cores"] >= 1
    assert results["machine"]["cpu"]
    for subject in SUBJECTS:
        versions = results["subjects"][subject]["versions"]
        assert versions["aio-websocket-pool"].startswith("0.2")  # ours, not 0.1.0
        assert versions["websockets"]
    assert {key[:2] for key in results["cases"]} == {f"w{n}" for n in range(1, 8)} | {"m1"}
    for key, case in results["cases"].items():
        assert set(case["results"]) == ({"ours"} if key == "m1" else set(SUBJECTS)), key
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
        # M1 measures the hand-written dispatcher in ours' worker: its rows are ratios.
        assert _is_number(row["values"]["raw"]) == (row["case"] != "m1"), row["label"]
        assert row["values"]["v010"] is None
        assert row["verdict"] == "info" or row["verdict"].startswith(("pass", "MISS"))

    # The table and the comparison with the earlier file are printed.
    assert "| workload | unit | ours | raw | 0.1.0 |" in stdout
    assert "| W1 sequential | µs/req | 100 |" in stdout.split("change since")[1]


def test_m1_compares_its_three_ways_round_by_round(tiny_run: tuple[dict[str, Any], str]) -> None:
    """Each M1 sample holds the three throughputs of one round and their ratios."""
    results, _ = tiny_run
    case = results["cases"]["m1"]
    assert case["params"]["exclusive_connections"] > case["params"]["connections"]
    for sample in case["results"]["ours"]["samples"]:
        assert all(sample[f"{way}_per_s"] > 0 for way in ("mux", "dispatcher", "exclusive"))
        assert sample["over_dispatcher"] == sample["mux_per_s"] / sample["dispatcher_per_s"]
        assert sample["over_exclusive"] == sample["mux_per_s"] / sample["exclusive_per_s"]
    targets = {row.label: row.target for row in plan.rows("full") if row.case == "m1"}
    assert {label: target.at_least for label, target in targets.items() if target} == {
        "M1 vs dispatcher": 0.9,
        "M1 vs exclusive leases": 2.0,
    }
    shown = {row["label"]: row["verdict"] for row in results["rows"] if row["case"] == "m1"}
    assert set(shown) == set(targets)


def test_an_at_least_target_is_missed_below_it() -> None:
    row = plan.Row("r", "c", "m", "times", lower_is_better=False,
                   target=plan.Target("at least 2", at_least=2.0))  # fmt: skip
    cases: dict[str, Any] = {"c": {"results": {"ours": {"median": {"m": 1.5}}}}}
    assert report.table_rows([row], cases)[0]["verdict"] == "MISS (1.5 times, 25% under)"
    cases["c"]["results"]["ours"]["median"]["m"] = 2.0
    assert report.table_rows([row], cases)[0]["verdict"] == "pass"


def test_published_rows_are_those_of_the_published_cases() -> None:
    """The rows the table and chart are drawn from are computed from the measurements.

    Rows of cases the published run predates (M1) are left out: it has nothing for them.
    """
    rows = [row for row in plan.rows(PUBLISHED["size"]) if row.case in PUBLISHED["cases"]]
    assert PUBLISHED["rows"] == report.table_rows(rows, PUBLISHED["cases"])


def test_performance_page_shows_the_table_of_the_published_run() -> None:
    assert report.render(PUBLISHED["rows"]) in PAGE


def _texts(svg: str) -> list[str]:
    return re.findall(r"<text\b[^>]*>([^<]*)</text>", svg)


def test_published_chart_is_drawn_from_the_published_rows() -> None:
    """Redrawn from docs/performance.json, the chart is the committed one.

    Byte for byte with the matplotlib that drew it; with another one (whose SVG
    may differ in layout), every label and value on it still is.
    """
    drawn = chart.render_svg(PUBLISHED["rows"])
    assert _texts(drawn) == _texts(CHART)
    assert "W1 sequential" in _texts(CHART)
    assert "<dc:date>" not in CHART  # redrawn tomorrow, the same bytes
    if f"Matplotlib v{mpl.__version__}," in CHART:
        assert drawn == CHART, "bash scripts/dev bench --render docs/performance.json redraws it"
    assert "(performance.svg)" in PAGE


def test_chart_writes_each_ratio_and_inverts_throughputs() -> None:
    rows = [
        {"label": "cost", "lower_is_better": True, "ours_over_raw": 2.5, "ours_over_v010": 0.5,
         "target_over_raw": 1.1},
        {"label": "rate", "lower_is_better": False, "ours_over_raw": 0.25, "ours_over_v010": 0.0,
         "target_over_raw": None},
    ]  # fmt: skip
    texts = _texts(chart.render_svg(rows))
    assert texts[texts.index("cost") :][:2] == ["cost", "rate"]  # the rows, top down
    times = "\N{MULTIPLICATION SIGN}"
    assert {f"2.5{times}", f"0.5{times}", f"4{times}", f"0{times}"} <= set(texts)  # 4 = 1 / 0.25
    assert chart.render_svg(rows) == chart.render_svg(rows)


def test_render_redraws_the_chart_and_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "run.json"
    results.write_text(json.dumps({"rows": PUBLISHED["rows"]}))
    assert main(["--render", str(results)]) == 0
    assert (tmp_path / "run.svg").read_text() == chart.render_svg(PUBLISHED["rows"])
    out = capsys.readouterr().out
    assert report.render(PUBLISHED["rows"]) in out
    assert f"chart: {tmp_path / 'run.svg'}" in out
