"""How good are the critics? AUROC, precision and recall at 0.5, and calibration on held-out problems.

Held-out problems come from the task's TRAIN split through another seed stream than the critics'
training problems (and without any question they saw); test problems are never touched. They are
sampled and labelled exactly like the training data (:mod:`qstar.critics.data`), and each critic is
judged against the labels of its own role:

- value: every prefix; positive when its Monte Carlo return is at least 0.5. ECE compares the score
  with the return itself (a value estimates the return, and a soft target is its unbiased estimate);
- prm: every prefix; positive when the step is good (return >= ``prm_threshold``), its training label;
- orm: every sampled solution; positive when the verifier grades it correct.
"""

from __future__ import annotations

import math
from pathlib import Path

from qstar.critics.data import HELDOUT_STREAM, build_records, critic_rows, draw_problems, read_jsonl
from qstar.search.common import Critics
from qstar.tasks.base import Task

TARGETS = {
    "value": "prefix return >= 0.5 (ECE vs the return)",
    "prm": "step good (return >= threshold)",
    "orm": "solution correct (verifier)",
}


# --- metrics -----------------------------------------------------------------------------------------------


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """Area under the ROC curve: P(a random positive outranks a random negative), ties counting half.

    Computed from average ranks (Mann-Whitney U). None when a class is missing.
    """
    n, pos = len(scores), sum(bool(y) for y in labels)
    neg = n - pos
    if not pos or not neg:
        return None
    order = sorted(range(n), key=lambda i: scores[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):  # tied scores share their average rank (1-based)
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def within_group_auroc(scores: list[float], labels: list[bool], groups: list) -> float | None:
    """AUROC over pairs from the same group only (ties count half): how well a critic ranks the candidates
    of one problem, which is what best-of-n and search need; plain AUROC also rewards telling easy problems
    from hard ones. None when no group holds both classes."""
    by: dict = {}
    for s, y, g in zip(scores, labels, groups, strict=True):
        by.setdefault(g, ([], []))[0 if y else 1].append(s)
    wins = pairs = 0.0
    for pos, neg in by.values():
        for a in pos:
            wins += sum(1.0 if a > b else 0.5 if a == b else 0.0 for b in neg)
        pairs += len(pos) * len(neg)
    return wins / pairs if pairs else None


def precision_recall(scores: list[float], labels: list[bool], threshold: float = 0.5) -> tuple:
    """Precision and recall of "score >= threshold" as the positive prediction (None where undefined)."""
    pred = [s >= threshold for s in scores]
    tp = sum(p and y for p, y in zip(pred, labels, strict=True))
    predicted, actual = sum(pred), sum(bool(y) for y in labels)
    return (tp / predicted if predicted else None, tp / actual if actual else None)


def ece(scores: list[float], targets: list[float], bins: int = 10) -> float:
    """Expected calibration error: equal-width bins of the score over [0, 1], the bin-size-weighted mean of
    |mean score - mean target| (targets may be soft, e.g. Monte Carlo returns)."""
    if not scores:
        return math.nan
    gap_score, gap_target = [0.0] * bins, [0.0] * bins
    for s, t in zip(scores, targets, strict=True):
        b = min(int(s * bins), bins - 1)  # a score of exactly 1.0 belongs to the last bin
        gap_score[b] += s
        gap_target[b] += t
    # sum over bins of (n_b / n) * |mean_b(s) - mean_b(t)| = sum |sum_b(s) - sum_b(t)| / n
    return sum(abs(a - b) for a, b in zip(gap_score, gap_target, strict=True)) / len(scores)


def critic_metrics(scores: list[float], labels: list[bool], targets: list[float] | None = None,
                   groups: list | None = None) -> dict:
    """AUROC (overall and within ``groups``), precision and recall at 0.5, and ECE (against ``targets``, or
    the labels) of one critic."""
    precision, recall = precision_recall(scores, labels)
    return {
        "n": len(scores),
        "positive_rate": sum(map(bool, labels)) / len(labels) if labels else None,
        "auroc": auroc(scores, labels),
        "auroc_within_problem": within_group_auroc(scores, labels, groups) if groups is not None else None,
        "precision": precision,
        "recall": recall,
        "ece": ece(scores, targets if targets is not None else [float(y) for y in labels]),
    }


# --- the report --------------------------------------------------------------------------------------------


def evaluate_critics(critics: Critics, records: list[dict], prm_threshold: float) -> dict[str, dict]:
    """Score every held-out row with its role's critic (one batched call each) and compute the metrics."""
    out = {}
    for role in ("value", "prm", "orm"):
        critic = critics.get(role)
        if critic is None:
            continue
        rows = critic_rows(records, role, prm_threshold, orm_rollouts=False)
        if not rows:
            continue
        scores = critic.score([r["question"] for r in rows], [r["steps"] for r in rows])
        if role == "value":
            labels = [r["label"] >= 0.5 for r in rows]
            targets = [r["label"] for r in rows]
        else:
            labels, targets = [r["label"] >= 0.5 for r in rows], None
        groups = [r["question"] for r in rows]
        out[role] = {"target": TARGETS[role], **critic_metrics(scores, labels, targets, groups)}
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def format_report(metrics: dict[str, dict], title: str = "") -> str:
    """The metrics as a plain-text table, one row per critic (``in-pb``: AUROC within a problem)."""
    head = (f"{'critic':<7} {'target':<42} {'n':>6} {'pos':>6} {'AUROC':>6} {'in-pb':>6} {'P@.5':>6} {'R@.5':>6} "
            f"{'ECE':>6}")
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for role, m in metrics.items():
        lines.append(f"{role:<7} {m['target']:<42} {m['n']:>6} {_fmt(m['positive_rate']):>6} "
                     f"{_fmt(m['auroc']):>6} {_fmt(m.get('auroc_within_problem')):>6} {_fmt(m['precision']):>6} "
                     f"{_fmt(m['recall']):>6} {_fmt(m['ece']):>6}")
    return "\n".join(lines)


def run_report(out: Path, policy, task: Task, cfg, exclude: set[str]) -> dict:
    """Sample and label held-out problems (reused from ``out/data/heldout.jsonl`` on a rerun), score them
    with the critics saved in ``out``, print the table and write ``out/report.json``.

    ``cfg`` is the run's :class:`~qstar.critics.train.CriticTrainConfig`; ``exclude`` the training questions.
    """
    from qstar.critics.load import load_critics
    from qstar.train.pretrain import write_json_atomic

    out = Path(out)
    seed = HELDOUT_STREAM + cfg.seed
    data_file = out / "data" / "heldout.jsonl"
    if data_file.is_file():
        records = read_jsonl(data_file)
    else:
        problems = draw_problems(task, cfg.report_problems, seed, exclude)
        data_file.parent.mkdir(parents=True, exist_ok=True)
        records = build_records(policy, task, problems, cfg.data, seed, data_file, desc="held-out")
    metrics = evaluate_critics(load_critics(out), records, cfg.prm_threshold)
    n_problems = len({r["problem_id"] for r in records})
    report = {
        "task": task.name,
        "split": "train (held-out seed stream)",
        "problems": n_problems,
        "solutions": len(records),
        "solution_accuracy": sum(r["correct"] for r in records) / max(len(records), 1),
        "prm_threshold": cfg.prm_threshold,
        "metrics": metrics,
    }
    print(format_report(metrics, title=f"critics on {n_problems} held-out {task.name} problems "
                                       f"({len(records)} sampled solutions)"))
    write_json_atomic(out / "report.json", report)
    print(f"report: {out / 'report.json'}")
    return report
