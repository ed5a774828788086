"""The table's ratios as a picture: an SVG bar chart, drawn from a results JSON's rows.

Every row is drawn as what ours costs, as a multiple of what raw websockets
costs and of what 0.1.0 costs, on one log scale: 1 is "the same", left of it
ours is cheaper. For a throughput (requests/s) the cost is its inverse, so
that left is better on every row; the table shows the ratios as measured. A
row's target, where it can be put as a multiple of raw, is marked on its raw
bar. Bars start at 1, so that a bar to the left is a row where ours is cheaper. A ratio
that is zero or missing (W3 errors) is written at 1, not drawn.

The SVG is the same bytes for the same rows and matplotlib version (a fixed
hash salt, no date, text kept as text), so it can be committed beside the JSON
and checked against it. ``bash scripts/dev bench`` writes it next to the
results JSON; ``bash scripts/dev bench --render FILE`` redraws it (and prints
the table) from an earlier results JSON.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib as mpl
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

#: The bars of each row: the row's ratio key, its legend, its colour.
BARS = (
    ("ours_over_raw", "ours vs raw websockets", "#3f51b5"),
    ("ours_over_v010", "ours vs 0.1.0", "#ef8a17"),
)
#: The left end of the axis: room for the labels of the cheapest bars.
FLOOR = 0.01


def cost(row: dict[str, Any], key: str) -> float | None:
    """Ours' cost as a multiple of the other's: the ratio, inverted for a throughput."""
    ratio = row.get(key)
    if ratio is None or math.isnan(ratio) or ratio <= 0:
        return ratio
    return float(ratio) if row["lower_is_better"] else 1 / ratio


def _times(value: float) -> str:
    return f"{value:.3g}×" if value < 1000 else f"{value:,.0f}×"


def render_svg(rows: list[dict[str, Any]]) -> str:
    """The chart of ``rows`` (a results JSON's ``rows``) as an SVG document."""
    # A fixed salt for the SVG's ids, and text kept as text: the SVG depends on the rows alone.
    with mpl.rc_context({"svg.hashsalt": "aio-websocket-pool", "svg.fonttype": "none"}):
        figure = Figure(figsize=(8, 0.42 * len(rows) + 1.4), layout="constrained")
        axes = figure.subplots()
        height = 0.38
        costs = [c for row in rows for key, _, _ in BARS if (c := cost(row, key))]
        axes.set_xscale("log")
        axes.set_xlim(FLOOR, max(10.0, *costs) * 4)
        for index, row in enumerate(rows):
            for offset, (key, _, colour) in zip((-height / 2, height / 2), BARS, strict=True):
                y = index + offset
                value = cost(row, key)
                if value is None or value <= 0:  # no bar on a log scale; 1 stands for "none"
                    axes.text(0.93, y, "0×" if value == 0 else "—", ha="right", va="center",
                              fontsize=7, color="#555")  # fmt: skip
                    continue
                axes.barh(y, value - 1, height=height, left=1, color=colour)
                right = value >= 1
                axes.text(value * (1.08 if right else 1 / 1.08), y, _times(value),
                          ha="left" if right else "right", va="center", fontsize=7)  # fmt: skip
            target = row.get("target_over_raw")
            if target:
                axes.plot(target, index - height / 2, marker="|", markersize=13,
                          markeredgewidth=2.2, color="#c62828")  # fmt: skip
        axes.axvline(1, color="#222", linewidth=0.8)
        axes.set_yticks(range(len(rows)), [row["label"] for row in rows], fontsize=8)
        axes.invert_yaxis()  # W1 at the top, as in the table
        axes.tick_params(axis="x", labelsize=8)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}×"))
        axes.set_xlabel(
            "ours' cost as a multiple of the other's (log scale; left of 1: ours is cheaper; "
            "for req/s, the inverse ratio)",
            fontsize=8,
        )
        axes.grid(axis="x", which="major", color="#ddd", linewidth=0.6)
        axes.set_axisbelow(True)
        handles: list[Artist] = [Patch(color=colour, label=label) for _, label, colour in BARS]
        handles.append(Line2D([], [], marker="|", markersize=11, markeredgewidth=2.2,
                              linestyle="", color="#c62828", label="target, vs raw"))  # fmt: skip
        axes.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.95)
        svg = io.StringIO()
        figure.savefig(svg, format="svg", metadata={"Date": None})
    return svg.getvalue()
