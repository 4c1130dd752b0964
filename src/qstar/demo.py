"""``qstar demo`` (the README's ``make demo``): the self-improvement loop end to end on the built-in task.

Starts from the shipped default policy (``qstar pretrain`` with the default configuration; reproduce it
with the command in its README, or pass ``--pretrain`` to retrain it here first, resuming if killed),
trains its critics, then runs two iterations of search -> synthesise -> SFT + DPO -> retrain critics ->
evaluate (greedy, self-consistency and MCTS on held-out test problems), at a size that finishes in about
5 minutes on two CPU cores (greedy 0.62 -> 0.65 -> 0.72 on its 100 test problems; with 512 problems per
iteration the policy saw too few rows and lost 4 points). Killed at any moment, the same command continues
where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from qstar.models.load import DEFAULT_POLICY

DEMO = {"iterations": 2, "problems_per_iteration": 32, "rejection_problems": 2048, "eval_limit": 100,
        "critic_options": {"problems": 32, "steps": 30, "report_problems": 0}}
"""the demo loop's sizes (the rest is :class:`qstar.improve.config.ImproveConfig`'s defaults)"""
QUICK = {"iterations": 1, "problems_per_iteration": 4, "rejection_problems": 4, "eval_limit": 4, "sc_n": 2,
         "rejection_samples": 2,
         "critic_options": {"problems": 4, "steps": 3, "batch_size": 8, "warmup_steps": 0,
                            "report_problems": 0, "data": {"samples_per_problem": 2, "rollouts": 1}}}
"""a smoke-test size (``--quick``), on a policy pretrained for a few steps"""


def run_demo(out: str | Path, quick: bool = False, retrain: bool = False) -> dict:
    """Pretrain if asked (``--pretrain``, or ``--quick``), then run the demo-sized loop into ``out``."""
    from qstar.improve.config import ImproveConfig
    from qstar.improve.loop import run_improve
    from qstar.train.pretrain import PretrainConfig, pretrain

    out = Path(out)
    shipped = not (quick or retrain)
    policy_dir = DEFAULT_POLICY if shipped else out / "policy"
    if shipped:
        print(f"== starting from the shipped default policy {policy_dir} (its README.md says how to reproduce it)")
    elif not (policy_dir / "pretrain_summary.json").is_file():
        pcfg = PretrainConfig(steps=20, save_every=10) if quick else PretrainConfig()
        print(f"== pretraining the default policy ({pcfg.steps} steps) -> {policy_dir}")
        pretrain(pcfg, policy_dir, resume=(policy_dir / "pretrain_config.json").is_file())
    policy = "default" if shipped else str(policy_dir.resolve())
    cfg = ImproveConfig(policy=policy, **(QUICK if quick else DEMO))
    print(f"== self-improvement: {cfg.iterations} iterations -> {out / 'improve'}")
    return run_improve(cfg, out / "improve")
