"""``qstar search``: one question, one strategy, the best solution and the search statistics."""

from __future__ import annotations

import json
from pathlib import Path

from qstar.errors import QstarError
from qstar.search.protocols import SearchResult
from qstar.tasks.base import Problem, Task

SEARCH_METHODS = ("mcts", "beam")


def default_critic_terms(method: str, critics, options: dict) -> dict:
    """Without trained critics, MCTS and beam fall back to the policy's own mean token probability.

    The choice is made here, visibly, so the search core keeps a single rule: no critic, no term.
    """
    if critics.value or critics.prm or critics.orm:
        return options
    if method == "mcts" and "b_prior" not in options:
        print("note: no critics given; MCTS evaluates nodes by the policy's mean token probability (b_prior=1)")
        return {**options, "b_prior": 1.0}
    if method == "best-of-n" and "critic" not in options:
        print("note: no critics given; best-of-n ranks by the policy's mean token probability (critic=prior)")
        return {**options, "critic": "prior"}
    if method == "beam" and "critic" not in options:
        print("note: no critics given; beam search ranks by the policy's mean token probability (critic=prior)")
        return {**options, "critic": "prior"}
    return options


def search_one(question: str, task: Task, policy, critics, strategy, cfg) -> SearchResult:
    if not question.strip():
        raise QstarError("--question is empty")
    problem = Problem(id="cli", question=question.strip(), answer="")
    return strategy([problem], task, policy, critics, cfg)[0]


def describe(result: SearchResult) -> str:
    """The solution and the statistics, as printed by ``qstar search``."""
    c = result.cost
    lines = ["solution:", result.trajectory.text.rstrip(), "", f"answer: {result.answer}"]
    stats = {**result.stats, "prompt_tokens": c.prompt_tokens, "generated_tokens": c.generated_tokens,
             "model_calls": c.model_calls, "wall_s": round(c.wall_s, 2), "candidates": len(result.candidates)}
    lines += [f"  {k}: {v}" for k, v in stats.items()]
    return "\n".join(lines)


def save_tree(result: SearchResult, path: str | Path) -> None:
    if result.tree is None:
        raise QstarError("--save-tree: this method builds no tree (use mcts or beam)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result.tree.to_dict(), indent=1))
