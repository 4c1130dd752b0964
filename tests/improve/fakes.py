"""Fast stand-ins for the loop's tests: a task a random tiny model solves half the time, and fake critics."""

from __future__ import annotations

import json
from pathlib import Path

from qstar.improve.config import ImproveConfig
from qstar.improve.loop import CriticsBackend
from qstar.search.common import Critics
from qstar.search.mcts import MCTSConfig
from qstar.tasks import TASKS
from qstar.tasks.arith import ArithTask
from qstar.tasks.base import Problem


class CoinTask(ArithTask):
    """Arith's problems, but any first option ends the solution, and it is correct when its first character's
    code is even: a random model is right about half the time, so every phase gets real data."""

    name = "coin"

    @classmethod
    def from_data(cls, data=None, **options) -> CoinTask:
        return cls()

    def extract_answer(self, solution: str) -> str | None:
        return solution[:1] or None

    def is_terminal(self, solution: str) -> bool:
        return bool(solution)

    def is_correct(self, solution: str, problem: Problem) -> bool:
        return bool(solution) and ord(solution[0]) % 2 == 0


class ParityCoinTask(CoinTask):
    """The coin task, but whether a first character is right depends on the problem too (the parity of its
    question's length): one policy's greedy solutions are then right on some problems and wrong on others."""

    name = "coin-parity"

    def is_correct(self, solution: str, problem: Problem) -> bool:
        return bool(solution) and (ord(solution[0]) + len(problem.question)) % 2 == 0


TASKS.setdefault("coin", "tests.improve.fakes:CoinTask.from_data")  # test-only names, so get_task finds them
TASKS.setdefault("coin-parity", "tests.improve.fakes:ParityCoinTask.from_data")


def fake_backend(calls: list | None = None) -> CriticsBackend:
    """Critics "training" writes a marker; loading gives no critic (MCTS then falls back to the prior)."""

    def train(policy_dir: Path, task, out: Path, seed: int, options: dict) -> None:
        if calls is not None:
            calls.append((str(policy_dir), seed))
        (out / "marker.json").write_text(json.dumps({"policy": str(policy_dir), "seed": seed}))

    def load(path: Path) -> Critics:
        assert (Path(path) / "marker.json").is_file(), path
        return Critics()

    return CriticsBackend(train=train, load=load)


def tiny_config(policy: Path, **kw) -> ImproveConfig:
    """One iteration of every phase on a handful of problems: seconds on a random 2-layer model."""
    search = MCTSConfig(n_simulations=4, max_option_tokens=6, max_rollout_tokens=8, c_max=3)
    base = dict(task="coin", policy=str(policy), iterations=1, problems_per_iteration=4, search=search,
                rejection_samples=2, rejection_problems=6, max_new_tokens=8, eval_limit=3, sc_n=2, eval_search=search,
                sft_epochs=1, sft_lr=1e-3, sft_batch_size=4, dpo_epochs=1, dpo_lr=1e-3, dpo_batch_size=4)
    base.update(kw)
    return ImproveConfig(**base)
