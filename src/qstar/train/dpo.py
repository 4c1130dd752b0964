"""``qstar dpo``: one DPO policy trained on thousands of the policy's own preference pairs, whose implicit
reward beta * log(pi / pi_ref) is what ``qstar credit`` and the implicit-reward critic read.

The self-improvement loop's DPO step is deliberately gentle (a few dozen pairs from search trees, lr 1e-5):
it must not cost greedy accuracy, and its implicit reward stays near zero. This command samples
``samples`` solutions for each of ``problems`` fresh training problems, pairs a wrong sample with a correct
one (the reference solution where the policy found none), cuts each pair to the step where the two part
(``step_pairs``) and runs TRL's DPO with an NLL term on the chosen responses (RPO): plain DPO lowers the
chosen solutions' likelihood along with the rejected ones' and cost the default policy up to 33 points of
greedy accuracy at these sizes.

Measured on arith (``bench/credit.py``: how often the lowest-reward step is the corrupted one; 200 test
problems, random 0.26), with the defaults: 9775 pairs (1824 with a reference solution as the chosen
response), ~8 minutes on two cores (sampling 3, DPO 5).

| DPO starts from | pairs | implicit_top1 test (carry / local) | validation | greedy |
|---|---|---|---|---|
| the shipped policy (greedy 0.650) | whole solutions | 0.630 (0.781 / 0.479) | | 0.730 |
| the shipped policy | step-level (default) | 0.634 (0.733 / 0.534) | 0.634 | 0.730 |
| ``qstar train-critics``' trunk (``--init``) | whole solutions | 0.679 (0.898 / 0.460) | 0.695 | |
| ``qstar train-critics``' trunk | step-level (default) | **0.711** (0.914 / 0.508) | 0.721 | 0.925 |
| the same, ``--seed 1`` / ``--seed 2`` (other pairs) | step-level (default) | 0.728 / 0.753 | 0.721 / 0.702 | 0.890 / 0.890 |

The reference is the shipped policy in every row; a trained PRM on the same test cases scores 0.984. With
``--no-reference`` (the policy's own samples only, whole-solution pairs, from the policy): greedy 0.625,
implicit_top1 0.61; the greedy gain is the references'.

Resumable by phase: ``pairs.jsonl`` is written once and reused; a finished ``policy/`` is not retrained.
``OUT/config.json`` holds the configuration; a rerun with another one is refused.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qstar.errors import QstarError

PAIR_STREAM = 3000
"""offset of the training-problem stream the pairs come from (pretraining and critics draw others)"""


@dataclass
class DPORunConfig:
    """Everything that determines a ``qstar dpo`` run; saved as ``config.json`` in its folder."""

    task: str = "arith"
    policy: str = "default"
    """the policy that samples the pairs and is the frozen reference (a directory, or "default": the task's
    shipped policy); DPO starts from it too unless ``init`` is given"""
    init: str | None = None
    """another model to start DPO from, the reference staying ``policy``: e.g. a critics run's trunk
    (``runs/critics/trunk/model``, or the run ``runs/critics`` itself: the policy fine-tuned on its own
    verifier-accepted solutions). DPO's optimum pi_ref * exp(r / beta) does not depend on where it starts,
    but a start that already does the arithmetic better sharpens the implicit reward (the table above: 0.634
    -> 0.711). 2 epochs from it (whole-solution pairs) sharpen it past the corrupted step: 0.654 with
    ``--validation`` (local 0.421)"""
    problems: int = 4096
    """fresh training problems sampled"""
    samples: int = 8
    """solutions sampled per problem"""
    temperature: float = 1.0
    """sampling temperature (1: the policy's own distribution, as DPO's theory assumes)"""
    pairs_per_problem: int = 3
    """pairs per problem at most, one per distinct wrong sample (on arith: ~2.4 per problem on average; the
    implicit reward finds corrupted steps more often with them than with one pair per problem)"""
    reference_chosen: bool = True
    """where no sample is correct, the problem's reference solution is the chosen response (False: such
    problems give no pair, and the data is the policy's own)"""
    step_pairs: bool = True
    """train on step-level pairs (Step-DPO, :mod:`qstar.train.pairs`): the steps a pair shares move into the
    prompt and the rejected solution is cut after its first own step, so DPO lowers the step where it went
    wrong rather than the consistent steps after it (from the trunk, ``local`` 0.460 -> 0.508 on test, 0.492
    -> 0.552 on validation). Cutting the chosen solution as well taught the policy to stop after one step
    (implicit_top1 0.330 on validation). False: whole-solution pairs. ``pairs.jsonl`` holds the sampled
    whole solutions either way"""
    max_new_tokens: int = 96
    beta: float = 0.1
    lr: float = 4e-4
    epochs: float = 1.0
    """passes over the pairs. Longer training sharpens the policy: on arith, 2 and 3 epochs raised greedy to
    0.785 and 0.825 and bench/credit's ``carry`` figure to 0.83 and 0.87, but lowered ``local`` (0.49, 0.39),
    where the step after the corruption is the surprising one; implicit_top1 0.659 and 0.630 against 0.630"""
    batch_size: int = 16
    sft_weight: float = 6.0
    """weight of the chosen responses' NLL in the loss (RPO); 0: plain DPO. On arith at lr 1e-4, weight 1
    lost 6 points of greedy accuracy and 3 kept it; at lr 4e-4, 6 raised it by 8 points"""
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def make_pairs(policy, task, problems: list, cfg: DPORunConfig, progress: bool = True) -> tuple[list[dict], dict]:
    """On-policy preference pairs: per problem, up to ``pairs_per_problem`` distinct wrong samples, each
    against a correct sample (or, with ``reference_chosen``, the reference solution when none is correct)."""
    from tqdm.auto import tqdm

    rng = random.Random(cfg.seed)
    pairs, on_policy = [], 0
    with tqdm(total=len(problems), desc="sampling pairs", unit="problem", disable=not progress) as bar:
        for i in range(0, len(problems), 32):
            chunk = problems[i : i + 32]
            roots = policy.root([task.prompt(p) for p in chunk])
            options = policy.extend(roots, cfg.samples, temperature=cfg.temperature, until="end",
                                    max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + i)
            policy.release(roots)
            for p, opts in zip(chunk, options, strict=True):
                texts = [o.text for o in opts]
                right = [t for t in texts if task.is_correct(t, p)]
                wrong = list(dict.fromkeys(t for t in texts if not task.is_correct(t, p)))
                if not right and not cfg.reference_chosen:
                    continue
                for rejected in rng.sample(wrong, min(cfg.pairs_per_problem, len(wrong))):
                    chosen = rng.choice(right) if right else task.format_solution(p)
                    on_policy += bool(right)
                    pairs.append({"prompt": task.prompt(p), "chosen": chosen, "rejected": rejected})
            bar.update(len(chunk))
            bar.set_postfix(pairs=len(pairs))
    return pairs, {"pairs": len(pairs), "problems": len(problems), "chosen_on_policy": on_policy,
                   "chosen_reference": len(pairs) - on_policy}


def _check_config(out: Path, cfg: DPORunConfig) -> None:
    from qstar.train.pretrain import config_differences, write_json_atomic

    file = out / "config.json"
    if file.is_file():
        diffs = config_differences(json.loads(file.read_text()), cfg.to_dict())
        if diffs:
            raise QstarError(f"{out} holds a dpo run with another configuration ({'; '.join(diffs)}); "
                             "rerun with its options or choose a new --out")
    elif out.is_dir() and any(out.iterdir()):
        raise QstarError(f"{out} is not empty and holds no dpo run (no config.json); choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(file, cfg.to_dict())


def _init_dir(cfg: DPORunConfig, reference: str) -> str:
    """The model DPO starts from: ``cfg.init`` (a model, or a ``qstar train-critics`` run, meaning its trunk),
    which must share the reference's tokenizer; or the reference."""
    from qstar.critics.trunk import MODEL
    from qstar.models.load import load_tokenizer, resolve_model_dir

    if not cfg.init:
        return reference
    init = Path(cfg.init)
    if (init / "critics_config.json").is_file():  # a critics run: start from its trunk
        if not (init / "trunk" / MODEL).is_dir():
            raise QstarError(f"dpo: --init {cfg.init} is a critics run without a trunk (trained with "
                             "--trunk-problems 0); give a model directory instead")
        init = init / "trunk" / MODEL
    try:
        start = resolve_model_dir(init, cfg.task)
    except QstarError as err:  # its messages name eval's flag
        raise QstarError(str(err).replace("--model", "--init", 1)) from err
    if load_tokenizer(start).get_vocab() != load_tokenizer(Path(reference)).get_vocab():
        raise QstarError(f"dpo: --init {cfg.init} has another tokenizer than --policy {cfg.policy}; the implicit "
                         "reward compares their log-probabilities token by token, so they must share one")
    return str(start)


def run_dpo(cfg: DPORunConfig, out: str | Path, progress: bool = True) -> dict:
    """Sample pairs (unless ``out/pairs.jsonl`` exists), train ``out/policy`` (unless it is finished) and
    write ``out/summary.json``; returns the summary."""
    import torch

    from qstar.evaluate import load_policy
    from qstar.models.load import resolve_model_dir
    from qstar.tasks import get_task
    from qstar.train.finetune import dpo
    from qstar.train.pairs import step_pairs
    from qstar.train.pretrain import write_json_atomic

    out = Path(out)
    reference = str(resolve_model_dir(cfg.policy, cfg.task))
    start = _init_dir(cfg, reference)  # checked before any file is written and minutes of sampling
    _check_config(out, cfg)
    torch.manual_seed(cfg.seed)
    task = get_task(cfg.task)
    pairs_file, summary_file = out / "pairs.jsonl", out / "summary.json"
    t0 = time.perf_counter()
    if not pairs_file.is_file():
        problems = task.problems("train", cfg.problems, seed=PAIR_STREAM + cfg.seed)
        pairs, stats = make_pairs(load_policy(reference, task), task, problems, cfg, progress)
        tmp = pairs_file.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        tmp.replace(pairs_file)
        write_json_atomic(out / "pairs_summary.json", stats)
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines() if line.strip()]
    if cfg.step_pairs:
        pairs = step_pairs(pairs, task.step_delimiter)
    if not pairs:
        raise QstarError(f"dpo: no preference pairs from {cfg.problems} problems (each needs a wrong sample, and "
                         "a correct one or, unless reference_chosen is off, a reference solution)")
    if summary_file.is_file() and (out / "policy").is_dir():
        return json.loads(summary_file.read_text())
    if progress:
        print(f"DPO on {len(pairs)} pairs ({cfg.epochs:g} epoch(s), lr {cfg.lr:g}, beta {cfg.beta:g}, "
              f"NLL weight {cfg.sft_weight:g})", flush=True)
    trained = dpo(start, reference, pairs, out / "policy", epochs=cfg.epochs, lr=cfg.lr,
                  batch_size=cfg.batch_size, beta=cfg.beta, seed=cfg.seed, sft_weight=cfg.sft_weight,
                  progress="DPO" if progress else None)
    summary = {"policy": str(out / "policy"), "reference": reference, "init": start, "pairs": len(pairs),
               "pair_sources": json.loads((out / "pairs_summary.json").read_text()), **trained,
               "wall_s": time.perf_counter() - t0}
    write_json_atomic(summary_file, summary)
    return summary
