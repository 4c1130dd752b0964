"""The ``train-critics`` subcommand. Imports nothing heavy until it runs, so ``qstar --help`` stays instant."""

from __future__ import annotations

import argparse


def cmd_train_critics(args: argparse.Namespace) -> None:
    """Train value, PRM and ORM from the policy's samples; print the held-out report and the phase times."""
    from qstar.critics.train import CriticTrainConfig, train_critics

    cfg = CriticTrainConfig.quick() if args.quick else CriticTrainConfig()
    cfg.seed = args.seed
    for flag, obj, name in (("problems", cfg, "problems"), ("steps", cfg, "steps"),
                            ("samples_per_problem", cfg.data, "samples_per_problem"),
                            ("rollouts", cfg.data, "rollouts"), ("report_problems", cfg, "report_problems"),
                            ("trunk_problems", cfg.trunk, "problems"), ("trunk_samples", cfg.trunk, "samples"),
                            ("trunk_epochs", cfg.trunk, "epochs"), ("orm_epochs", cfg, "orm_epochs")):
        if getattr(args, flag) is not None:
            setattr(obj, name, getattr(args, flag))
    result = train_critics(args.policy, args.task, args.out, cfg)
    spent = ", ".join(f"{k} {v:.0f}s" for k, v in result["phases"].items()) or "nothing left to do"
    print(f"critics saved to {args.out} ({spent})")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train-critics`` to the ``qstar`` command's subparsers."""
    p = subparsers.add_parser("train-critics", help="train the value function, PRM and ORM from the policy's samples")
    p.add_argument("--policy", default="default", help="policy directory, or 'default' for the shipped policy of --task")
    p.add_argument("--task", default="arith", help="task whose train problems the policy solves")
    p.add_argument("--out", required=True, help="critics directory (value/, prm/, orm/, data/, report.json)")
    p.add_argument("--problems", type=int, help="training problems (default 512)")
    p.add_argument("--samples-per-problem", type=int, help="solutions sampled per problem (default 4)")
    p.add_argument("--rollouts", type=int, help="Monte Carlo rollouts per step; 0 = outcome labels (default 4)")
    p.add_argument("--trunk-problems", type=int,
                   help="problems whose verified solutions fine-tune the critics' trunk first; 0 starts the critics "
                        "from the policy itself (default 32768)")
    p.add_argument("--trunk-samples", type=int, help="solutions sampled per trunk problem (default 2)")
    p.add_argument("--trunk-epochs", type=float,
                   help="SFT epochs of the trunk over its accepted solutions; the trunk phase takes ~41 min with the "
                        "defaults, ~14 with --trunk-problems 8192 --trunk-samples 8 --trunk-epochs 2, for weaker "
                        "critics (see TrunkConfig.epochs) (default 6.0)")
    p.add_argument("--orm-epochs", type=float,
                   help="epochs of fine-tuning the ORM on every trunk sample, graded; 0 keeps its probe alone "
                        "(default 1.0)")
    p.add_argument("--steps", type=int, help="fine-tuning steps per critic after its linear probe (default 0)")
    p.add_argument("--report-problems", type=int, help="held-out problems for report.json; 0 skips it")
    p.add_argument("--seed", type=int, default=0, help="seed of problems, sampling and training")
    p.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    p.set_defaults(func=cmd_train_critics)
    return p
