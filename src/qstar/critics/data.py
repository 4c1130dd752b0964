"""The critics' data: the policy's own solutions to TRAINING problems, labelled by Monte Carlo rollouts.

For every problem the policy writes ``samples_per_problem`` solutions, one step (option) at a time, so
each step keeps the policy state it ended in. From every step but the last, ``rollouts`` continuations
are sampled to the end (one batched ``extend`` call for the whole chunk, reusing the KV cache of the
prefix) and graded by the task's verifier. The Monte Carlo return of the prefix ending at step k is

    mc_k = (correct rollouts from step k + [the solution itself is correct]) / (rollouts + 1)

since the solution's own continuation after step k is one more sample of the same policy from the same
state. The last step's return is the solution's outcome (0 or 1). ``rollouts=0`` gives the cheaper
outcome-only labels.

Each sampled solution becomes one JSONL record::

    {"problem_id", "question", "answer", "steps": [...], "finished", "correct",
     "mc": [mc_1, ..., mc_n], "rollouts": [{"after": k, "steps": [...], "finished", "correct"}, ...]}

and :func:`critic_rows` turns records into each critic's rows (question, steps, label).
Problems are processed in chunks, each saved atomically, so a killed run loses one chunk at most.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qstar.errors import QstarError
from qstar.search.baselines import split_steps
from qstar.tasks.base import Problem, Task

TRAIN_STREAM, HELDOUT_STREAM = 1_000, 2_000
"""offsets of the problem streams' seeds: critic training and held-out problems come from streams that
are neither each other's nor the policy's pretraining stream (seed 0), and never from the test split"""


@dataclass
class DataConfig:
    """How solutions are sampled and labelled (the same for the training and the held-out data)."""

    samples_per_problem: int = 4
    """solutions the policy writes per problem"""
    rollouts: int = 4
    """Monte Carlo rollouts from each non-final step (0: label every prefix with the final outcome)"""
    temperature: float = 1.0
    """sampling temperature of solutions and rollouts (1.0: the policy's own distribution, whose
    returns a value function estimates)"""
    max_steps: int = 12
    """most steps of a sampled solution; a longer one stops there, unfinished (and so wrong)"""
    max_step_tokens: int = 64
    """token budget of one step"""
    max_rollout_tokens: int = 256
    """token budget of one rollout"""
    chunk_problems: int = 32
    """problems sampled and labelled together (one batched call per step); also the unit of resume"""


@dataclass
class Sampled:
    """A solution being written step by step; ``states[k]`` is the policy state after ``steps[k]``."""

    problem: Problem
    steps: list[str] = field(default_factory=list)
    states: list = field(default_factory=list)
    finished: bool = False
    """the policy ended it (EOS / budget); ``done`` is also set when the task sees a final answer"""
    done: bool = False

    @property
    def text(self) -> str:
        return "".join(self.steps)


# --- problems ----------------------------------------------------------------------------------------------


def draw_problems(task: Task, n: int, seed: int, exclude: set[str] | None = None) -> list[Problem]:
    """``n`` problems of the task's TRAIN split from the stream ``seed``, skipping questions in ``exclude``.

    Tasks that generate problems (arith) draw a fresh seeded stream; data tasks shuffle their train split.
    Test problems are never used: critics are measured on held-out train-split problems instead.
    """
    exclude = exclude or set()
    if "seed" in inspect.signature(task.problems).parameters:
        pool = task.problems("train", n + len(exclude), seed=seed)
    else:
        pool = list(task.problems("train"))
        random.Random(seed).shuffle(pool)
    chosen = [p for p in pool if p.question not in exclude][:n]
    if not chosen:
        raise QstarError(f"task {task.name}: no train problems left to sample critic data from")
    return chosen


# --- sampling and rollouts ---------------------------------------------------------------------------------


def _seeds(seed: int, chunk: int):
    """Seeds of a chunk's extend calls, fixed by (seed, chunk, call number), so a rerun samples the same."""
    calls = itertools.count()
    return lambda: (seed * 1_000_003 + chunk * 10_007 + next(calls)) % 2**31


def _add_option(task: Task, sol: Sampled, option, max_steps: int) -> None:
    if option.text:  # an EOS right after a delimiter adds nothing to the text
        sol.steps.append(option.text)
        sol.states.append(option.state)
    sol.finished = option.finished
    sol.done = option.finished or task.is_terminal(sol.text) or len(sol.steps) >= max_steps


def sample_solutions(policy, task: Task, problems: list[Problem], roots: list, cfg: DataConfig, seeds) -> list:
    """``samples_per_problem`` solutions per problem, written step by step in batched extend calls."""
    first = policy.extend(roots, cfg.samples_per_problem, temperature=cfg.temperature, until="step",
                          max_new_tokens=cfg.max_step_tokens, seed=seeds())
    sols = []
    for problem, options in zip(problems, first, strict=True):
        for option in options:
            sol = Sampled(problem)
            _add_option(task, sol, option, cfg.max_steps)
            sols.append(sol)
    while open_ := [s for s in sols if not s.done]:
        nxt = policy.extend([s.states[-1] for s in open_], 1, temperature=cfg.temperature, until="step",
                            max_new_tokens=cfg.max_step_tokens, seed=seeds())
        for sol, (option,) in zip(open_, nxt, strict=True):
            _add_option(task, sol, option, cfg.max_steps)
    return sols


def rollouts_from_steps(policy, task: Task, sols: list[Sampled], cfg: DataConfig, seeds) -> list[list[dict]]:
    """``rollouts`` continuations to the end from every non-final step of every solution, in one call."""
    owners = [(i, k) for i, s in enumerate(sols) for k in range(1, len(s.steps))]  # prefix = steps[:k]
    out: list[list[dict]] = [[] for _ in sols]
    if not owners or cfg.rollouts == 0:
        return out
    got = policy.extend([sols[i].states[k - 1] for i, k in owners], cfg.rollouts, temperature=cfg.temperature,
                        until="end", max_new_tokens=cfg.max_rollout_tokens, seed=seeds())
    for (i, k), options in zip(owners, got, strict=True):
        prefix = "".join(sols[i].steps[:k])
        for o in options:
            correct = task.is_correct(prefix + o.text, sols[i].problem)
            # cut as search cuts a rollout before the ORM scores it (mcts._orm)
            steps = [s for s in split_steps(o.text, task.step_delimiter) if s]
            out[i].append({"after": k, "steps": steps, "finished": o.finished, "correct": correct})
    return out


def mc_returns(n_steps: int, correct: bool, rollouts: list[dict], n_rollouts: int) -> list[float]:
    """Monte Carlo return after each step: the rollouts from it plus the solution's own continuation."""
    wins = [0] * n_steps
    for r in rollouts:
        wins[r["after"] - 1] += r["correct"]
    mc = [(wins[k] + correct) / (n_rollouts + 1) for k in range(n_steps - 1)]
    return mc + [float(correct)] if n_steps else []


def label_chunk(policy, task: Task, problems: list[Problem], cfg: DataConfig, seed: int, chunk: int) -> list[dict]:
    """Sample, roll out and grade one chunk of problems; returns one record per sampled solution."""
    seeds = _seeds(seed, chunk)
    roots = policy.root([task.prompt(p) for p in problems])
    try:
        sols = sample_solutions(policy, task, problems, roots, cfg, seeds)
        rolls = rollouts_from_steps(policy, task, sols, cfg, seeds)
    finally:
        policy.release(roots)  # the policy forgets every descendant state with its root
    records = []
    for sol, rs in zip(sols, rolls, strict=True):
        correct = task.is_correct(sol.text, sol.problem)
        records.append({
            "problem_id": sol.problem.id,
            "question": sol.problem.question,
            "answer": sol.problem.answer,
            "steps": sol.steps,
            "finished": sol.finished,
            "correct": correct,
            "mc": mc_returns(len(sol.steps), correct, rs, cfg.rollouts),
            "rollouts": rs,
        })
    return records


def build_records(policy, task: Task, problems: list[Problem], cfg: DataConfig, seed: int, out: Path,
                  desc: str = "sample") -> list[dict]:
    """Label every problem into ``out`` (JSONL), chunk by chunk; a rerun after a kill reuses saved chunks."""
    batches = [problems[i : i + cfg.chunk_problems] for i in range(0, len(problems), cfg.chunk_problems)]

    def make(chunk: int, batch: list[Problem]) -> list[dict]:
        return label_chunk(policy, task, batch, cfg, seed, chunk)

    def postfix(rows: list[dict], done: int) -> dict:
        return {"correct": f"{sum(r['correct'] for r in rows) / max(len(rows), 1):.3f}"}

    return write_chunked(out, batches, make, desc, postfix)


def write_chunked(out: Path, batches: list[list[Problem]], make: Callable[[int, list[Problem]], list[dict]],
                  desc: str, postfix: Callable[[list[dict], int], dict]) -> list[dict]:
    """The rows ``make(chunk index, batch)`` gives for every batch, written to ``out`` (JSONL).

    Each batch's rows are saved as soon as they exist (``out``'s ``.chunks`` sibling), so a rerun after a
    kill samples only the missing batches; ``out`` is written once all exist. A progress bar counts problems
    and shows ``postfix(rows so far, problems so far)``.
    """
    from tqdm.auto import tqdm

    parts = out.with_name(out.stem + ".chunks")
    parts.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tqdm(total=sum(map(len, batches)), desc=desc, unit="problem") as bar:
        for chunk, batch in enumerate(batches):
            part = parts / f"{chunk:05d}.jsonl"
            if not part.is_file():
                write_jsonl_atomic(part, make(chunk, batch))
            rows += read_jsonl(part)
            bar.update(len(batch))
            bar.set_postfix(postfix(rows, bar.n))
    write_jsonl_atomic(out, rows)
    shutil.rmtree(parts)
    return rows


# --- rows of each critic -----------------------------------------------------------------------------------


def critic_rows(records: list[dict], role: str, prm_threshold: float = 0.1,
                orm_rollouts: bool = True) -> list[dict]:
    """Training rows ``{"question", "steps", "label"}`` of one critic.

    value: every prefix, labelled with its Monte Carlo return (a soft label);
    prm: every prefix, labelled good (1) when its return is at least ``prm_threshold`` (Math-Shepherd's
    hard estimate; ``soft`` keeps the return); orm: every whole solution, labelled by the verifier, and,
    with ``orm_rollouts``, every rollout completed into a whole solution as well (free, graded data).
    """
    rows: list[dict] = []
    for r in records:
        if role == "orm":
            rows.append({"question": r["question"], "steps": r["steps"], "label": float(r["correct"])})
            if orm_rollouts:
                rows += [_rollout_row(r, ro) for ro in r["rollouts"]]
            continue
        for k, mc in enumerate(r["mc"], 1):
            row = {"question": r["question"], "steps": r["steps"][:k], "label": mc}
            if role == "prm":
                row = {**row, "label": float(mc >= prm_threshold), "soft": mc}
            rows.append(row)
    return rows


def _rollout_row(record: dict, rollout: dict) -> dict:
    steps = record["steps"][: rollout["after"]] + rollout["steps"]
    return {"question": record["question"], "steps": steps, "label": float(rollout["correct"])}


# --- JSONL -------------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """Write rows through a temporary file and a rename, so a kill never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)
