"""``qstar demo``: the end-to-end demo on the built-in default task.

Uses the shipped default policy (``qstar pretrain`` with the default configuration takes longer
than a demo should; ``--pretrain`` retrains it from scratch, resuming if killed), then evaluates the
baselines on the fixed arith test split and prints one table.
"""

from __future__ import annotations

from pathlib import Path

from qstar.evaluate import EvalConfig, format_table, run_eval
from qstar.models.load import DEFAULT_POLICY
from qstar.train.pretrain import PretrainConfig, pretrain, write_json_atomic


def run_demo(out: str | Path, quick: bool = False, retrain: bool = False) -> dict:
    out = Path(out)
    policy_dir = out / "policy" if (quick or retrain) else DEFAULT_POLICY
    cfg = PretrainConfig(steps=20, save_every=10) if quick else PretrainConfig()
    if policy_dir == DEFAULT_POLICY:
        print(f"== using the shipped default policy {policy_dir} (see its README.md to reproduce it)")
    elif not (policy_dir / "pretrain_summary.json").is_file():
        resume = (policy_dir / "pretrain_config.json").is_file()
        print(f"== pretraining the default policy ({cfg.steps} steps) -> {policy_dir}")
        pretrain(cfg, policy_dir, resume=resume)
    limit, n = (8, 4) if quick else (None, 16)
    rows = []
    for method in ("greedy", "sample", "self-consistency"):
        print(f"== evaluating {method}")
        ecfg = EvalConfig(model=str(policy_dir), method=method, n=n, limit=limit)
        report = run_eval(ecfg, out / method)
        rows.append({"name": method if method == "greedy" else f"{method}@{n}", **report})
    table = format_table(rows, title=f"qstar demo: default policy on arith ({rows[0]['summary']['n_problems']} test problems)")
    print("\n" + table)
    summary = {r["name"]: r["summary"] for r in rows}
    write_json_atomic(out / "results.json", {"pretrain": cfg.to_dict(), "methods": summary})
    print(f"\nresults: {out / 'results.json'}")
    return summary
