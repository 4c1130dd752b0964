"""The ``improve`` subcommand. Imports nothing heavy until it runs, so ``qstar --help`` stays instant."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from qstar.cli.main import json_dict


def apply_options(cfg, options: dict):
    """``cfg`` with ImproveConfig fields replaced from ``options``; ``search`` / ``eval_search`` take a dict of
    MCTSConfig fields that are merged into the defaults."""
    from qstar.errors import QstarError

    names = {f.name for f in fields(cfg)}
    unknown = set(options) - names
    if unknown:
        raise QstarError(f"improve --options: unknown field(s) {sorted(unknown)}; see ImproveConfig")
    values = dict(options)
    for name in ("search", "eval_search"):
        if name in values:
            try:
                values[name] = replace(getattr(cfg, name), **values[name])
            except TypeError as err:
                raise QstarError(f"improve --options {name}: {err}") from err
    return replace(cfg, **values)


def config_from_args(a: argparse.Namespace):
    from qstar.improve.config import ImproveConfig

    def absolute(path: str | None) -> str | None:  # a rerun from another directory is the same run
        return path if path in (None, "default") else str(Path(path).resolve())

    cfg = ImproveConfig(task=a.task, data=absolute(a.data), policy=absolute(a.policy), critics=absolute(a.critics),
                        iterations=a.iterations, seed=a.seed, retrain_critics=not a.static_critics,
                        finetune=a.finetune, keep=a.keep)
    cfg = apply_options(cfg, a.options)
    for flag, name in (("problems", "problems_per_iteration"), ("eval_limit", "eval_limit"), ("gamma", "gamma"),
                       ("rejection_samples", "rejection_samples"), ("threads", "threads")):
        if getattr(a, flag) is not None:
            cfg = replace(cfg, **{name: getattr(a, flag)})
    if a.simulations is not None:
        cfg = replace(cfg, search=replace(cfg.search, n_simulations=a.simulations))
    return cfg


def cmd_improve(a: argparse.Namespace) -> None:
    from qstar.improve.loop import run_improve

    run_improve(config_from_args(a), a.out, progress=not a.quiet)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``improve`` to the ``qstar`` command's subparsers."""
    p = subparsers.add_parser(
        "improve", help="self-improvement: search, synthesise, fine-tune, retrain critics, evaluate (resumable)",
        description="Runs the loop for --iterations; killed at any moment, the same command continues it.")
    p.add_argument("--task", default="arith", help="task whose train problems are searched (default arith)")
    p.add_argument("--data", help="JSONL file for data tasks")
    p.add_argument("--policy", default="default", help="starting policy directory, or 'default'")
    p.add_argument("--out", required=True, help="run directory (config.json, state.json, iter-KK/, results)")
    p.add_argument("--iterations", type=int, default=3, help="self-improvement iterations (default 3)")
    p.add_argument("--critics", help="critics to start from (default: trained on the starting policy)")
    p.add_argument("--static-critics", action="store_true",
                   help="never retrain the critics (the paper's static critics; the ablation)")
    p.add_argument("--finetune", default="sft+dpo", choices=["sft+dpo", "sft", "dpo"], help="fine-tuning phases")
    p.add_argument("--keep", default="verified", choices=["verified", "orm"],
                   help="keep a trajectory when the verifier says correct, or when the ORM scores >= --gamma")
    p.add_argument("--gamma", type=float, help="ORM threshold of --keep orm (default 0.9)")
    p.add_argument("--problems", type=int, help="training problems searched per iteration")
    p.add_argument("--simulations", type=int, help="MCTS simulations per training problem")
    p.add_argument("--rejection-samples", type=int, help="policy samples per training problem (0: MCTS data only)")
    p.add_argument("--eval-limit", type=int, help="evaluate on the first K test problems (default: all)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: one per core; 1 when sharing the cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of problems, samplers and trainers")
    p.add_argument("--options", type=json_dict, default={}, help="JSON object of further ImproveConfig fields")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_improve)
    return p
