"""The critics' trunk: the policy, fine-tuned on its own verifier-accepted solutions before any head is fitted.

Every critic reads the trunk's last hidden state and the trunk's own log-probabilities of the solution
(:class:`~qstar.critics.model.CriticModel`). Started from the untouched policy, a critic shares the policy's
blind spots: on arith most wrong answers are confident arithmetic slips, and the policy's likelihood ranks
its own 16 samples no better than greedy decoding answers. So before the heads are fitted, the trunk is
trained further, by SFT on whole solutions the policy sampled for training problems and the verifier
accepted (rejection sampling, as the improve loop does for the policy). Its likelihood then marks a wrong
result as surprising where the policy's does not.

Measured with the default ``qstar train-critics --policy default --task arith`` (20 min on two cores, 17 of
them here: sampling 5.5 min, SFT 11.5 min), against critics started from the policy itself:

- ``bench/critic_ranking.py`` (400 validation problems, 16 samples each of the default policy at T=0.8,
  greedy 0.688, pass@16 0.935): best-of-16 by the ORM 0.688 -> 0.797, within-problem AUROC 0.827 ->
  0.917. Critics started from the policy ranked no better than its own mean log-probability (0.688,
  0.829).
- ``bench/critics.py`` (200 test problems, greedy 0.650): best-of-16 (ORM) 0.635 -> 0.780, beam (PRM)
  0.645 -> 0.765, MCTS 0.630-0.650 -> 0.760 (self-consistency@16: 0.590).

Phases, each skipped on a rerun once its output exists::

    trunk/samples.jsonl    every sampled solution, graded ({"question", "prompt", "completion", "correct"});
                           sampled in chunks, each saved. The accepted ones train the trunk; all of them
                           fine-tune the ORM afterwards (``CriticTrainConfig.orm_epochs``)
    trunk/model/           the fine-tuned causal LM the three critics start from
"""

from __future__ import annotations

import json
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

    problems: int = 8192
    """training problems the policy samples whole solutions for (0: no trunk phase)"""
    samples: int = 8
    """solutions sampled per problem; the verifier keeps the correct ones. On arith a correct solution is
    written one way only, so the accepted rows of one problem are copies. Spreading the same sampling budget
    over more problems does not help: 32768 problems x 2 samples (27k accepted rows, 3x the distinct
    problems, the same 846 SFT steps; sampling 6.5 min against 5.5) gave per-step arithmetic 0.941 against
    0.938 (teacher-forced on 400 validation references) and best-of-16 by the trunk's summed log-probability
    0.810 against 0.805. What the trunk lacks is SFT steps, not problems (see ``epochs``)"""
    temperature: float = 1.0
    """sampling temperature (the policy's own distribution: the accepted solutions stay in its style)"""
    max_new_tokens: int = 256
    """token budget of one solution"""
    epochs: float = 2.0
    """SFT epochs over the accepted solutions. In a prototype (a hand-written loop, ranking 16 samples by the
    trunk's summed log-probability on 400 validation problems), 1 epoch at lr 3e-4 gave best-of-16 0.683, 2
    at 1e-3 0.755 and 4 at 1e-3 0.785: 4 epochs add ~3 points for ~8 more minutes. Far more steps make the
    trunk a near-perfect arithmetician, and a solver 35 points better than the policy: 1500 more steps on
    fresh training problems' reference solutions (16 min) raised per-step arithmetic 0.937 -> 0.998,
    best-of-16 by its log-probability 0.805 -> 0.895, and its greedy accuracy on the test problems to 0.995.
    Not done: those are gold solutions the policy never saw, and even critics fitted on that trunk took
    MCTS on the 200 test problems only to 0.855 (best-of-16 by its ORM: 0.895), short of greedy + 25"""
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
                  seed=seed, progress="trunk SFT", overrides=trainer_settings(cfg))
    (out / MODEL / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary
