"""The baselines beside every search: greedy, sampling, best-of-N and self-consistency.

Each is a whole-solution strategy: it asks the policy for complete solutions
(``until="end"``) and picks one. They share the strategy signature of :mod:`qstar.search.common`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from qstar.errors import QstarError
from qstar.search.common import Critics, measure, split_cost, vote
from qstar.search.protocols import Option, Policy, SearchResult, Trajectory
from qstar.tasks.base import Problem, Task


@dataclass
class SampleConfig:
    n: int = 16
    """number of solutions sampled per problem (greedy uses 1)"""
    temperature: float = 0.8
    """sampling temperature"""
    max_new_tokens: int = 256
    """token budget of one solution"""
    seed: int = 0
    """seed of the sampler"""
    critic: Literal["orm", "prm", "value", "prior"] = "orm"
    """best-of-n / weighted vote: the critic that ranks candidates ("prior": the policy's own mean token
    probability, which needs no trained critic)"""
    aggregate: Literal["last", "min", "prod"] = "last"
    """how per-step PRM scores become one solution score"""
    weighted: bool = False
    """self-consistency: weight each vote by the critic's score instead of counting"""


def _trajectory(task: Task, option: Option) -> Trajectory:
    steps = split_steps(option.text, task.step_delimiter)
    return Trajectory(steps, option.logprob, option.n_tokens, answer=task.extract_answer(option.text))


def split_steps(text: str, delimiter: str) -> list[str]:
    """Cut a solution into options, each keeping its delimiter, so ``"".join(steps) == text``."""
    parts = text.split(delimiter)
    steps = [p + delimiter for p in parts[:-1]]
    if parts[-1]:
        steps.append(parts[-1])
    return [s for s in steps if s] or [text]


def sample_solutions(
    problems: list[Problem], task: Task, policy: Policy, n: int, cfg: SampleConfig, temperature: float
) -> tuple[list[list[Trajectory]], list]:
    """``n`` whole solutions per problem in one batched call; returns trajectories and per-problem costs."""
    with measure(policy) as spent:
        roots = policy.root([task.prompt(p) for p in problems])
        options = policy.extend(
            roots, n, temperature=temperature, until="end", max_new_tokens=cfg.max_new_tokens, seed=cfg.seed
        )
        policy.release(roots)
    trajs = [[_trajectory(task, o) for o in opts] for opts in options]
    return trajs, split_cost(spent, len(problems))


def score_trajectories(
    problems: list[Problem], task: Task, trajs: list[list[Trajectory]], critic, aggregate: str
) -> None:
    """Fill ``traj.score`` with the critic's score, in one batched call over all candidates."""
    questions, prefixes, index = [], [], []
    for i, (p, ts) in enumerate(zip(problems, trajs, strict=True)):
        for j, t in enumerate(ts):
            cut = range(1, len(t.steps) + 1) if aggregate != "last" else [len(t.steps)]
            for k in cut:
                questions.append(p.question)
                prefixes.append(t.steps[:k])
                index.append((i, j))
    scores = critic.score(questions, prefixes)
    per: dict[tuple[int, int], list[float]] = {}
    for key, s in zip(index, scores, strict=True):
        per.setdefault(key, []).append(s)
    for (i, j), ss in per.items():
        if aggregate == "min":
            trajs[i][j].score = min(ss)
        elif aggregate == "prod":
            prod = 1.0
            for s in ss:
                prod *= s
            trajs[i][j].score = prod
        else:
            trajs[i][j].score = ss[-1]


def greedy(problems, task, policy, critics: Critics, cfg: SampleConfig) -> list[SearchResult]:
    trajs, costs = sample_solutions(problems, task, policy, 1, cfg, temperature=0.0)
    return [SearchResult(t[0].answer, t[0], t, c) for t, c in zip(trajs, costs, strict=True)]


def sample(problems, task, policy, critics: Critics, cfg: SampleConfig) -> list[SearchResult]:
    """n samples; the answer is the first sample's (pass@n is read from the candidates)."""
    trajs, costs = sample_solutions(problems, task, policy, cfg.n, cfg, temperature=cfg.temperature)
    return [SearchResult(t[0].answer, t[0], t, c) for t, c in zip(trajs, costs, strict=True)]


def rank_candidates(problems, task, trajs, critics: Critics, cfg: SampleConfig) -> None:
    """Fill every candidate's ``score`` with the configured critic (or the policy's prior)."""
    if cfg.critic == "prior":
        for ts in trajs:
            for t in ts:
                t.score = math.exp(t.logprob / max(t.n_tokens, 1))
        return
    score_trajectories(problems, task, trajs, _critic(critics, cfg), cfg.aggregate)


def _critic(critics: Critics, cfg: SampleConfig):
    critic = critics.get(cfg.critic)
    if critic is None:
        raise QstarError(f"this method ranks by the {cfg.critic} critic, but none was given (--critics DIR)")
    return critic


def best_of_n(problems, task, policy, critics: Critics, cfg: SampleConfig) -> list[SearchResult]:
    """n samples ranked by a critic; the best one is the answer."""
    if cfg.critic != "prior":
        _critic(critics, cfg)  # fail before sampling
    trajs, costs = sample_solutions(problems, task, policy, cfg.n, cfg, temperature=cfg.temperature)
    rank_candidates(problems, task, trajs, critics, cfg)
    out = []
    for ts, c in zip(trajs, costs, strict=True):
        best = max(ts, key=lambda t: t.score)
        out.append(SearchResult(best.answer, best, ts, c))
    return out


def self_consistency(problems, task, policy, critics: Critics, cfg: SampleConfig) -> list[SearchResult]:
    """n samples and a majority vote over their answers (critic-weighted with ``weighted``)."""
    trajs, costs = sample_solutions(problems, task, policy, cfg.n, cfg, temperature=cfg.temperature)
    if cfg.weighted:
        rank_candidates(problems, task, trajs, critics, cfg)
    out = []
    for ts, c in zip(trajs, costs, strict=True):
        answer = vote(ts, [t.score for t in ts] if cfg.weighted else None)
        chosen = next((t for t in ts if t.answer == answer), ts[0])
        out.append(SearchResult(answer, chosen, ts, c))
    return out
