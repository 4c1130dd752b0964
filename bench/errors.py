"""What kind of mistake does the policy make? The first wrong step of its solutions, by kind, on arith.

    .venv/bin/python bench/errors.py [--model default] [--problems 300] [--n 8]

Search can only be as good as the critic that tells a right step from a wrong one, and what the critic
has to check depends on the mistakes: a wrong result (``a op b = c`` with the wrong ``c``) is visible in
the step alone, but only by doing the arithmetic; a misread operand only against the question. This bench
decodes the policy greedily and samples ``n`` solutions per problem at T=1 on validation problems (the
train split's ``VALIDATION_STREAM``, as ``bench/critic_ranking.py``), and counts each solution's first
wrong step by :meth:`qstar.tasks.arith.ArithTask.error_kind`. Beside it, ``result_accuracy`` is how often
the policy's most likely result is right when it is fed the reference solution up to each step's ``=``
(teacher-forced: the arithmetic alone, with no earlier slip to inherit). Each cell of the table is a share
with its count of solutions in brackets.

The last line is one JSON object: ``{"greedy": {kind: share}, "sampled": {kind: share}, "result_accuracy"}``
with ``"correct"`` among the kinds.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch
from critic_ranking import VALIDATION_STREAM, validation_samples

from qstar.tasks.arith import ERROR_KINDS


def kind_counts(task, problems, trajs) -> Counter:
    """How many solutions are correct, or have their first wrong step of each kind (kinds never seen are
    absent)."""
    counts = Counter()
    for p, ts in zip(problems, trajs, strict=True):
        for t in ts:
            counts["correct" if task.is_correct(t.text, p) else task.error_kind(t.text, p) or "unfinished"] += 1
    return counts


def shares(counts: Counter) -> dict[str, float]:
    """Each kind's share of the solutions, in the order of :data:`ERROR_KINDS` after ``correct``."""
    total = sum(counts.values())
    return {k: counts[k] / total for k in ("correct", *ERROR_KINDS, "unfinished") if counts[k]}


def result_accuracy(model_dir: str, task, problems) -> float:
    """Teacher-forced: per step of the reference solutions, is every token of the result (after ``=``, up to
    the newline) the model's argmax? The result is tokenised on its own, so its tokens are known for any
    tokenizer (with a character tokenizer that is exactly how the model reads it)."""
    from qstar.models.load import load_causal_lm

    model, tokenizer = load_causal_lm(model_dir, task=task.name)
    right = total = 0
    for p in problems:
        ids, spans = list(tokenizer(task.prompt(p))["input_ids"]), []
        for line in task.format_solution(p).split("\n")[:-1]:  # every step but the answer line
            head, result = line[: line.index("=") + 1], line[line.index("=") + 1:] + "\n"
            ids += tokenizer(head, add_special_tokens=False)["input_ids"]
            result_ids = tokenizer(result, add_special_tokens=False)["input_ids"]
            spans.append((len(ids), len(ids) + len(result_ids)))
            ids += result_ids
        with torch.no_grad():
            predicted = model(torch.tensor([ids])).logits[0].argmax(-1)
        for a, b in spans:
            right += all(predicted[i - 1].item() == ids[i] for i in range(a, b))
            total += 1
    return right / max(1, total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="the policy (a directory, or 'default')")
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--n", type=int, default=8, help="solutions sampled per problem at T=1")
    a = ap.parse_args()
    task, problems, greedy, sampled = validation_samples(a.model, a.problems, a.n, temperature=1.0)
    counts = {"greedy": kind_counts(task, problems, greedy), "sampled": kind_counts(task, problems, sampled)}
    figures = {k: shares(c) for k, c in counts.items()} | {"result_accuracy": result_accuracy(a.model, task, problems)}
    print(f"{a.problems} validation problems (train split, stream {VALIDATION_STREAM}); first wrong step by kind")
    print(f"{'kind':16s} {'greedy':>14s} {f'T=1 x{a.n}':>14s}")
    for kind in dict.fromkeys([*figures["greedy"], *figures["sampled"]]):
        cells = [f"{figures[k].get(kind, 0):.3f} ({counts[k][kind]:>4d})" for k in counts]
        print(f"{kind:16s} {cells[0]:>14s} {cells[1]:>14s}")
    print(f"teacher-forced result accuracy per step: {figures['result_accuracy']:.3f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
