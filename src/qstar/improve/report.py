"""What a self-improvement run shows: one row per iteration, a table on screen, ``results.json`` and
``progress.png`` (accuracy by iteration for each method; iteration 0 is the starting policy)."""

from __future__ import annotations

from pathlib import Path

METHODS = {"greedy": "greedy", "self_consistency": "self-consistency", "mcts": "MCTS"}
"""evaluation summary key -> label"""


def iteration_rows(run) -> list[dict]:
    """One row per evaluated iteration, from the committed phase summaries (so it can be rebuilt any time)."""
    from qstar.improve.loop import Step, plan

    rows = []
    for k in sorted({s.iteration for s in plan(run.cfg)}):
        evaluation = run.summary(Step(k, "eval"))
        if evaluation is None:
            break
        steps = [s for s in plan(run.cfg) if s.iteration == k]
        synthesis = run.summary(Step(k, "synthesise")) or {}
        row = {"iteration": k, **{m: evaluation[m]["accuracy"] for m in METHODS}}
        row.update(kept=synthesis.get("sft_rows"), kept_search=synthesis.get("kept_search"),
                   pairs=synthesis.get("pairs"))
        row["wall_s"] = sum((run.summary(s) or {}).get("wall_s", 0.0) for s in steps)
        row["phase_wall_s"] = {s.phase: round(run.summary(s)["wall_s"], 1) for s in steps}
        row["eval"] = evaluation
        rows.append(row)
    return rows


def format_rows(rows: list[dict], title: str = "") -> str:
    """The on-screen table: accuracy of each method, data kept and wall time, per iteration."""
    n = rows[0]["eval"]["greedy"]["n_problems"] if rows else 0
    head = (f"{'iter':>4} {'greedy':>7} {'self-cons.':>10} {'MCTS':>7} {'kept (search)':>14} {'pairs':>6}"
            f" {'wall s':>7}")  # kept: SFT rows; (search): how many of them the MCTS trees gave
    lines = ([title] if title else []) + [f"accuracy on {n} test problems", head, "-" * len(head)]
    for r in rows:
        kept = "-" if r["kept"] is None else f"{r['kept']} ({r['kept_search']})"
        pairs = "-" if r["pairs"] is None else str(r["pairs"])
        lines.append(f"{r['iteration']:>4} {r['greedy']:>7.3f} {r['self_consistency']:>10.3f} {r['mcts']:>7.3f}"
                     f" {kept:>14} {pairs:>6} {r['wall_s']:>7.0f}")
    return "\n".join(lines)


def plot_progress(rows: list[dict], path: Path, title: str = "", labels: dict | None = None) -> Path:
    """Accuracy by iteration for each method, written atomically (a temporary file, then a rename)."""
    from qstar.viz.figure import pyplot, save_png

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in {**METHODS, **(labels or {})}.items():
        ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], marker="o", label=label)
    ax.set_xlabel("iteration (0 = starting policy)")
    ax.set_ylabel("test accuracy")
    ax.set_xticks([r["iteration"] for r in rows])
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_png(fig, path)


def write_report(run) -> dict:
    """Rebuild ``results.json`` (the config, a note on the oracle, and the rows) and ``progress.png``."""
    from qstar.train.pretrain import write_json_atomic

    rows = iteration_rows(run)
    results = {
        "config": run.cfg.to_dict(),
        "oracle": ("training searches used the task verifier as their ORM (oracle_orm); test problems were "
                   "searched with the trained critics only") if run.cfg.oracle_orm else None,
        "rows": rows,
    }
    write_json_atomic(run.out / "results.json", results)
    if rows:
        static = ", static critics" if not run.cfg.retrain_critics else ""
        plot_progress(rows, run.out / "progress.png", title=f"qstar improve: {run.cfg.task}{static}",
                      labels={"self_consistency": f"self-consistency@{run.cfg.sc_n}"})
    return results
