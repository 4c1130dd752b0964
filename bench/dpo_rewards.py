"""The likelihood-decrease check of Rafailov et al. (2024, "From r to Q*", Eq. 16): during DPO, does the
implicit reward of the *chosen* responses fall below 0?

    .venv/bin/python bench/dpo_rewards.py --base DIR --out DIR [--problems 256] [--beta 0.1]

With pi_ref the SFT model, E_{y ~ pi_ref}[beta log pi(y|x)/pi_ref(y|x)] = -beta KL(pi_ref || pi) <= 0: when
the chosen responses are typical of pi_ref (SFT trained on them), DPO pushes their reward below 0 while it
pushes the rejected ones lower still. Two arms from one base policy and one set of preference pairs:

- ``no_sft``: DPO from the base policy, with the base as reference;
- ``sft``: SFT on the chosen responses first, then DPO from the SFT policy with the SFT policy as reference.

Pairs are on-policy, as ``qstar dpo`` builds them (:func:`qstar.train.dpo.make_pairs`): the base samples
``--samples`` solutions per fresh training problem; ``rejected`` is a wrong sample, ``chosen`` a correct one,
or the reference solution when the base found none (the share of each is reported). TRL's ``DPOTrainer``
logs ``rewards/chosen`` and ``rewards/rejected`` (batch means of beta * log pi/pi_ref, before each update);
:func:`qstar.train.finetune.dpo` returns them as ``rewards``. As a cross-check the final policies'
rewards are recomputed with :func:`qstar.critics.implicit.implicit_rewards` (EOS included, as TRL scores it).

Both DPO policies are saved (``OUT/no_sft/policy`` with reference the base, ``OUT/sft/policy`` with reference
``OUT/sft/sft``): real DPO policies for ``bench/credit.py`` and ``bench/implicit_search.py``.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def summarise_history(history: list[dict]) -> dict:
    """First, last and mean chosen / rejected rewards; the last quarter's means (less noisy than one batch)."""
    if not history:
        return {"steps": 0}
    tail = history[-max(1, len(history) // 4) :]
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    return {
        "steps": len(history),
        "chosen_first": history[0]["chosen"], "chosen_last": history[-1]["chosen"],
        "rejected_first": history[0]["rejected"], "rejected_last": history[-1]["rejected"],
        "chosen_mean": mean(history, "chosen"), "rejected_mean": mean(history, "rejected"),
        "chosen_last_quarter": mean(tail, "chosen"), "rejected_last_quarter": mean(tail, "rejected"),
        "chosen_below_zero_share": sum(r["chosen"] < 0 for r in history) / len(history),
    }


def final_rewards(policy_dir: Path, ref_dir: Path, pairs: list[dict], beta: float) -> dict:
    """Mean sequence reward of chosen and rejected under the trained policy (our implementation, EOS included)."""
    from qstar.critics.implicit import implicit_rewards, load_models

    pi, ref, tok = load_models(policy_dir, ref_dir)
    out = {}
    for key in ("chosen", "rejected"):
        credits = implicit_rewards(pi, ref, tok, [p["prompt"] for p in pairs], [p[key] for p in pairs], beta,
                                   eos=True)
        out[key] = sum(c.total for c in credits) / len(credits)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the starting policy directory")
    ap.add_argument("--out", required=True, help="directory for the SFT and DPO policies and dpo_rewards.json")
    ap.add_argument("--problems", type=int, default=256, help="fresh training problems to build pairs from")
    ap.add_argument("--samples", type=int, default=4, help="solutions sampled per problem")
    ap.add_argument("--pairs-per-problem", type=int, default=1, help="pairs per problem at most (distinct rejected)")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--dpo-lr", type=float, default=2e-4)
    ap.add_argument("--dpo-epochs", type=float, default=2.0)
    ap.add_argument("--sft-weight", type=float, default=0.0,
                    help="weight of the chosen responses' NLL added to the DPO loss (RPO; 0: plain DPO)")
    ap.add_argument("--sft-lr", type=float, default=3e-4)
    ap.add_argument("--sft-epochs", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--arms", default="no_sft,sft", help="which arms to run (comma-separated)")
    ap.add_argument("--pairs", help="reuse the pairs.jsonl of an earlier run instead of sampling new ones")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from qstar.tasks import get_task
    from qstar.train.finetune import dpo, sft

    task = get_task("arith")
    out = Path(args.out)
    t0 = time.perf_counter()
    if args.pairs:
        with open(args.pairs) as f:
            pairs = [json.loads(line) for line in f if line.strip()]
        pair_stats = {"pairs": len(pairs), "from": args.pairs}
    else:
        from qstar.evaluate import load_policy
        from qstar.train.dpo import PAIR_STREAM, DPORunConfig, make_pairs

        cfg = DPORunConfig(problems=args.problems, samples=args.samples, pairs_per_problem=args.pairs_per_problem,
                           seed=args.seed)
        problems = task.problems("train", args.problems, seed=PAIR_STREAM + args.seed)
        pairs, pair_stats = make_pairs(load_policy(args.base, task), task, problems, cfg)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "pairs.jsonl", "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in pairs)
    print(f"pairs: {pair_stats}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    dpo_kw = dict(beta=args.beta, lr=args.dpo_lr, epochs=args.dpo_epochs, batch_size=args.batch_size, seed=args.seed,
                  sft_weight=args.sft_weight)

    report: dict = {"base": args.base, "config": vars(args), "pairs": pair_stats, "arms": {}}
    arms = {"no_sft": (Path(args.base), None), "sft": (out / "sft" / "sft", "sft")}
    for name, (reference, needs_sft) in arms.items():
        if name not in args.arms.split(","):
            continue
        if needs_sft:
            rows = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
            sft(args.base, rows, reference, epochs=args.sft_epochs, lr=args.sft_lr, batch_size=32, seed=args.seed)
        policy_dir = out / name / "policy"
        rewards = dpo(reference, reference, pairs, policy_dir, **dpo_kw)["rewards"]
        arm = {"policy": str(policy_dir), "reference": str(reference), **summarise_history(rewards),
               "final_model": final_rewards(policy_dir, reference, pairs, args.beta), "history": rewards}
        arm["chosen_below_zero"] = arm["chosen_last_quarter"] < 0
        report["arms"][name] = arm
        print(f"{name:7s} rewards/chosen {arm['chosen_first']:+.4f} -> {arm['chosen_last']:+.4f} "
              f"(last quarter {arm['chosen_last_quarter']:+.4f}, final model {arm['final_model']['chosen']:+.4f}); "
              f"rewards/rejected {arm['rejected_first']:+.4f} -> {arm['rejected_last']:+.4f} "
              f"(final model {arm['final_model']['rejected']:+.4f}); {arm['steps']} steps", flush=True)
    report["wall_s"] = time.perf_counter() - t0
    (out / "dpo_rewards.json").write_text(json.dumps(report, indent=1))
    line = {name: {k: arm[k] for k in ("chosen_last_quarter", "rejected_last_quarter", "chosen_below_zero")}
            | {"final_chosen": arm["final_model"]["chosen"], "final_rejected": arm["final_model"]["rejected"]}
            for name, arm in report["arms"].items()}
    if "sft" in report["arms"]:
        line["eq16_holds_with_sft_ref"] = report["arms"]["sft"]["chosen_below_zero"]
    print(json.dumps(line))


if __name__ == "__main__":
    main()
