"""Model-free search: strategies over the Policy / Critic protocols.

``METHODS`` maps a method name to ``(strategy, config class)``; every strategy has the
signature ``strategy(problems, task, policy, critics, config) -> list[SearchResult]``.
"""

from qstar.search import baselines, beam, mcts
from qstar.search.common import Critics, vote
from qstar.search.protocols import Critic, Option, Policy, SearchResult, TokenCost, Trajectory

METHODS: dict[str, tuple] = {
    "greedy": (baselines.greedy, baselines.SampleConfig),
    "sample": (baselines.sample, baselines.SampleConfig),
    "best-of-n": (baselines.best_of_n, baselines.SampleConfig),
    "self-consistency": (baselines.self_consistency, baselines.SampleConfig),
    "mcts": (mcts.mcts, mcts.MCTSConfig),
    "beam": (beam.beam, beam.BeamConfig),
}

__all__ = ["METHODS", "Critic", "Critics", "Option", "Policy", "SearchResult", "TokenCost", "Trajectory", "vote"]
