"""Greedy accuracy of every iteration of ``qstar improve`` runs on validation problems, never the test split.

    .venv/bin/python bench/improve_validation.py RUN [RUN ...] [--problems 1000] [--out FILE]

The loop reports accuracy on the fixed test split, which decides its targets; choosing the loop's settings
on those same problems would select on the test set. This bench scores each run's policies on problems of
the *train* split drawn from a stream no run trains on (``VALIDATION_STREAM``), so settings can be compared
there and the test figures stay honest. Problems are generated, so the ~10k problems a run draws per
iteration overlap these only by chance (arith's problem space is many millions).

Prints one row per run (greedy accuracy after each iteration, and the gain); the last line is one JSON
object mapping each run to its accuracies.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

from qstar.evaluate import evaluate, load_policy, summarise
from qstar.improve.config import ImproveConfig
from qstar.improve.loop import IMPROVE_STREAM, Run
from qstar.search.baselines import SampleConfig, greedy
from qstar.search.common import Critics

VALIDATION_STREAM = IMPROVE_STREAM + 2_000
"""seed of the validation problems: apart from every stream the loop (``IMPROVE_STREAM + 100 * seed + k``
for seeds below 20), the critics and ``qstar dpo`` draw"""


def policies(run: Run) -> list[Path]:
    """The starting policy and the policy after each finished iteration, in order (a phase's folder is
    complete once its ``summary.json`` is written, as ``Run.done`` reads it)."""
    found = [run.policy_dir(0)]
    for k in range(1, run.cfg.iterations + 1):
        if not (run.policy_dir(k) / "summary.json").is_file():
            break
        found.append(run.policy_dir(k))
    return found


def greedy_accuracy(model: Path, task, problems, max_new_tokens: int) -> float:
    policy = load_policy(str(model), task)
    t0 = time.perf_counter()
    results = evaluate(problems, task, policy, Critics(), greedy, SampleConfig(n=1, max_new_tokens=max_new_tokens),
                       64, False)
    return summarise(problems, task, results, time.perf_counter() - t0, 1)["summary"]["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="qstar improve run folders")
    ap.add_argument("--problems", type=int, default=1000, help="validation problems (default 1000)")
    ap.add_argument("--out", type=Path, help="also write the JSON object here")
    a = ap.parse_args()
    figures = {}
    print(f"greedy accuracy on {a.problems} validation problems (train split, stream {VALIDATION_STREAM})")
    for folder in a.runs:
        run = Run(ImproveConfig.from_dict(json.loads((folder / "config.json").read_text())), folder, progress=False)
        task = run.task
        if "seed" not in inspect.signature(task.problems).parameters:
            raise SystemExit(f"{folder}: task {task.name} has a fixed train file, not a generator of fresh "
                             "problems; this bench needs a generated task (arith)")
        problems = task.problems("train", a.problems, seed=VALIDATION_STREAM)
        t0 = time.perf_counter()
        accs = [greedy_accuracy(m, task, problems, run.cfg.max_new_tokens) for m in policies(run)]
        figures[str(folder)] = accs
        print(f"{folder}: " + " -> ".join(f"{x:.3f}" for x in accs)
              + f"  (gain {accs[-1] - accs[0]:+.3f}, {time.perf_counter() - t0:.0f}s)", flush=True)
    if a.out:
        a.out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
