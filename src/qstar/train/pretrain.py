"""``qstar pretrain``: supervised training of the default policy from scratch on a task's solutions.

Uses transformers' ``Trainer`` (not a hand-written loop): it already gives checkpoints,
exact resume (optimizer, scheduler, RNG and data position), and LR schedules. We add only a
completion-only collator and a progress bar that shows loss, tokens/s and ETA.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qstar.errors import QstarError
from qstar.models.tiny import TinyModelConfig


@dataclass
class PretrainConfig:
    """Everything that determines a pretraining run; saved as ``pretrain_config.json`` beside the weights."""

    task: str = "arith"
    """task whose reference solutions are the training data"""
    steps: int = 1200
    """optimizer steps (the length of the learning-rate schedule)"""
    stop_at: int | None = None
    """stop after this many steps of the ``steps``-long schedule and save those weights: exactly what a full
    run's checkpoint at that step holds (a shorter ``steps`` would decay the learning rate sooner). None: train
    to the end"""
    batch_size: int = 64
    """sequences per step"""
    lr: float = 3e-3
    """peak learning rate (cosine decay after warm-up)"""
    warmup_steps: int = 60
    """linear warm-up steps"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    seed: int = 0
    """seed of the data stream and the initialisation"""
    save_every: int = 200
    """checkpoint every this many steps (a killed run resumes from the last one)"""
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    """the model's shape"""
    task_options: dict = field(default_factory=dict)
    """options for the task's generator"""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        d = dict(d)
        d["model"] = TinyModelConfig(**d.get("model", {}))
        return cls(**d)


def encode_example(tokenizer, prompt: str, solution: str) -> dict:
    """Token ids of prompt + solution + EOS, with the loss only on the solution and EOS."""
    p = tokenizer(prompt)["input_ids"]
    s = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": p + s, "labels": [-100] * len(p) + s}


class CompletionCollator:
    """Right-pads a batch; padded positions carry no loss."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def training_rows(cfg: PretrainConfig, tokenizer) -> list[dict]:
    """One fresh training problem per example (steps * batch of them): the generator never repeats."""
    from qstar.tasks import get_task

    task = get_task(cfg.task, **cfg.task_options)
    problems = task.problems("train", cfg.steps * cfg.batch_size, seed=cfg.seed) if cfg.task in (
        "arith", "code-arith") else task.problems("train")
    return [encode_example(tokenizer, task.prompt(p), task.format_solution(p)) for p in problems]


def _progress_callback(total_steps: int):
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """A progress bar with loss, tokens/s and ETA (Trainer's own shows neither tokens/s nor loss)."""

        def on_train_begin(self, args, state, control, **kw):
            self.bar = tqdm(total=total_steps, initial=state.global_step, desc="pretrain", unit="step")
            self.t0, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kw):
            dt = time.perf_counter() - self.t0
            tok_s = (state.num_input_tokens_seen - self.tokens0) / max(dt, 1e-9)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.3f}", tok_s=f"{tok_s:,.0f}")

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    return Progress()


def _stop_callback(step: int):
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= step:
                control.should_training_stop = True

    return StopAt()


def pretrain(cfg: PretrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train the default policy; returns a summary. ``resume`` continues from the last checkpoint."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from qstar.models.tiny import build_tiny_llama
    from qstar.models.tokenizer import build_char_tokenizer

    if cfg.stop_at is not None and not 1 <= cfg.stop_at <= cfg.steps:
        raise QstarError(f"pretrain: stop_at must be between 1 and steps={cfg.steps}, got {cfg.stop_at}")
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    cfg_path = out / "pretrain_config.json"
    if resume:
        if not cfg_path.is_file():
            raise QstarError(f"--resume: {out} holds no pretraining run (no pretrain_config.json)")
        saved = PretrainConfig.from_dict(json.loads(cfg_path.read_text())).to_dict()  # older files lack new fields
        if saved != cfg.to_dict():
            raise QstarError(f"--resume: {cfg_path} was written with another configuration; use a new --out")
    elif ckpt_dir.exists() and any(ckpt_dir.iterdir()):
        raise QstarError(f"{out} already holds a run; pass --resume to continue it or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg_path, cfg.to_dict())

    if "OMP_NUM_THREADS" not in os.environ:  # respect a user's thread budget on a shared machine
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(cfg.model, tokenizer, seed=cfg.seed)
    rows = training_rows(cfg, tokenizer)
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        logging_steps=min(10, max(1, cfg.steps // 10)),
        save_steps=cfg.save_every,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        report_to=[],
        dataloader_num_workers=0,
        include_num_input_tokens_seen="all",
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,  # so every checkpoint is a loadable policy directory
        data_collator=CompletionCollator(tokenizer.pad_token_id),
        callbacks=[_progress_callback(cfg.stop_at or cfg.steps)]
        + ([_stop_callback(cfg.stop_at)] if cfg.stop_at else []),
    )
    # Trainer's default printer would echo every log dict; our progress bar replaces it.
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    t0 = time.perf_counter()
    last = _last_checkpoint(ckpt_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=last)
    wall = time.perf_counter() - t0
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        "wall_s": wall,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "parameters": sum(p.numel() for p in model.parameters()),
        "resumed_from": last,
    }
    write_json_atomic(out / "pretrain_summary.json", summary)
    return summary


def _last_checkpoint(ckpt_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


def config_differences(saved: dict, wanted: dict, ignore: tuple[str, ...] = (), prefix: str = "") -> list[str]:
    """Fields whose values differ, as ``name: saved -> wanted``, skipping the top-level fields in ``ignore``;
    nested configs are compared field by field, by dotted name (``trunk.lr: 0.001 -> 0.5``)."""
    diffs = []
    for name in sorted((set(saved) | set(wanted)) - set(ignore)):
        a, b = saved.get(name), wanted.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, prefix=f"{prefix}{name}.")
        elif a != b:
            diffs.append(f"{prefix}{name}: {a!r} -> {b!r}")
    return diffs


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON through a temporary file and a rename, so a kill never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
