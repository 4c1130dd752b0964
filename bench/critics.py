"""Trained critics in search: every method on arith test problems, then AlphaLLM's MCTS ablation.

    .venv/bin/python bench/critics.py --critics DIR [--model DIR] [--problems 200] [--out DIR]

No reference answer is seen at test time. Prints the method table (see ``bench/methods.py``) and the
ablation: MCTS with the value only, then +PRM, +ORM fast rollouts, +adaptive branching, +state merge.
The last line is one JSON object with at least ``greedy``, ``self_consistency``, ``mcts``,
``mcts_tokens``, ``sc_tokens`` and the ablation's accuracies. With ``--out DIR`` it also writes
``methods.json`` (every row, the ablation's too) and ``methods.png`` (accuracy against tokens).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from methods import compare, mcts_config, run, save

from qstar.evaluate import format_table, load_critics, load_policy
from qstar.search.mcts import mcts
from qstar.tasks import get_task

ABLATION = [
    # (name, MCTS overrides): fixed width 3 and no merge until those steps switch them on
    ("value only", dict(b_prm=0, b_orm=0, c_min=3, c_max=3, merge_threshold=0.0)),
    ("+PRM", dict(b_orm=0, c_min=3, c_max=3, merge_threshold=0.0)),
    ("+ORM rollouts", dict(c_min=3, c_max=3, merge_threshold=0.0)),
    ("+adaptive branching", dict(merge_threshold=0.0)),
    ("+state merge", dict()),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--critics", required=True)
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None, help="write methods.json and methods.png here")
    args = ap.parse_args()
    figures, method_rows = compare(args.model, args.critics, args.problems, None)
    task = get_task("arith")
    problems = task.problems("test", args.problems)
    policy, critics = load_policy(args.model, task), load_critics(args.critics)
    rows = []
    for name, overrides in ABLATION:
        cfg = mcts_config(True, n_simulations=figures["mcts_simulations"], **overrides)
        rows.append(run(name, mcts, cfg, problems, task, policy, critics))
    print()
    print(format_table(rows, title="MCTS ablation (AlphaLLM Table 4 order)"))
    figures["ablation"] = {r["name"]: r["summary"]["accuracy"] for r in rows}
    figures["ablation_tokens"] = {r["name"]: r["summary"]["mean_tokens"] for r in rows}
    if args.out is not None:
        ablation = [{**r, "name": f"MCTS {r['name']}"} for r in rows]
        save(args.out, figures, method_rows + ablation, f"arith test, {len(problems)} problems, critics {args.critics}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
