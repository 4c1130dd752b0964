"""Accuracy against token cost: each method as one point with its 95% interval.

The figure a method comparison is read from: a search is worth its tokens only if it sits above and
left of the sampling baselines. Rows are the method summaries that ``qstar eval`` and the benches print
(``{"name", "summary": {"accuracy", "ci95", "mean_tokens"}}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qstar.errors import QstarError
from qstar.viz.figure import pyplot, save_png


@dataclass(frozen=True)
class Point:
    name: str
    tokens: float
    """generated tokens per problem"""
    accuracy: float
    low: float
    high: float
    """the accuracy's 95% interval"""


def cost_points(rows: list[dict]) -> list[Point]:
    """One point per row; a row without the summary fields is a one-line error naming it."""
    points = []
    for r in rows:
        s = r.get("summary", {})
        if not {"accuracy", "ci95", "mean_tokens"} <= s.keys():
            raise QstarError(f"method {r.get('name')!r} has no accuracy / ci95 / mean_tokens summary to plot")
        points.append(Point(r["name"], s["mean_tokens"], s["accuracy"], *s["ci95"]))
    if not points:
        raise QstarError("no methods to plot")
    return points


MARKERS = "osD^v"


def plot_accuracy_vs_tokens(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy (with its 95% interval) against generated tokens per problem, log-scaled, one point per
    method named in the legend; written atomically to ``path``."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    points = cost_points(rows)
    fig, ax = pyplot().subplots(figsize=(8, 4.2))
    for i, p in enumerate(points):
        # 10 colours x 5 markers: every method of a bench (methods and ablation) is told apart in the legend
        ax.errorbar(p.tokens, p.accuracy, yerr=[[p.accuracy - p.low], [p.high - p.accuracy]], fmt=MARKERS[i % 5],
                    capsize=3, color=f"C{i % 10}", label=p.name)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 20, 50, 100, ...: a tick in every range
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))  # 50, not 5 x 10^1
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("generated tokens per problem (log scale)")
    ax.set_ylabel("accuracy (95% interval)")
    ax.grid(alpha=0.3, which="both")
    # a legend beside the axes: labels on the points overlap as soon as methods cost about the same
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return save_png(fig, path, bbox_inches="tight")
