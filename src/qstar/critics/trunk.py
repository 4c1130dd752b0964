"""The critics' trunk: the policy, fine-tuned on its own verifier-accepted solutions before any head is fitted.

Every critic reads the trunk's last hidden state and the trunk's own log-probabilities of the solution
(:class:`~qstar.critics.model.CriticModel`). Started from the untouched policy, a critic shares the policy's
blind spots: on arith most wrong answers are confident arithmetic slips, and the policy's likelihood ranks
its own 16 samples no better than greedy decoding answers. So before the heads are fitted, the trunk is
trained further, by SFT on whole solutions the policy sampled for training problems and the verifier
accepted (rejection sampling, as the improve loop does for the policy). Its likelihood then marks a wrong
result as surprising where the policy's does not.

Measured on arith (``bench/critics.py``, 200 test problems, greedy 0.650, self-consistency@16 0.590):

| trunk | best-of-16 (ORM) | beam (PRM) | MCTS | train-critics |
|---|---|---|---|---|
| none: critics start from the policy | 0.635 | 0.645 | 0.630-0.650 | |
| 8192 x 8 samples, 2 epochs (the earlier default) | 0.800 | 0.765 | 0.775 | ~30 min |
| 32768 x 2 samples, 6 epochs (the default) | 0.845 | 0.795 | 0.820 | ~55 min (sampling 7, SFT 34) |

On ``bench/critic_ranking.py``'s 400 validation problems (16 samples each of the default policy at T=0.8,
greedy 0.688, pass@16 0.935), best-of-16 by the ORM and its within-problem AUROC: critics started from
the policy 0.688 / 0.827, no better than the policy's own mean log-probability (0.688 / 0.829); the
earlier trunk 0.797 / 0.917 (0.830 / 0.929 once the ORM was fine-tuned on the trunk's samples); the
default trunk 0.875 / 0.954 (PRM-min 0.850, value 0.848).

Not done: step-level DPO on the trunk after its SFT, from its own graded samples (a right and a wrong
sample of one problem, cut as :mod:`qstar.train.pairs` cuts them; 11,020 pairs, 6 minutes, the trunk as
reference). It sharpens the trunk's arithmetic, yet the critics fitted on it moved MCTS on 600 validation
problems from 0.813 to 0.822 only (within noise; held-out AUROC value 0.912, PRM 0.924, ORM 0.979).

Phases, each skipped on a rerun once its output exists::

    trunk/samples.jsonl    every sampled solution, graded ({"question", "prompt", "completion", "correct"});
                           sampled in chunks, each saved. The accepted ones train the trunk; all of them
                           fine-tune the ORM afterwards (``CriticTrainConfig.orm_epochs``)
    trunk/sft.checkpoints/ the SFT's state every 200 steps while it trains (removed once the trunk is
                           saved): a killed SFT resumes from the last one
    trunk/model/           the fine-tuned causal LM the three critics start from
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qstar.critics.data import draw_problems, read_jsonl, write_chunked
from qstar.tasks.base import Problem, Task

TRUNK_STREAM = 4_000
"""offset of the trunk's problem stream: apart from the critics' data (1000), their report (2000),
``qstar dpo``'s pairs (3000) and the improve loop (7000 and up)"""


@dataclass
class TrunkConfig:
    """How the trunk is fine-tuned before the heads (``problems = 0``: the critics start from the policy)."""

    problems: int = 32768
    """training problems the policy samples whole solutions for (0: no trunk phase)"""
    samples: int = 2
    """solutions sampled per problem; the verifier keeps the correct ones. On arith a correct solution is
    written one way only, so the accepted rows of one problem are copies: a budget spread over many problems
    gives more distinct rows (32768 x 2: 27k rows of 19k problems) than 8192 x 8 (the earlier default, 27k
    rows of at most 8192 problems; 5.5 min of sampling against 6.5). At 2 epochs the two trained equally good
    trunks (per-step arithmetic 0.941 against 0.938); more epochs need the distinct rows (see ``epochs``)"""
    temperature: float = 1.0
    """sampling temperature (the policy's own distribution: the accepted solutions stay in its style)"""
    max_new_tokens: int = 256
    """token budget of one solution"""
    epochs: float = 6.0
    """SFT epochs over the accepted solutions. The trunk learns arithmetic slowly: 6 epochs (2538 steps, 34
    min on two cores) against 2 (the earlier default, 846 steps, 12 min) raised the trunk's teacher-forced
    per-step arithmetic from 0.937 to 0.959 and its greedy accuracy from 0.807 to 0.873 (``bench/errors.py``,
    300 validation problems), the held-out report's value / PRM / ORM AUROC from 0.895 / 0.917 / 0.958 to
    0.915 / 0.925 / 0.976, and MCTS with the default critics from 0.800 to 0.813 on 600 validation problems
    (0.795 -> 0.820 on the 200 test problems). In the earlier hand-written prototype, 1 epoch at lr 3e-4
    gave best-of-16 (by the trunk's summed log-probability) 0.683, 2 at 1e-3 0.755, 4 at 1e-3 0.785.
    Far more steps on gold data bound what a trunk can give: 1500 more steps on fresh training problems'
    *reference* solutions (16 min) raised per-step arithmetic to 0.998 and the trunk's greedy accuracy on
    the test problems to 0.995, yet critics fitted on that trunk took MCTS on the test problems only to
    0.855-0.875 (best-of-16 by its ORM: 0.895), short of greedy + 25. Not done: those are solutions the
    policy never wrote"""
    lr: float = 1e-3
    """peak SFT learning rate"""
    batch_size: int = 64
    """SFT rows per step"""
    order: Literal["random", "by_length"] = "random"
    """SFT batches: drawn at random, or TRL's batches of rows of similar length (the improve loop's, a quarter
    less padding). By length, a run of consecutive steps sees only the longest (hardest) problems, and the
    trunk ranked worse: on the prototype's 400 validation problems, the trunk's summed log-probability gave
    best-of-16 0.7325 (within-problem AUROC 0.867) by length with TRL's linear schedule, 0.7125 (0.843) by
    length with ``schedule="cosine"``, and 0.7475 (0.884) with both defaults, for 38% more SFT time"""
    schedule: Literal["cosine", "linear"] = "cosine"
    """learning rate: cosine decay after 30 warm-up steps with weight decay 0.01 (the prototype's), or TRL's
    linear decay without warm-up or weight decay"""
    chunk_problems: int = 256
    """problems sampled together (one batched call); also the unit of resume"""


def sample_graded(policy, task: Task, problems: list[Problem], cfg: TrunkConfig, seed: int,
                  out: Path) -> list[dict]:
    """Sample ``cfg.samples`` whole solutions per problem and grade each with the verifier, as rows
    ``{"question", "prompt", "completion", "correct"}`` in ``out`` (JSONL). Chunks are saved as they finish,
    so a killed run resumes at the first missing one."""
    batches = [problems[i : i + cfg.chunk_problems] for i in range(0, len(problems), cfg.chunk_problems)]

    def make(chunk: int, batch: list[Problem]) -> list[dict]:
        return _graded(policy, task, batch, cfg, seed * 1_000_003 + chunk)

    def postfix(rows: list[dict], done: int) -> dict:
        return {"accepted": f"{sum(r['correct'] for r in rows) / max(1, len(rows)):.3f}"}

    return write_chunked(out, batches, make, "trunk data", postfix)


def _graded(policy, task: Task, problems: list[Problem], cfg: TrunkConfig, seed: int) -> list[dict]:
    prompts = [task.prompt(p) for p in problems]
    roots = policy.root(prompts)
    try:
        options = policy.extend(roots, cfg.samples, temperature=cfg.temperature, until="end",
                                max_new_tokens=cfg.max_new_tokens, seed=seed % 2**31)
    finally:
        policy.release(roots)
    return [{"question": problem.question, "prompt": prompt, "completion": o.text,
             "correct": bool(o.finished and task.is_correct(o.text, problem))}
            for prompt, problem, opts in zip(prompts, problems, options, strict=True) for o in opts]


def accepted(samples: list[dict]) -> list[dict]:
    """The SFT rows ``{"prompt", "completion"}`` of the graded samples the verifier accepted."""
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in samples if r["correct"]]


SAMPLES = "samples.jsonl"
"""the trunk phase's graded samples, inside its directory"""


MODEL = "model"
"""the trunk's folder inside its phase directory: the causal LM the critics start from"""
CHECKPOINTS = "sft.checkpoints"
"""the SFT's checkpoints inside the phase directory while it trains: a killed SFT resumes from the last one"""
SUMMARY = "trunk_summary.json"
"""written into the model folder last: its presence marks the phase done"""


BEFORE_ORDER = {"order": "by_length", "schedule": "linear"}
"""how a trunk was trained by runs saved before ``order`` and ``schedule`` existed"""


def trainer_settings(cfg: TrunkConfig) -> dict:
    """The ``SFTConfig`` settings that ``order`` and ``schedule`` stand for (cosine: the prototype's warm-up
    and weight decay too)."""
    from qstar.train.finetune import batch_settings

    settings = batch_settings(cfg.order, cfg.schedule)
    if cfg.schedule == "cosine":
        settings |= {"warmup_steps": 30, "weight_decay": 0.01}
    return settings


def is_trained(out: Path) -> bool:
    return (out / MODEL / SUMMARY).is_file()


def train_trunk(policy_dir: Path, get_policy, task: Task, out: Path, cfg: TrunkConfig, seed: int) -> dict:
    """Sample, grade and fine-tune into ``out`` (``samples.jsonl``, ``model/``). Samples already saved (all
    of them, or the chunks of a killed run) are reused; the caller skips a trained trunk.

    ``get_policy()`` returns the loaded policy (loaded only when sampling is still to do).
    The SFT checkpoints into ``sft.checkpoints/`` and a killed one resumes from there.
    Returns the SFT summary (steps, losses, rows), also saved as ``model/trunk_summary.json``.
    """
    from qstar.train.finetune import sft

    data = out / SAMPLES
    if data.is_file():
        samples = read_jsonl(data)
    else:
        out.mkdir(parents=True, exist_ok=True)
        problems = draw_problems(task, cfg.problems, TRUNK_STREAM + seed)
        samples = sample_graded(get_policy(), task, problems, cfg, seed, data)
    summary = sft(policy_dir, accepted(samples), out / MODEL, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                  seed=seed, progress="trunk SFT", overrides=trainer_settings(cfg), checkpoints=out / CHECKPOINTS)
    (out / MODEL / SUMMARY).write_text(json.dumps(summary, indent=2))
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # the trunk is saved: resuming is done
    return summary
