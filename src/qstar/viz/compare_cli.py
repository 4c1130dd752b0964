"""``qstar compare``: several ``qstar eval`` results side by side, as a table and an accuracy-vs-tokens plot.

Each input is a ``results.json`` written by ``qstar eval --out DIR``, or the DIR itself. The runs must have
evaluated the same problems (task, data, split and count), or their accuracies would not compare.
Only argparse is imported with the parser; the command imports the rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qstar.errors import QstarError

SAME = ("task", "data", "split")
"""config fields that must agree between compared runs (with the number of problems)"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare", help="eval results side by side: a table and an accuracy-vs-tokens plot")
    p.add_argument("results", nargs="+", help="results.json files written by qstar eval --out, or their directories")
    p.add_argument("--out", default="compare.png", help="PNG to write (default: compare.png)")
    p.set_defaults(func=cmd_compare)
    return p


def read_result(path: str | Path) -> dict:
    """One ``qstar eval`` result, named by its method; a missing or foreign file is a one-line error."""
    from qstar.tasks.jsonl import read_json

    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise QstarError(f"{path}: no results.json (write one with qstar eval --out DIR)")
    report = read_json(file)
    if not isinstance(report, dict) or not {"config", "summary"} <= report.keys() or "method" not in report["summary"]:
        raise QstarError(f"{file}: not a qstar eval result (it needs config and summary.method)")
    return {"name": report["summary"]["method"], "file": str(file), **report}


def comparable(rows: list[dict]) -> list[dict]:
    """``rows`` named apart (a method that occurs twice gets its folder's name added), after checking that
    they evaluated the same problems."""
    def problems(r: dict) -> tuple:
        return (*(r["config"].get(k) for k in SAME), r["summary"].get("n_problems"))

    first = problems(rows[0])
    for r in rows[1:]:
        if problems(r) != first:
            fields = ", ".join(f"{k}={v}" for k, v in zip((*SAME, "problems"), problems(r), strict=True))
            want = ", ".join(f"{k}={v}" for k, v in zip((*SAME, "problems"), first, strict=True))
            raise QstarError(f"{r['file']} evaluated other problems ({fields}) than {rows[0]['file']} ({want})")
    names = [r["name"] for r in rows]
    return [{**r, "name": r["name"] if names.count(r["name"]) == 1 else f"{r['name']} ({Path(r['file']).parent.name})"}
            for r in rows]


def cmd_compare(a: argparse.Namespace) -> None:
    from qstar.evaluate import format_table
    from qstar.viz.cost_plot import plot_accuracy_vs_tokens

    rows = comparable([read_result(p) for p in a.results])
    c = rows[0]["config"]
    title = f"{c['task']} ({c['split']}, {rows[0]['summary']['n_problems']} problems)"
    print(format_table(rows, title=title))
    print(f"plot: {plot_accuracy_vs_tokens(rows, a.out, title)}")
