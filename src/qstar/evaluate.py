"""``qstar eval``: run one method over a task's test problems; a table on screen, ``results.json`` on disk."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from qstar.errors import QstarError
from qstar.metrics import pass_at_k, wilson_interval
from qstar.search.protocols import SearchResult
from qstar.tasks.base import Problem, Task


@dataclass
class EvalConfig:
    """One evaluation; saved in ``results.json`` so the figure can be reproduced."""

    model: str = "default"
    """policy directory (any Hugging Face causal LM saved on disk), or "default" for the shipped one for the task"""
    task: str = "arith"
    """task name"""
    data: str | None = None
    """JSONL file for data tasks (gsm8k, math500, humaneval)"""
    task_options: dict = field(default_factory=dict)
    """options of the task's generator (e.g. {"max_steps": 4} for arith); must match what the policy saw"""
    split: str = "test"
    """split to evaluate"""
    method: str = "greedy"
    """greedy | sample | best-of-n | self-consistency | beam | mcts"""
    n: int = 16
    """samples per problem for sampling methods"""
    limit: int | None = None
    """evaluate only the first K problems"""
    batch_problems: int = 16
    """problems searched together (their forward passes are batched)"""
    temperature: float = 0.8
    """sampling temperature"""
    max_new_tokens: int = 256
    """token budget of one solution"""
    seed: int = 0
    """sampler seed"""
    critics: str | None = None
    """directory of trained critics (for best-of-n, weighted votes, beam and MCTS)"""
    options: dict = field(default_factory=dict)
    """extra fields of the method's config (e.g. {"n_simulations": 32})"""


def method_config(cfg: EvalConfig):
    """The method's own config dataclass, filled from the evaluation config and ``options``."""
    from qstar.search import METHODS

    if cfg.method not in METHODS:
        raise QstarError(f"unknown method {cfg.method!r}; choose one of: {', '.join(METHODS)}")
    strategy, config_cls = METHODS[cfg.method]
    names = {f.name for f in fields(config_cls)}
    shared = {"n": cfg.n, "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    values = {k: v for k, v in shared.items() if k in names}
    unknown = set(cfg.options) - names
    if unknown:
        raise QstarError(f"method {cfg.method} has no option(s) {sorted(unknown)}; it has {sorted(names)}")
    values.update(cfg.options)
    return strategy, config_cls(**values)


def evaluate(
    problems: list[Problem], task: Task, policy, critics, strategy, method_cfg, batch: int, progress: bool = True,
    checkpoint: Path | None = None,
) -> list[SearchResult]:
    """Run ``strategy`` over ``problems`` in batches, with a progress bar.

    With ``checkpoint`` (a folder), each batch's results are saved there as soon as they exist, and batches
    already saved are read back instead of searched again: a killed evaluation loses one batch at most.
    Every strategy seeds each call from its config alone, so a resumed run gives what an uninterrupted one
    would (the caller checks that the folder belongs to the same evaluation).
    """
    from tqdm.auto import tqdm

    results: list[SearchResult] = []
    correct = 0
    with tqdm(total=len(problems), desc="eval", unit="problem", disable=not progress) as bar:
        for i in range(0, len(problems), batch):
            chunk = problems[i : i + batch]
            part = checkpoint / f"{i // batch:05d}.json" if checkpoint is not None else None
            if part is not None and part.is_file():
                got = [SearchResult.from_dict(d) for d in json.loads(part.read_text())]
            else:
                got = strategy(chunk, task, policy, critics, method_cfg)
                if part is not None:
                    from qstar.train.pretrain import write_json_atomic

                    write_json_atomic(part, [r.to_dict() for r in got])
            results.extend(got)
            bar.update(len(chunk))
            if progress:  # grade the new batch only: grading may run code in a sandbox
                correct += sum(_correct(task, r, p) for r, p in zip(got, chunk, strict=True))
                bar.set_postfix(acc=f"{correct / len(results):.3f}")
    return results


def _correct(task: Task, result: SearchResult, problem: Problem) -> bool:
    """Grade the strategy's answer through its chosen trajectory (strategies choose one that states it)."""
    return result.answer is not None and task.is_correct(result.trajectory.text, problem)


def grade_all(task: Task, solutions: list[str], problems: list[Problem]) -> list[bool]:
    """Grade many solutions at once: batched (and parallel) where the task can, e.g. sandboxed code."""
    batch = getattr(task, "is_correct_batch", None)
    if batch is not None:
        return list(batch(solutions, problems))
    return [task.is_correct(s, p) for s, p in zip(solutions, problems, strict=True)]


def summarise(problems: list[Problem], task: Task, results: list[SearchResult], wall_s: float, n: int) -> dict:
    """The ``summary`` and ``records`` of ``results.json``."""
    # One batched grading call for every chosen solution and every candidate.
    texts, owners = [], []
    for i, r in enumerate(results):
        texts += [r.trajectory.text] + [c.text for c in r.candidates]
        owners += [i] * (1 + len(r.candidates))
    verdicts = grade_all(task, texts, [problems[i] for i in owners])
    per: dict[int, list[bool]] = {}
    for i, v in zip(owners, verdicts, strict=True):
        per.setdefault(i, []).append(v)
    records = []
    for i, (p, r) in enumerate(zip(problems, results, strict=True)):
        ok, cand_ok = r.answer is not None and per[i][0], per[i][1:]
        records.append({
            "id": p.id,
            "question": p.question,
            "reference": p.answer,
            "prediction": r.answer,
            "solution": r.trajectory.text,
            "correct": bool(ok),
            "tokens": r.cost.generated_tokens,
            "computed_tokens": r.cost.computed_tokens,
            "n_candidates": len(r.candidates),
            "n_correct_candidates": sum(cand_ok),
        })
    m = len(problems)
    k = sum(r["correct"] for r in records)
    lo, hi = wilson_interval(k, m)
    summary = {
        "accuracy": k / m if m else 0.0,
        "ci95": [lo, hi],
        "n_problems": m,
        "mean_tokens": sum(r["tokens"] for r in records) / max(m, 1),
        "mean_computed_tokens": sum(r["computed_tokens"] for r in records) / max(m, 1),
        "wall_s": wall_s,
    }
    n_max = max((r["n_candidates"] for r in records), default=0)
    if n_max > 1:
        summary["n"] = n_max
        summary["pass_at_n"] = sum(r["n_correct_candidates"] > 0 for r in records) / m
        # Unbiased pass@k (Chen et al., 2021) from the n samples of each problem.
        summary["pass_at_k"] = {
            str(kk): sum(pass_at_k(r["n_candidates"], r["n_correct_candidates"], kk) for r in records) / m
            for kk in (1, 5, 10, n_max) if kk <= min(r["n_candidates"] for r in records)
        }
    return {"summary": summary, "records": records}


def format_table(rows: list[dict], title: str = "") -> str:
    """A plain-text table of method summaries (accuracy with 95% interval, tokens, wall time)."""
    head = f"{'method':<18} {'accuracy':>9} {'95% CI':>15} {'pass@n':>7} {'tokens/problem':>15} {'wall s':>8}"
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for r in rows:
        s = r["summary"]
        ci = f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
        pn = f"{s['pass_at_n']:.3f}" if "pass_at_n" in s else "-"
        lines.append(
            f"{r['name']:<18} {s['accuracy']:>9.3f} {ci:>15} {pn:>7} {s['mean_tokens']:>15.1f} {s['wall_s']:>8.1f}"
        )
    return "\n".join(lines)


def run_eval(cfg: EvalConfig, out: str | Path | None, progress: bool = True, policy=None, critics=None) -> dict:
    """Load, evaluate, print the table and write ``out/results.json``; returns the results dict."""
    from qstar.search.common import Critics
    from qstar.search.single import default_critic_terms
    from qstar.tasks import get_task

    task = get_task(cfg.task, cfg.data, **cfg.task_options)
    method_config(cfg)  # an unknown method or option fails before anything loads
    problems = task.problems(cfg.split, cfg.limit)
    if not problems:
        raise QstarError(f"task {cfg.task} has no {cfg.split} problems")
    if critics is None:
        critics = load_critics(cfg.critics) if cfg.critics else Critics()
    cfg.options = default_critic_terms(cfg.method, critics, cfg.options)
    strategy, mcfg = method_config(cfg)
    if policy is None:
        policy = load_policy(cfg.model, task)
    partial = _partial(Path(out), {"config": asdict(cfg), "method_config": asdict(mcfg)}) if out is not None else None
    results = evaluate(problems, task, policy, critics, strategy, mcfg, cfg.batch_problems, progress, partial)
    wall = sum(r.cost.wall_s for r in results)  # the searches' own time, restored batches included
    report = {"config": asdict(cfg), "method_config": asdict(mcfg), **summarise(problems, task, results, wall, cfg.n)}
    report["summary"]["method"] = cfg.method
    print(format_table([{"name": cfg.method, **report}], title=f"{cfg.task} ({cfg.split}, {len(problems)} problems)"))
    if out is not None:
        from qstar.train.pretrain import write_json_atomic

        write_json_atomic(Path(out) / "results.json", report)
        shutil.rmtree(partial)  # the results are saved: nothing is left to resume
        print(f"results: {Path(out) / 'results.json'}")
    return report


PARTIAL = "eval.partial"
"""the folder in ``--out`` holding a running evaluation's finished batches, removed once results.json exists"""


def _partial(out: Path, config: dict) -> Path:
    """``out/eval.partial``, holding ``config``: a new one, or that of a killed run of the same evaluation
    (whose batches are reused). One left by another evaluation is refused, naming what differs."""
    from qstar.train.pretrain import config_differences, write_json_atomic

    folder = out / PARTIAL
    saved = folder / "config.json"
    config = json.loads(json.dumps(config))  # as it reads back (tuples become lists)
    batches = sorted(folder.glob("0*.json"))
    if saved.is_file() and batches:
        diffs = config_differences(json.loads(saved.read_text()), config)
        if diffs:
            raise QstarError(f"{folder} holds batches of another evaluation ({'; '.join(diffs)}); remove it to "
                             f"start over, or use another --out")
        print(f"resuming: {len(batches)} finished batches in {folder}")
    else:  # nothing finished yet: whatever config is there may be replaced
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(saved, config)
    return folder


def load_policy(model: str, task: Task, **options):
    """The Hugging Face policy backend for a model directory, stopping options at the task's delimiter."""
    from qstar.models.hf_policy import HFPolicy
    from qstar.models.load import load_causal_lm

    lm, tok = load_causal_lm(model, task=task.name)
    return HFPolicy(lm, tok, task.step_delimiter, **options)


def load_critics(path: str | None):
    """Trained critics from a directory written by ``qstar train-critics``."""
    from qstar.search.common import Critics

    if path is None:
        return Critics()
    p = Path(path)
    if not p.is_dir():
        raise QstarError(f"--critics {path}: no such directory")
    try:
        from qstar.critics.load import load_critics as _load
    except ImportError as err:
        raise QstarError("trained critics are not available in this version of qstar") from err
    return _load(p)

