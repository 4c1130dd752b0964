"""Fine-tune a policy with TRL: SFT on kept trajectories, DPO on preference pairs.

The improve loop, ``qstar dpo`` and the critics' trunk all call these, so they live in ``train/`` beside the
other trainers rather than in any one caller's package.

TRL does the real work here (tokenising prompt / completion rows with the loss on the completion only,
the DPO loss against a frozen reference); we add CPU settings, quiet logging, a loss summary and an
atomic save. ``trl`` is imported inside the functions: importing it costs seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

TRAINER_DEFAULTS = dict(
    use_cpu=True,  # TRL 1.16 on CPU needs both of these
    bf16=False,
    save_strategy="no",
    logging_steps=1,
    disable_tqdm=True,
    report_to=[],
    dataloader_num_workers=0,
    lr_scheduler_type="linear",
    warmup_steps=0.05,  # a float below 1 is a fraction of the steps
    weight_decay=0.0,
)


SFT_ORDERS = ("random", "by_length")
SFT_SCHEDULES = ("cosine", "linear")


def batch_settings(order: str, schedule: str) -> dict:
    """The ``SFTConfig`` settings of an SFT batch order and learning-rate schedule.

    ``order``: "random" batches, or "by_length": TRL's batches of rows of similar length (a quarter less
    padding on arith, but a run of consecutive steps sees only the longest, hardest rows). ``schedule``:
    "cosine" or TRL's "linear" decay, after ``TRAINER_DEFAULTS``' warm-up either way."""
    return {"train_sampling_strategy": "random" if order == "random" else "group_by_length",
            "lr_scheduler_type": schedule}


def save_policy_atomic(model, tokenizer, out: str | Path) -> Path:
    """Write a loadable policy directory (weights, config, tokenizer) into a temporary sibling directory,
    then rename it into place, so a kill leaves either the old directory or the whole new one."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, out)
    return out


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished directory ``tmp`` to ``out`` (one rename; an old ``out`` is removed first)."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


@contextmanager
def _quiet():
    """TRL maps its datasets with progress bars and transformers 5 warns about its own renamed options on
    every trainer; a run prints its own progress instead."""
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        if was:
            ds_logging.enable_progress_bar()


def _step_bar(desc: str):
    """A trainer callback drawing one tqdm bar of optimizer steps with the latest loss (and DPO margin):
    transformers' own bar prints every log dict beside it."""
    from tqdm.auto import tqdm
    from transformers.trainer_callback import TrainerCallback

    class StepBar(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            # a resumed run starts at its checkpoint's step
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=desc, unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            shown = {"loss": "loss", "rewards/margins": "margin"}
            self.bar.set_postfix({name: f"{logs[key]:.3f}" for key, name in shown.items() if key in (logs or {})})

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return StepBar()


def _train(trainer, progress: str | None = None, resume: str | None = None) -> dict:
    """Train quietly, or with one step bar titled ``progress``, from the checkpoint ``resume`` if given;
    a summary of losses and DPO margins."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # it would echo every log dict
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(_step_bar(progress))
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    logs = trainer.state.log_history
    losses = [h["loss"] for h in logs if "loss" in h]
    summary = {"steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
               "final_loss": losses[-1] if losses else None, "wall_s": time.perf_counter() - t0}
    rewards = reward_history(logs)
    if rewards:
        summary.update(first_margin=rewards[0]["margin"], final_margin=rewards[-1]["margin"], rewards=rewards)
    return summary


def reward_history(log_history: list[dict]) -> list[dict]:
    """``[{"step", "chosen", "rejected", "margin"}]``: the batch means of DPO's implicit reward
    beta * log pi/pi_ref of the chosen and rejected responses that TRL's ``DPOTrainer`` logs at each step
    (before the update); empty for other trainers."""
    return [
        {"step": h.get("step"), "chosen": h["rewards/chosen"], "rejected": h["rewards/rejected"],
         "margin": h.get("rewards/margins", h["rewards/chosen"] - h["rewards/rejected"])}
        for h in log_history if "rewards/chosen" in h and "rewards/rejected" in h
    ]


CHECKPOINT_STEPS = 200
"""a checkpointed SFT (``sft(checkpoints=...)``) saves its state this often: ~3 minutes of the critics'
trunk on two cores, a few seconds to write"""


def sft(policy_dir: str | Path, rows: list[dict], out: str | Path, *, epochs: float, lr: float,
        batch_size: int, seed: int, progress: str | None = None, overrides: dict | None = None,
        checkpoints: str | Path | None = None) -> dict:
    """Supervised fine-tuning on ``{"prompt", "completion"}`` rows (loss on the completion and EOS only);
    saves the new policy into ``out``. No rows: the policy is saved unchanged. ``progress``: the title of
    a step bar (None: quiet). ``overrides``: ``SFTConfig`` settings that replace ours (the critics' trunk
    trains on random batches with a cosine schedule, see ``critics.trunk.TrunkConfig.order``).

    With ``checkpoints`` (a directory) the trainer saves its state there every ``CHECKPOINT_STEPS`` steps
    and a rerun resumes from the last one (same batches, same schedule; the summary's ``resumed_from``
    names it). The caller removes the directory once ``out`` is saved."""
    from qstar.models.load import load_causal_lm

    model, tokenizer = load_causal_lm(policy_dir)
    if not rows:
        save_policy_atomic(model, tokenizer, out)
        return {"steps": 0, "rows": 0}
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    with tempfile.TemporaryDirectory() as scratch, _quiet():
        # Batches of similar length: arith rows run from 74 to 148 tokens, and padding random batches to
        # their longest row wasted a quarter of SFT's compute (30 steps: 40 s -> 30 s).
        settings = dict(output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                        learning_rate=lr, seed=seed, data_seed=seed, completion_only_loss=True, max_length=None,
                        train_sampling_strategy="group_by_length", **TRAINER_DEFAULTS)
        if checkpoints:
            settings |= dict(output_dir=str(checkpoints), save_strategy="steps", save_steps=CHECKPOINT_STEPS,
                             save_total_limit=1)
        args = SFTConfig(**(settings | (overrides or {})))
        trainer = SFTTrainer(model=model.train(), args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer)
        last = get_last_checkpoint(str(checkpoints)) if checkpoints and Path(checkpoints).is_dir() else None
        summary = _train(trainer, progress, resume=last)
    save_policy_atomic(model.eval(), tokenizer, out)
    if checkpoints:
        summary["resumed_from"] = last and Path(last).name
    return {**summary, "rows": len(rows)}


def dpo(policy_dir: str | Path, reference_dir: str | Path, pairs: list[dict], out: str | Path, *,
        epochs: float, lr: float, batch_size: int, beta: float, seed: int, sft_weight: float = 0.0,
        progress: str | None = None) -> dict:
    """DPO on ``{"prompt", "chosen", "rejected"}`` pairs, starting from ``policy_dir`` with the frozen
    ``reference_dir`` as the reference policy; saves the new policy into ``out``. No pairs: unchanged.

    ``sft_weight`` > 0 adds that much of the chosen completions' negative log-likelihood to the loss (RPO,
    as in iterative reasoning preference optimisation): plain DPO may lower the chosen solution's likelihood
    along with the rejected one's, which a small policy pays for in greedy accuracy. ``progress``: the title
    of a step bar (None: silent)."""
    from qstar.models.load import load_causal_lm

    model, tokenizer = load_causal_lm(policy_dir)
    if not pairs:
        save_policy_atomic(model, tokenizer, out)
        return {"steps": 0, "pairs": 0}
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    reference, _ = load_causal_lm(reference_dir)
    with tempfile.TemporaryDirectory() as scratch, _quiet():
        losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, sft_weight]} if sft_weight > 0 else {}
        args = DPOConfig(output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                         learning_rate=lr, beta=beta, seed=seed, data_seed=seed, max_length=None,
                         **losses, **TRAINER_DEFAULTS)
        trainer = DPOTrainer(model=model.train(), ref_model=reference.eval(), args=args,
                             train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
        summary = _train(trainer, progress)
    save_policy_atomic(model.eval(), tokenizer, out)
    return {**summary, "pairs": len(pairs)}


def completion_logprobs(model, tokenizer, rows: list[dict], key: str = "completion") -> list[float]:
    """log p(row[key] + EOS | row["prompt"]) under ``model``, summed over tokens: what SFT raises and what
    DPO's implicit reward compares. Tokenised as TRL does (the prompt with its special tokens)."""
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(row["prompt"])["input_ids"]
            full = tokenizer(row["prompt"] + row[key] + tokenizer.eos_token)["input_ids"]
            ids = torch.tensor([full])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)  # (T-1, V)
            targets = ids[0, 1:]
            token_logp = logp.gather(1, targets.view(-1, 1)).squeeze(1)
            out.append(float(token_logp[len(prompt) - 1 :].sum()))
    return out
