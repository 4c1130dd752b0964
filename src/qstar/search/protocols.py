"""The small interface between search and models (as mctx's root / recurrent functions).

Search code never imports a model class. It reaches the language model through
:class:`Policy` and the critics through :class:`Critic`; states are opaque handles that
only the policy backend understands (for the Hugging Face backend: a node of its KV-cache
tree, so a child's forward pass starts where its parent's ended).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

State = Any
"""An opaque handle to a token prefix (prompt plus the options taken so far)."""


@dataclass
class Option:
    """One action of the option-level MDP: a run of tokens ended by the step delimiter (or EOS)."""

    text: str
    token_ids: tuple[int, ...]
    logprob: float
    """sum of the policy's log-probs of ``token_ids`` (at temperature 1)"""
    finished: bool
    """the backend stopped because the sequence ended (EOS or the length budget), not at a step delimiter"""
    state: State = None
    """handle to the prefix that includes this option; pass it to ``Policy.extend`` to continue"""

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class TokenCost:
    """What a search spent. ``generated_tokens`` are the tokens sampled; ``prompt_tokens`` every other
    position the model ran a forward pass over (prompts, and prefixes recomputed when a cache is not
    reused). Their sum counts each computed position once."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    model_calls: int = 0
    wall_s: float = 0.0

    @property
    def computed_tokens(self) -> int:
        return self.prompt_tokens + self.generated_tokens

    def __add__(self, other: TokenCost) -> TokenCost:
        return TokenCost(
            self.prompt_tokens + other.prompt_tokens,
            self.generated_tokens + other.generated_tokens,
            self.model_calls + other.model_calls,
            self.wall_s + other.wall_s,
        )

    def __sub__(self, other: TokenCost) -> TokenCost:
        return TokenCost(
            self.prompt_tokens - other.prompt_tokens,
            self.generated_tokens - other.generated_tokens,
            self.model_calls - other.model_calls,
            self.wall_s - other.wall_s,
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "computed_tokens": self.computed_tokens}


@runtime_checkable
class Policy(Protocol):
    """A language model as the search sees it."""

    def root(self, prompts: list[str]) -> list[State]:
        """One state per prompt (the prompt's tokens are encoded; no forward pass yet)."""
        ...

    def extend(
        self,
        states: list[State],
        n: int,
        *,
        temperature: float = 1.0,
        until: Literal["step", "end"] = "step",
        max_new_tokens: int = 256,
        seed: int | None = None,
    ) -> list[list[Option]]:
        """Sample ``n`` continuations of each state, in one batch.

        ``until="step"`` stops each continuation at the step delimiter (an option);
        ``until="end"`` generates to EOS (a rollout / a whole solution).
        ``temperature=0`` is greedy (then the ``n`` continuations are identical).
        ``seed`` makes the samples reproducible.
        """
        ...

    def release(self, states: list[State]) -> None:
        """Forget states (and their descendants) that search will not extend again."""
        ...

    @property
    def cost(self) -> TokenCost:
        """Running totals since the policy was created; search reports differences."""
        ...


@runtime_checkable
class Critic(Protocol):
    """Scores partial or finished solutions in one batched call. Higher is better; values in [0, 1]
    estimate the probability that the solution (continued by the policy) ends correct."""

    name: str

    def score(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        """``steps[i]`` are the option texts taken so far for ``questions[i]``."""
        ...


@dataclass
class Trajectory:
    """A (partial or finished) solution: its steps and what search knows of it."""

    steps: list[str]
    logprob: float = 0.0
    n_tokens: int = 0
    score: float | None = None
    """the critic score or value the strategy ranked it by, if any"""
    answer: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.steps)


@dataclass
class SearchResult:
    """What every strategy returns, for one problem."""

    answer: str | None
    trajectory: Trajectory
    """the chosen solution"""
    candidates: list[Trajectory] = field(default_factory=list)
    """every finished solution the search produced (for best-of-n / voting / pass@n)"""
    cost: TokenCost = field(default_factory=TokenCost)
    tree: Any = None
    """the search tree, for strategies that build one (MCTS, beam)"""
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Everything but the tree, as JSON-ready data (a resumed evaluation reads it back)."""
        return {"answer": self.answer, "trajectory": asdict(self.trajectory),
                "candidates": [asdict(c) for c in self.candidates], "cost": asdict(self.cost), "stats": self.stats}

    @classmethod
    def from_dict(cls, d: dict) -> SearchResult:
        return cls(d["answer"], Trajectory(**d["trajectory"]), [Trajectory(**c) for c in d["candidates"]],
                   TokenCost(**d["cost"]), stats=d["stats"])
