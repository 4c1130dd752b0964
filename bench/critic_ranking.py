"""How well trained critics pick the right one of a policy's own samples, on validation problems.

    .venv/bin/python bench/critic_ranking.py CRITICS [CRITICS ...] [--model default] [--problems 400] [--n 16]

Search needs a critic that ranks the candidates *of one problem*: telling easy problems from hard ones
(which plain AUROC rewards) does not help it choose. This bench samples ``n`` solutions per problem once
(T=0.8, as ``bench/critics.py``'s best-of-16), scores every sample with every critic of each directory, and
prints best-of-n accuracy and the within-problem AUROC of each ranking, beside greedy, pass@n and the
policy's own mean log-probability (``prior``, no critic). The problems come from the *train* split on a
stream no critic, trunk or loop trains on (``VALIDATION_STREAM``), so critic settings can be compared here
and the test split keeps deciding the targets of ``bench/critics.py``.

The last line is one JSON object: ``{critics dir: {ranking: {"best_of_n", "auroc_within"}}}`` plus
``greedy`` and ``pass_at_n``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qstar.critics.data import draw_problems
from qstar.critics.load import load_critics
from qstar.critics.report import within_group_auroc
from qstar.evaluate import load_policy
from qstar.search.baselines import SampleConfig, rank_candidates, sample_solutions
from qstar.search.common import Critics
from qstar.tasks import get_task

VALIDATION_STREAM = 5_000
"""seed of the validation problems: apart from the critics' data (1000), report (2000), ``qstar dpo``'s
pairs (3000), the critics' trunk (4000) and the improve loop (7000 and up)"""
RANKINGS = (("orm", "last"), ("prm", "min"), ("prm", "last"), ("value", "last"))


def best_and_auroc(correct: list[list[bool]], scores: list[list[float]]) -> dict:
    """Best-of-n accuracy (highest score wins) and within-problem AUROC of one ranking."""
    best = [c[max(range(len(s)), key=s.__getitem__)] for c, s in zip(correct, scores, strict=True)]
    flat = [(x, y, i) for i, (s, c) in enumerate(zip(scores, correct, strict=True)) for x, y in zip(s, c, strict=True)]
    within = within_group_auroc(*map(list, zip(*flat, strict=True)))
    return {"best_of_n": sum(best) / len(best), "auroc_within": within}


def validation_samples(model: str, n_problems: int, n: int, temperature: float):
    """The arith validation problems with the policy's greedy solution and ``n`` samples of each:
    ``(task, problems, greedy, samples)``, the last two as lists of trajectories per problem."""
    task = get_task("arith")
    policy = load_policy(model, task)
    problems = draw_problems(task, n_problems, VALIDATION_STREAM)
    cfg = SampleConfig(n=n)
    greedy, _ = sample_solutions(problems, task, policy, 1, cfg, temperature=0.0)
    samples, _ = sample_solutions(problems, task, policy, n, cfg, temperature=temperature)
    return task, problems, greedy, samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("critics", nargs="+", type=Path, help="qstar train-critics output directories")
    ap.add_argument("--model", default="default", help="the policy whose samples are ranked")
    ap.add_argument("--problems", type=int, default=400)
    ap.add_argument("--n", type=int, default=16)
    a = ap.parse_args()
    cfg = SampleConfig(n=a.n)
    task, problems, greedy, trajs = validation_samples(a.model, a.problems, a.n, cfg.temperature)
    correct = [[task.is_correct(t.text, p) for t in ts] for p, ts in zip(problems, trajs, strict=True)]
    figures = {"greedy": sum(task.is_correct(g[0].text, p) for g, p in zip(greedy, problems, strict=True)) / len(problems),
               "pass_at_n": sum(any(c) for c in correct) / len(problems)}
    rank_candidates(problems, task, trajs, Critics(), SampleConfig(critic="prior"))
    figures["prior"] = best_and_auroc(correct, [[t.score for t in ts] for ts in trajs])
    print(f"{a.problems} validation problems (train split, stream {VALIDATION_STREAM}), {a.n} samples each at "
          f"T={cfg.temperature}: greedy {figures['greedy']:.3f}, pass@{a.n} {figures['pass_at_n']:.3f}")
    print(f"{'critics':40s} {'ranking':10s} {'best-of-' + str(a.n):>11s} {'AUROC in-problem':>17s}")
    print(f"{'(none)':40s} {'prior':10s} {figures['prior']['best_of_n']:11.3f} {figures['prior']['auroc_within']:17.3f}")
    for folder in a.critics:
        critics, mine = load_critics(folder), {}
        for role, aggregate in RANKINGS:
            rank_candidates(problems, task, trajs, critics, SampleConfig(critic=role, aggregate=aggregate))
            row = best_and_auroc(correct, [[t.score for t in ts] for ts in trajs])
            mine[f"{role}-{aggregate}"] = row
            print(f"{str(folder):40s} {role + '-' + aggregate:10s} {row['best_of_n']:11.3f} {row['auroc_within']:17.3f}",
                  flush=True)
        figures[str(folder)] = mine
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
