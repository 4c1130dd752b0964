"""Pieces every strategy shares: the critics bundle, the strategy signature, and voting."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from qstar.search.protocols import Critic, Policy, SearchResult, TokenCost, Trajectory
from qstar.tasks.base import Problem, Task


@dataclass
class Critics:
    """The critics a search may use; any of them may be absent."""

    value: Critic | None = None
    prm: Critic | None = None
    orm: Critic | None = None

    def get(self, role: str) -> Critic | None:
        return getattr(self, role)


Strategy = Callable[[list[Problem], Task, Policy, Critics, object], list[SearchResult]]
"""Every strategy: ``strategy(problems, task, policy, critics, config) -> one SearchResult per problem``.
Strategies take a batch of problems so the backend can batch their forward passes."""


@contextmanager
def measure(policy: Policy) -> Iterator[TokenCost]:
    """Yield a TokenCost filled, on exit, with what ``policy`` spent inside the block."""
    spent = TokenCost()
    before, t0 = policy.cost, time.perf_counter()
    yield spent
    delta = policy.cost - before
    spent.prompt_tokens, spent.generated_tokens, spent.model_calls = (
        delta.prompt_tokens,
        delta.generated_tokens,
        delta.model_calls,
    )
    spent.wall_s = time.perf_counter() - t0


def split_cost(total: TokenCost, n: int) -> list[TokenCost]:
    """Share a batch's cost evenly between its ``n`` problems (batched calls cannot be split exactly)."""
    return [
        TokenCost(total.prompt_tokens / n, total.generated_tokens / n, total.model_calls / n, total.wall_s / n)
        for _ in range(n)
    ]


def vote(candidates: list[Trajectory], weights: list[float] | None = None) -> str | None:
    """Majority (or weighted) vote over the candidates' answers; ties go to the earliest answer."""
    tally: dict[str, float] = defaultdict(float)
    order: Counter[str] = Counter()
    for i, traj in enumerate(candidates):
        if traj.answer is None:
            continue
        tally[traj.answer] += 1.0 if weights is None else weights[i]
        order.setdefault(traj.answer, i)
    if not tally:
        return None
    return max(tally, key=lambda a: (tally[a], -order[a]))
