"""The table: each row's medians per subject, the ratios, the target and the verdict.

Rows are computed once from the cases' medians (:func:`table_rows`) and kept
in the results JSON, so that :func:`comparison` works from two JSON files
alone, whatever the plan looked like when the older one was written.
"""

from __future__ import annotations

import math
from typing import Any

from .plan import Row
from .subjects import SUBJECTS

#: Column headings of the subjects.
HEADINGS = {"ours": "ours", "raw": "raw", "v010": "0.1.0"}


def _value(row: Row, cases: dict[str, Any], subject: str) -> float | None:
    result = cases.get(row.case, {}).get("results", {}).get(subject, {})
    value = result.get("median", {}).get(row.metric)
    return None if value is None else float(value)


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def _beyond(value: float, limit: float) -> str:
    return f"{value / limit - 1:.0%} over" if limit else f"{value:g}"


def _verdict(row: Row, values: dict[str, float | None]) -> str:
    """Whether ours meets the row's target and is ahead of 0.1.0, and if not, by how much."""
    ours, raw, old = values.get("ours"), values.get("raw"), values.get("v010")
    if row.target is None:
        return "info"
    if ours is None or math.isnan(ours):
        return "no result"
    target = row.target
    misses = []
    if target.over_raw is not None and raw:
        cost = ours / raw if row.lower_is_better else raw / ours
        if cost > target.over_raw:
            misses.append(f"{cost:.2f}× raw, {_beyond(cost, target.over_raw)}")
    if target.at_most is not None and ours > target.at_most:
        misses.append(f"{ours:.3g} {row.unit}, {_beyond(ours, target.at_most)}")
    if target.at_least is not None and ours < target.at_least:
        misses.append(f"{ours:.3g} {row.unit}, {1 - ours / target.at_least:.0%} under")
    verdict = f"MISS ({'; '.join(misses)})" if misses else "pass"
    if old is not None:
        behind = ours > old if row.lower_is_better else ours < old
        verdict += "; BEHIND 0.1.0" if behind else "; ahead of 0.1.0"
    return verdict


def _target_over_raw(row: Row, values: dict[str, float | None]) -> float | None:
    """The target as a multiple of raw's cost (for a throughput, raw / ours), for the chart."""
    raw = values.get("raw")
    if row.target is None:
        return None
    if row.target.over_raw is not None:
        return row.target.over_raw
    if row.target.at_most is None or not raw or not row.target.at_most:
        return None
    return row.target.at_most / raw if row.lower_is_better else raw / row.target.at_most


def table_rows(rows: list[Row], cases: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row's values per subject, its ratios, target and verdict, ready for JSON."""
    table = []
    for row in rows:
        values = {subject: _value(row, cases, subject) for subject in SUBJECTS}
        table.append(
            {
                "label": row.label,
                "unit": row.unit,
                "case": row.case,
                "metric": row.metric,
                "lower_is_better": row.lower_is_better,
                "values": values,
                "ours_over_raw": _ratio(values["ours"], values["raw"]),
                "ours_over_v010": _ratio(values["ours"], values["v010"]),
                "target": row.target.text if row.target else "",
                "target_over_raw": _target_over_raw(row, values),
                "verdict": _verdict(row, values),
            }
        )
    return table


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _markdown(header: list[str], lines: list[list[str]]) -> str:
    rule = ["---"] * len(header)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *lines])


def render(table: list[dict[str, Any]]) -> str:
    """The table as Markdown (it reads as well in a terminal as in docs/performance.md)."""
    header = ["workload", "unit", *HEADINGS.values(), "ours/raw", "ours/0.1.0", "target", "verdict"]
    lines = [
        [
            row["label"],
            row["unit"],
            *(_number(row["values"].get(subject)) for subject in HEADINGS),
            _times(row["ours_over_raw"]),
            _times(row["ours_over_v010"]),
            row["target"],
            row["verdict"],
        ]
        for row in table
    ]
    return _markdown(header, lines)


def errors(cases: dict[str, Any]) -> list[str]:
    """One line per case and subject that produced no samples, with the reason."""
    return [
        f"{key} / {HEADINGS.get(subject, subject)}: {result['error']}"
        for key, case in cases.items()
        for subject, result in case["results"].items()
        if "error" in result
    ]


def _change(before: float | None, after: float | None) -> str:
    if before is None or after is None or not before:
        return "—"
    return f"{after / before - 1:+.1%}"


def comparison(previous: dict[str, Any], current: dict[str, Any]) -> str:
    """Ours and raw now against an earlier results JSON, row by row (rows in both)."""
    earlier = {row["label"]: row for row in previous.get("rows", [])}
    header = ["workload", "unit", "ours before", "ours now", "change", "raw before", "raw now"]
    header.append("change")
    lines = []
    for row in current["rows"]:
        old = earlier.get(row["label"])
        if old is None:
            continue
        cells = [row["label"], row["unit"]]
        for subject in ("ours", "raw"):
            before, after = old["values"].get(subject), row["values"].get(subject)
            cells += [_number(before), _number(after), _change(before, after)]
        lines.append(cells)
    return _markdown(header, lines)
