"""Every method side by side on arith test problems: accuracy and token cost, MCTS at a matched budget.

    .venv/bin/python bench/methods.py [--model DIR] [--critics DIR] [--problems 200] [--out DIR]

Without ``--critics`` the ranking methods use the policy's own mean token probability ("prior").
MCTS gets a number of simulations chosen so its generated tokens per problem match
self-consistency@16 (measured on a few problems first). Prints a table; the last line is one JSON
object with at least ``greedy``, ``self_consistency``, ``mcts``, ``mcts_tokens`` and ``sc_tokens``.
With ``--out DIR`` it also writes ``methods.json`` (every row) and ``methods.png`` (accuracy against tokens).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from qstar.evaluate import format_table, load_critics, load_policy, summarise
from qstar.search.baselines import SampleConfig, best_of_n, greedy, self_consistency
from qstar.search.beam import BeamConfig, beam
from qstar.search.mcts import MCTSConfig, mcts
from qstar.tasks import get_task


def run(name, strategy, cfg, problems, task, policy, critics, batch: int = 16) -> dict:
    t0, results = time.perf_counter(), []
    for i in range(0, len(problems), batch):
        results += strategy(problems[i : i + batch], task, policy, critics, cfg)
    report = summarise(problems, task, results, time.perf_counter() - t0, getattr(cfg, "n", 1))
    print(f"  {name}: accuracy {report['summary']['accuracy']:.3f}, "
          f"{report['summary']['mean_tokens']:.0f} tokens/problem", flush=True)
    return {"name": name, **report}


def mcts_config(has_critics: bool, **overrides) -> MCTSConfig:
    """The default MCTS; without critics, nodes are evaluated by the policy's prior."""
    base = MCTSConfig() if has_critics else MCTSConfig(b_prior=1.0)
    return replace(base, **overrides)


def matched_simulations(target_tokens: float, cfg: MCTSConfig, problems, task, policy, critics) -> int:
    """Simulations per problem whose generated tokens match ``target_tokens`` (a short pilot run)."""
    pilot = run("mcts pilot", mcts, cfg, problems, task, policy, critics)
    per_sim = pilot["summary"]["mean_tokens"] / cfg.n_simulations
    return max(4, round(target_tokens / per_sim))


def compare(model: str, critics_dir: str | None, n_problems: int, out: Path | None) -> tuple[dict, list[dict]]:
    """Every method on the first ``n_problems`` arith test problems: the JSON line's figures, and the rows."""
    task = get_task("arith")
    problems = task.problems("test", n_problems)
    policy = load_policy(model, task)
    critics = load_critics(critics_dir)
    has = critics_dir is not None
    rank = "orm" if has else "prior"
    rows = [
        run("greedy", greedy, SampleConfig(), problems, task, policy, critics),
        run("self-consistency@16", self_consistency, SampleConfig(n=16), problems, task, policy, critics),
        run(f"best-of-16 ({rank})", best_of_n, SampleConfig(n=16, critic=rank), problems, task, policy, critics),
        run(f"beam ({'prm' if has else 'prior'})", beam, BeamConfig(critic="prm" if has else "prior"),
            problems, task, policy, critics),
    ]
    sc_tokens = rows[1]["summary"]["mean_tokens"]
    sims = matched_simulations(sc_tokens, mcts_config(has), problems[:16], task, policy, critics)
    rows.append(run(f"mcts ({sims} sims)", mcts, mcts_config(has, n_simulations=sims), problems, task, policy,
                    critics))
    print()
    print(format_table(rows, title=f"arith test, {len(problems)} problems, policy {model}, critics {critics_dir}"))
    figures = {
        "greedy": rows[0]["summary"]["accuracy"],
        "self_consistency": rows[1]["summary"]["accuracy"],
        "best_of_n": rows[2]["summary"]["accuracy"],
        "beam": rows[3]["summary"]["accuracy"],
        "mcts": rows[4]["summary"]["accuracy"],
        "greedy_tokens": rows[0]["summary"]["mean_tokens"],
        "sc_tokens": sc_tokens,
        "bon_tokens": rows[2]["summary"]["mean_tokens"],
        "beam_tokens": rows[3]["summary"]["mean_tokens"],
        "mcts_tokens": rows[4]["summary"]["mean_tokens"],
        "mcts_simulations": sims,
        "problems": len(problems),
    }
    if out is not None:
        save(out, figures, rows, f"arith test, {len(problems)} problems, critics {critics_dir}")
    return figures, rows


def save(out: Path, figures: dict, rows: list[dict], title: str) -> None:
    """``out/methods.json`` (the figures and every row) and ``out/methods.png`` (accuracy against tokens)."""
    from qstar.viz.cost_plot import plot_accuracy_vs_tokens

    out.mkdir(parents=True, exist_ok=True)
    (out / "methods.json").write_text(json.dumps({"figures": figures, "rows": rows}, indent=1))
    print(f"plot: {plot_accuracy_vs_tokens(rows, out / 'methods.png', title)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--critics", default=None)
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    figures, _ = compare(args.model, args.critics, args.problems, args.out)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
