"""The world model of a verifiable task: problems, prompt format, steps, terminal check, reward.

Search code sees a task only through this protocol (the llm-reasoners split between the
world model and the search config). A solution is a string of steps separated by the task's
``step_delimiter``; an *option* in search is one such step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Problem:
    """One problem. ``answer`` is the reference final answer; ``solution`` a reference solution, if any."""

    id: str
    question: str
    answer: str
    solution: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@runtime_checkable
class Task(Protocol):
    name: str
    step_delimiter: str
    """the termination function of an option: an option ends at the first occurrence of this string"""

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        """Problems of ``split`` ("train" or "test"), the first ``limit`` of them."""
        ...

    def prompt(self, problem: Problem) -> str:
        """The text the policy continues; the solution follows it directly."""
        ...

    def format_solution(self, problem: Problem) -> str:
        """The reference solution as the policy should write it (training target)."""
        ...

    def extract_answer(self, solution: str) -> str | None:
        """The final answer of a generated solution, or None if it has none."""
        ...

    def is_terminal(self, solution: str) -> bool:
        """Whether a (partial) solution already states its final answer."""
        ...

    def is_correct(self, solution: str, problem: Problem) -> bool:
        """The verifier: does the solution's final answer match the reference?"""
        ...


def config_from_options(config_cls, options: dict, task: str):
    """A generator's config dataclass from ``--task-options``; an unknown name fails in one line."""
    from qstar.errors import QstarError

    names = {f.name for f in fields(config_cls)}
    unknown = set(options) - names
    if unknown:
        raise QstarError(f"{task}: unknown task option(s) {sorted(unknown)}; it has {sorted(names)}")
    return config_cls(**options)
