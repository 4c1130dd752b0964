"""``qstar train-critics``: sample from the policy, label by Monte Carlo rollouts, train value, PRM and ORM.

Phases, each skipped on a rerun once its output exists (every output is written atomically)::

    data/train.jsonl      sampled solutions on training problems with their rollouts (data.py)
    trunk/                the policy's graded samples and the policy fine-tuned on the accepted ones, which
                          every critic starts from (trunk.py; ``trunk.problems = 0`` starts them from the
                          policy itself)
    value/ prm/ orm/      the three critics (model.py), each with its train_summary.json
    report.json           AUROC / precision / recall / ECE on held-out problems (report.py)

Each critic starts from the trunk and is trained in two stages, both minimising binary cross-entropy
against its labels:

1. a linear probe: the head alone, fitted by full-batch L-BFGS to the frozen trunk's features (the
   last token's hidden state and the trunk's log-probabilities of the solution). Every critic starts
   from the same trunk, so features are computed once per distinct text and shared by the three;
2. optionally (``steps > 0``) fine-tuning of the whole model with transformers' ``Trainer``. Not TRL:
   TRL 1.16 has no PRM trainer any more, and its ``RewardTrainer`` fits a pairwise Bradley-Terry loss on
   chosen / rejected pairs, while every critic here is a pointwise P(correct) fitted to (soft) labels.
   It is off by default: on the few thousand rows a CPU budget allows it overfits (see ``steps``).

The ORM then gets a third stage (``orm_epochs``): the whole model is fine-tuned on every solution the
trunk phase sampled, graded by the verifier. Those labels cost nothing, and 65k solutions of 32768
questions are too many to memorise, so there fine-tuning helps where it hurt on the critics' own rows.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from qstar.critics import trunk
from qstar.critics.data import (
    TRAIN_STREAM,
    DataConfig,
    build_records,
    critic_rows,
    draw_problems,
    read_jsonl,
)
from qstar.critics.model import (
    ROLES,
    CriticSpec,
    HFCritic,
    collate,
    critic_from_policy,
    critic_loss,
    prompt_template,
)
from qstar.critics.trunk import TrunkConfig
from qstar.errors import QstarError
from qstar.tasks.base import Task

PROBE_L2 = 1e-3
"""L2 penalty on the head's weight during the linear probe"""


@dataclass
class CriticTrainConfig:
    """Everything that determines a critics run; saved as ``critics_config.json`` in the output directory."""

    problems: int = 512
    """training problems (from the task's train split) the policy writes solutions for"""
    data: DataConfig = field(default_factory=DataConfig)
    """how solutions are sampled and labelled"""
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    """how the policy is fine-tuned on its verified solutions before the heads (``problems = 0``: off)"""
    prm_threshold: float = 0.1
    """a step is good when at least this fraction of its Monte Carlo samples (rollouts + the solution itself)
    end correct; 0.1 makes one correct sample enough for up to 9 rollouts: Math-Shepherd's hard estimate"""
    orm_rollouts: bool = True
    """also train the ORM on the rollouts, completed into whole solutions (graded for free)"""
    probe_rows: int = 8192
    """rows (at most) the head is fitted on, by a linear probe on the policy's frozen features"""
    steps: int = 0
    """fine-tuning steps of the whole model after the probe (0: the head alone). Off by default: on arith
    every setting we tried (lr 1e-4 to 1e-3, 150-300 steps) lowered held-out AUROC, by 0.01-0.07, as the
    model learnt which answers are right for the training questions instead of how to judge a solution"""
    batch_size: int = 32
    """rows per fine-tuning step"""
    lr: float = 1e-4
    """peak fine-tuning learning rate (cosine decay after warm-up)"""
    warmup_steps: int = 10
    """linear warm-up steps"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    policy_features: bool = True
    """the head also reads the policy's log-probabilities of the solution tokens (see model.CriticModel)"""
    orm_epochs: float = 1.0
    """after its probe, the ORM is fine-tuned whole (trunk and head) for this many epochs over every solution
    the trunk phase sampled, graded by the verifier (2 x 32768 by default: free labels, and enough questions
    that the model learns to judge solutions rather than memorise answers). 0 keeps the probe alone, as
    does a run without a trunk phase. It costs ~11 minutes on two cores (1,024 steps). With the earlier
    default trunk (8192 x 8 samples, 2 epochs), ``bench/critic_ranking.py`` (400 validation problems)
    gives the ORM's best-of-16 0.797 -> 0.830 and within-problem AUROC 0.917 -> 0.929; the held-out
    report's ORM AUROC 0.954 -> 0.958, P/R at 0.5 0.915/0.852 -> 0.933/0.892, ECE 0.039 -> 0.023. lr 3e-4
    was worse (best-of-16 0.69 after 256 steps: it undoes the trunk). The same fine-tuning of the value and the PRM on the samples'
    prefixes (each labelled by the samples through it: their mean outcome, or whether one is right) is not
    done: on 600 validation problems it moved MCTS from 0.770 (this ORM alone) to 0.778, and beam search
    by the PRM from 0.758 to 0.778, for 20 more minutes of training"""
    orm_lr: float = 1e-4
    """peak learning rate of the ORM's fine-tuning (30 warm-up steps, then cosine decay)"""
    orm_batch_size: int = 64
    """solutions per step of the ORM's fine-tuning"""
    report_problems: int = 128
    """held-out problems (train split, another seed stream) for report.json; 0 skips the report"""
    seed: int = 0
    """seed of the problem streams, the sampler and the training order"""
    threads: int | None = None
    """torch CPU threads; None keeps the process's setting (torch's default: one per core). Set 1 when another
    job shares the cores: OpenMP threads that spin-wait for a busy core make two slower than one"""

    @classmethod
    def quick(cls) -> CriticTrainConfig:
        """A tiny run for smoke tests: seconds, not minutes."""
        data = DataConfig(samples_per_problem=2, rollouts=1, max_steps=6, max_step_tokens=24,
                          max_rollout_tokens=48, chunk_problems=4)
        trunk = TrunkConfig(problems=4, samples=2, epochs=1.0, batch_size=4, chunk_problems=2)
        return cls(problems=4, data=data, trunk=trunk, report_problems=3)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CriticTrainConfig:
        d = dict(d)
        d["data"] = DataConfig(**d.get("data", {}))
        d["trunk"] = TrunkConfig(**d.get("trunk", {}))
        return cls(**d)


def check_config(cfg: CriticTrainConfig) -> None:
    d = cfg.data
    positive = {"--problems": cfg.problems, "--samples-per-problem": d.samples_per_problem,
                "batch_size": cfg.batch_size, "max_steps": d.max_steps, "chunk_problems": d.chunk_problems,
                "threads": 1 if cfg.threads is None else cfg.threads}
    for name, value in positive.items():
        if value < 1:
            raise QstarError(f"train-critics: {name} must be at least 1, got {value}")
    if min(d.rollouts, cfg.report_problems, cfg.steps, cfg.probe_rows, cfg.trunk.problems) < 0:
        raise QstarError("train-critics: --rollouts, --steps, --trunk-problems, probe_rows and report_problems "
                         "cannot be negative")
    t = cfg.trunk
    if t.problems and min(t.samples, t.batch_size, t.chunk_problems, t.max_new_tokens) < 1:
        raise QstarError("train-critics: the trunk's samples, batch_size, chunk_problems and max_new_tokens "
                         "must be at least 1")
    if t.problems and not (t.epochs > 0 and t.lr > 0):
        raise QstarError(f"train-critics: the trunk's epochs and lr must be positive, got {t.epochs}, {t.lr}")
    from qstar.train.finetune import SFT_ORDERS, SFT_SCHEDULES

    if t.order not in SFT_ORDERS or t.schedule not in SFT_SCHEDULES:
        raise QstarError(f"train-critics: the trunk's order must be random or by_length and its schedule cosine "
                         f"or linear, got {t.order!r}, {t.schedule!r}")
    if not cfg.steps and not cfg.probe_rows:
        raise QstarError("train-critics: nothing would train the critics (steps and probe_rows are both 0)")
    if cfg.orm_epochs < 0 or cfg.orm_lr <= 0 or cfg.orm_batch_size < 1:
        raise QstarError(f"train-critics: orm_epochs must be at least 0, orm_lr positive and orm_batch_size at "
                         f"least 1, got {cfg.orm_epochs}, {cfg.orm_lr}, {cfg.orm_batch_size}")
    if not 0 < cfg.prm_threshold <= 1:
        raise QstarError(f"train-critics: prm_threshold must be in (0, 1], got {cfg.prm_threshold}")


# --- training one critic -----------------------------------------------------------------------------------


class CriticCollator:
    """Right-pads a batch (``CriticModel`` reads each row's last real token); labels are float."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        return collate(rows, self.pad_id)


FeatureCache = dict
"""encoded text (token ids + solution start) -> the untouched trunk's features of it. Every critic starts
from the same trunk, so value, PRM and ORM rows with the same text (all value and PRM rows, and the
ORM's whole solutions) are run through the model once."""


def probe_features(critic: HFCritic, rows: list[dict], cache: FeatureCache) -> torch.Tensor:
    """(N, D) features of ``rows`` under the critic's current (not yet fine-tuned) model, via ``cache``."""
    from tqdm.auto import tqdm

    key = _text_key
    todo = sorted({key(r): r for r in rows if key(r) not in cache}.values(), key=lambda r: len(r["input_ids"]))
    with torch.no_grad():
        for i in tqdm(range(0, len(todo), 64), desc=f"features {critic.name}", unit="batch", leave=False):
            chunk = todo[i : i + 64]  # sorted by length: little padding
            batch = collate(chunk, critic.pad_id)
            feats = critic.model.features(batch["input_ids"], batch["attention_mask"], batch["solution_start"])
            cache.update(zip(map(key, chunk), feats, strict=True))
    return torch.stack([cache[key(r)] for r in rows])


def _text_key(row: dict) -> tuple:
    return (row["solution_start"], *row["input_ids"])


def fit_head(critic: HFCritic, data: list[dict], cfg: CriticTrainConfig, cache: FeatureCache) -> dict:
    """Linear probe: fit the head alone, by full-batch L-BFGS on BCE, to the frozen model's features of up
    to ``probe_rows`` rows. Returns the probe's loss and that of predicting the base rate, on those rows.

    With ``steps = 0`` this is the whole training; before fine-tuning it starts the head calibrated
    instead of spending the first steps on it while the features drift (LP-FT, Kumar et al. 2022).
    """
    rows = random.Random(cfg.seed).sample(data, min(len(data), cfg.probe_rows))
    x = probe_features(critic, rows, cache)  # (N, D)
    y = torch.tensor([r["labels"] for r in rows], dtype=torch.float32)  # (N,)
    head = critic.model.head
    with torch.no_grad():
        base_loss = critic_loss(head(x).squeeze(-1), y).item()  # the head starts at the base rate
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        # a little L2 keeps the probe finite when a feature separates the rows perfectly
        loss = critic_loss(head(x).squeeze(-1), y) + PROBE_L2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        probe_loss = critic_loss(head(x).squeeze(-1), y).item()
    return {"probe_rows": len(rows), "base_loss": base_loss, "probe_loss": probe_loss}


def _progress(desc: str, total: int):
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """A progress bar with the running loss (Trainer's own shows no loss)."""

        def on_train_begin(self, args, state, control, **kw):
            self.bar = tqdm(total=total, desc=desc, unit="step")

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    return Progress()


def finetune(critic: HFCritic, data: list[dict], steps: int, lr: float, batch_size: int, warmup_steps: int,
             cfg: CriticTrainConfig, checkpoints: Path | None = None) -> dict:
    """``steps`` steps of BCE on the whole model (trunk and head) with transformers' Trainer, on random
    batches, cosine decay after ``warmup_steps``.

    With ``checkpoints`` (a directory) the Trainer saves its state there every ``CHECKPOINT_STEPS`` steps and
    a rerun resumes from the last one (same batches, same schedule); the caller removes it once the critic
    is saved.
    """
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.trainer_utils import get_last_checkpoint

    with tempfile.TemporaryDirectory() as scratch:
        saving = ({"save_strategy": "steps", "save_steps": CHECKPOINT_STEPS, "save_total_limit": 1} if checkpoints
                  else {"save_strategy": "no"})
        args = TrainingArguments(
            output_dir=str(checkpoints or scratch), max_steps=steps, per_device_train_batch_size=batch_size,
            learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=warmup_steps,
            weight_decay=cfg.weight_decay, logging_steps=max(1, min(10, steps // 10)), **saving,
            seed=cfg.seed, data_seed=cfg.seed, use_cpu=True, bf16=False, disable_tqdm=True, report_to=[],
            dataloader_num_workers=0, remove_unused_columns=False,
        )
        trainer = _critic_trainer()(model=critic.model.train(), args=args, train_dataset=data,
                                    data_collator=CriticCollator(critic.pad_id),
                                    callbacks=[_progress(f"fine-tune {critic.name}", steps)])
        trainer.remove_callback(PrinterCallback)  # our progress bar replaces the log printer
        trainer.remove_callback(ProgressCallback)
        last = get_last_checkpoint(str(checkpoints)) if checkpoints and checkpoints.is_dir() else None
        trainer.train(resume_from_checkpoint=last)
    critic.model.eval()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None, "resumed_from": last and Path(last).name}


CHECKPOINT_STEPS = 128
"""a resumable fine-tuning saves its state this often (~1 minute of the ORM's on two cores)"""


def _critic_trainer():
    """transformers' Trainer, saving checkpoints with safetensors' shared-tensor aware ``save_model``.

    Why: the Trainer saves a model that is not a ``PreTrainedModel`` (``CriticModel`` wraps one) as a
    plain state dict, and safetensors refuses one whose LM ties its input and output embeddings.
    """
    import safetensors.torch
    from transformers import Trainer

    class CriticTrainer(Trainer):
        def _save(self, output_dir: str | None = None, state_dict=None) -> None:
            path = Path(output_dir or self.args.output_dir)
            path.mkdir(parents=True, exist_ok=True)
            safetensors.torch.save_model(self.model, str(path / "model.safetensors"))

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            safetensors.torch.load_model(model or self.model, str(Path(resume_from_checkpoint) / "model.safetensors"))

    return CriticTrainer


def train_critic(critic: HFCritic, rows: list[dict], cfg: CriticTrainConfig, cache: FeatureCache | None = None) -> dict:
    """Fit ``critic`` in place to ``rows`` (question, steps, label): a linear probe, then ``cfg.steps`` of
    fine-tuning if any. Returns a summary of the losses."""
    if not rows:
        raise QstarError(f"no training rows for the {critic.name} critic; sample more problems")
    t0 = time.perf_counter()
    data = [{**critic.encode(r["question"], r["steps"]), "labels": r["label"]} for r in rows]
    base_rate = sum(r["label"] for r in rows) / len(rows)
    critic.model.init_head(base_rate)
    summary = {"role": critic.name, "rows": len(rows), "base_rate": base_rate}
    if cfg.probe_rows:
        summary |= fit_head(critic, data, cfg, {} if cache is None else cache)
    if cfg.steps:
        summary |= finetune(critic, data, cfg.steps, cfg.lr, cfg.batch_size, cfg.warmup_steps, cfg)
    return summary | {"wall_s": time.perf_counter() - t0}


# --- the whole run -----------------------------------------------------------------------------------------


def _start(out: Path, cfg: CriticTrainConfig, policy_dir: Path, task: Task) -> None:
    """Write the run's config, or check that a rerun in ``out`` uses the same one (then phases resume)."""
    from qstar.train.pretrain import config_differences, write_json_atomic

    saved = {"policy": str(Path(policy_dir).resolve()), "task": task.name, **cfg.to_dict()}
    path = out / "critics_config.json"
    if path.is_file():
        diffs = config_differences(_comparable(json.loads(path.read_text())), _comparable(saved))
        if diffs:
            raise QstarError(f"{out} holds a critics run with another configuration ({'; '.join(diffs)}); "
                             "choose a new --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, saved)


def _comparable(saved: dict) -> dict:
    """A saved config as far as it decides results: threads change only speed, a run without a trunk
    phase (``trunk.problems = 0``, or written before the phase existed) ignores every other trunk field and
    the ORM's fine-tuning on the trunk's samples, a trunk saved before ``order`` and ``schedule`` existed
    was trained by length, linearly, and a run saved before ``orm_epochs`` existed kept the ORM's probe
    alone."""
    phase = saved.get("trunk") or {}
    if not phase.get("problems"):
        return {**saved, "threads": None, "trunk": None} | dict.fromkeys(BEFORE_ORM_FINETUNE, "unused (no trunk)")
    return {**BEFORE_ORM_FINETUNE, **saved, "threads": None, "trunk": trunk.BEFORE_ORDER | phase}


BEFORE_ORM_FINETUNE = {"orm_epochs": 0.0, "orm_lr": 1e-4, "orm_batch_size": 64}
"""what runs saved before the ORM's fine-tuning on graded samples existed did: no fine-tuning"""


def train_critics(policy_dir: str | Path, task: Task | str, out: str | Path, cfg: CriticTrainConfig) -> dict:
    """Sample, label and train value, PRM and ORM into ``out``, then report on held-out problems.

    Resumable: a rerun with the same configuration skips every phase whose output exists.
    Returns ``{"phases": {phase: wall seconds spent in this call}, "critics": {role: train summary}}``.
    """
    from qstar.evaluate import load_policy
    from qstar.models.load import resolve_model_dir
    from qstar.tasks import get_task

    check_config(cfg)
    task = get_task(task) if isinstance(task, str) else task
    try:
        policy_dir = resolve_model_dir(policy_dir, task.name)
    except QstarError as err:  # its messages name eval's flag; here the policy comes from --policy
        raise QstarError(str(err).replace("--model", "--policy", 1)) from err
    out = Path(out)
    _start(out, cfg, policy_dir, task)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or threads)
    policy, phases = None, {}

    def get_policy():
        nonlocal policy
        policy = policy or load_policy(str(policy_dir), task)
        return policy

    try:
        t0 = time.perf_counter()
        problems = draw_problems(task, cfg.problems, TRAIN_STREAM + cfg.seed)
        data_file = out / "data" / "train.jsonl"
        if data_file.is_file():
            records = read_jsonl(data_file)
        else:
            data_file.parent.mkdir(parents=True, exist_ok=True)
            records = build_records(get_policy(), task, problems, cfg.data, cfg.seed, data_file, desc="data")
            phases["data"] = time.perf_counter() - t0
        start = policy_dir
        if cfg.trunk.problems:
            if not trunk.is_trained(out / "trunk"):
                t0 = time.perf_counter()
                trunk.train_trunk(policy_dir, get_policy, task, out / "trunk", cfg.trunk, cfg.seed)
                phases["trunk"] = time.perf_counter() - t0
            start = out / "trunk" / trunk.MODEL
        summaries, cache = {}, FeatureCache()
        for role in ROLES:
            summaries[role] = _train_role(role, records, start, task, out, cfg, phases, cache)
        if cfg.report_problems and not (out / "report.json").is_file():
            from qstar.critics.report import run_report

            t0 = time.perf_counter()
            exclude = {p.question for p in problems}
            run_report(out, get_policy(), task, cfg, exclude)
            phases["report"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return {"phases": phases, "critics": summaries}


def _train_role(role: str, records: list[dict], start: Path, task: Task, out: Path,
                cfg: CriticTrainConfig, phases: dict, cache: FeatureCache) -> dict:
    """Train one critic, initialised from the LM in ``start`` (the trunk, or the policy), into ``out/role``
    unless it is there already; returns its train summary."""
    from qstar.models.load import load_tokenizer

    target = out / role
    if (target / "train_summary.json").is_file():
        return json.loads((target / "train_summary.json").read_text())
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(start)
    spec = CriticSpec(role=role, task=task.name, step_delimiter=task.step_delimiter,
                      prompt_template=prompt_template(task), max_length=_max_length(start),
                      policy_features=cfg.policy_features)
    critic = critic_from_policy(start, tokenizer, spec)
    rows = critic_rows(records, role, cfg.prm_threshold, cfg.orm_rollouts)
    summary = train_critic(critic, rows, cfg, cache)
    if role == "orm" and cfg.orm_epochs and cfg.trunk.problems:
        samples = out / "trunk" / trunk.SAMPLES
        if not samples.is_file():
            raise QstarError(f"{samples} is missing: the ORM's fine-tuning reads the trunk's graded samples; "
                             f"remove {out / 'trunk'} to sample and train the trunk again")
        summary["graded"] = finetune_on_graded(critic, read_jsonl(samples), cfg, out / "orm.checkpoints")
    critic.save(target, extra={"train_summary.json": summary})
    if role == "orm":
        shutil.rmtree(out / "orm.checkpoints", ignore_errors=True)  # the critic is saved: resuming is done
    phases[role] = time.perf_counter() - t0
    return summary


def finetune_on_graded(critic: HFCritic, samples: list[dict], cfg: CriticTrainConfig, checkpoints: Path) -> dict:
    """Fine-tune the (probed) ORM whole on graded whole solutions ``{"question", "completion", "correct"}``
    for ``cfg.orm_epochs`` epochs, resumably. Returns the fine-tuning summary with its row count."""
    t0 = time.perf_counter()
    data = [{**critic.encode(r["question"], [r["completion"]]), "labels": float(r["correct"])} for r in samples]
    steps = max(1, math.ceil(cfg.orm_epochs * len(data) / cfg.orm_batch_size))
    warmup = min(ORM_WARMUP_STEPS, steps // 10)  # a short run (a smoke test) must not end inside its warm-up
    summary = finetune(critic, data, steps, cfg.orm_lr, cfg.orm_batch_size, warmup, cfg, checkpoints)
    return {"rows": len(data), "base_rate": sum(d["labels"] for d in data) / max(1, len(data)), **summary,
            "wall_s": time.perf_counter() - t0}


ORM_WARMUP_STEPS = 30
"""warm-up of the ORM's fine-tuning on graded samples (3% of its ~1,000 steps)"""


def _max_length(policy_dir: Path) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(policy_dir), local_files_only=True)
    return int(getattr(config, "max_position_embeddings", None) or 2048)
