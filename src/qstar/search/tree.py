"""The search tree as plain data: a flat list of nodes, the root at index 0.

MCTS and beam search build it; the HTML viewer and the self-improvement loop read it
(as ``Tree.to_dict()``). Algorithms over the tree live in the strategy modules; this file only
holds the data and read-only queries over it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from qstar.search.protocols import Trajectory


@dataclass
class Node:
    """One option of the option-level MDP and the statistics search keeps for it.

    The root holds no option (empty ``text``); every other node is the option taken from its parent.
    """

    text: str = ""
    """the option's text, including its step delimiter when it has one"""
    token_ids: tuple[int, ...] = ()
    """the option's tokens, as the policy generated them"""
    logprob: float = 0.0
    """sum of the policy's log-probs of ``token_ids`` (the prior comes from ``logprob / n_tokens``)"""
    n_tokens: int = 0
    """``len(token_ids)``, kept so a serialised tree without ids still counts its tokens"""
    visits: int = 0
    """N: evaluations backed up through this node"""
    value_sum: float = 0.0
    """W: sum of the evaluations backed up through this node (mean value Q = W / N)"""
    virtual_loss: float = 0.0
    """pending selections through this node in the current step, counted as visits of value 0"""
    evaluation: float | None = None
    """v(s): the node's own evaluation (weighted critics), the first value backed up from it"""
    scores: dict[str, float] = field(default_factory=dict)
    """the critic terms behind ``evaluation``, by role: "value", "prm", "orm", "prior" """
    terminal: bool = False
    """the solution ends here (the policy stopped, or the task sees a final answer)"""
    answer: str | None = None
    """the final answer of a terminal node's solution"""
    children: list[int] = field(default_factory=list)
    """indices of the child nodes, in the order they were created"""
    parent: int | None = None
    """index of the parent node; None for the root"""
    depth: int = 0
    """number of options from the root (the root is 0)"""
    width: int = 0
    """n(s): how many children search wants this node to have (adaptive branching)"""
    importance: float | None = None
    """I(s) = max over children o of |v([s, o]) - v(s)|, once children are evaluated"""
    n_merged: int = 0
    """sampled options dropped as near-duplicates of a sibling (they count toward ``width``)"""
    rollouts: list[dict] = field(default_factory=list)
    """the finished fast rollouts from this node, each ``{"steps", "answer", "orm"}``: solutions search wrote
    and paid for, so they are candidates for the answer as much as the finished leaves"""
    state: Any = field(default=None, repr=False, compare=False)
    """the policy's opaque handle to this prefix; None once released (never serialised)"""

    @property
    def value(self) -> float:
        """Mean backed-up value Q = W / N (0 for an unvisited node)."""
        return self.value_sum / self.visits if self.visits else 0.0

    @property
    def prior(self) -> float:
        """The policy's own prior of the option: exp of its mean token log-prob, in (0, 1] (AlphaLLM)."""
        return math.exp(self.logprob / self.n_tokens) if self.n_tokens else 1.0


_SERIALISED = [f.name for f in fields(Node) if f.name != "state"]


@dataclass
class Tree:
    """All nodes of one problem's search, root first, and the path search chose."""

    nodes: list[Node] = field(default_factory=lambda: [Node()])
    """the nodes; ``nodes[0]`` is the root"""
    question: str = ""
    """the problem's question, for critics and the viewer"""
    chosen: list[int] = field(default_factory=list)
    """node indices of the chosen solution, root first (empty until search picks one)"""

    def add(self, parent: int, node: Node) -> int:
        """Append ``node`` as the last child of ``parent``; returns its index."""
        node.parent, node.depth = parent, self.nodes[parent].depth + 1
        self.nodes.append(node)
        index = len(self.nodes) - 1
        self.nodes[parent].children.append(index)
        return index

    def path_to(self, index: int) -> list[int]:
        """Node indices from the root to ``index``, both included."""
        path = [index]
        while (parent := self.nodes[path[-1]].parent) is not None:
            path.append(parent)
        return path[::-1]

    def steps(self, index: int) -> list[str]:
        """The option texts from the root to ``index`` (the root's empty text left out)."""
        return [self.nodes[i].text for i in self.path_to(index)[1:]]

    def leaves(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if not n.children]

    def terminal_leaves(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.terminal and not n.children]

    def tokens_in_tree(self) -> int:
        """Tokens the policy generated that are in the tree (rollouts and merged options excluded)."""
        return sum(n.n_tokens for n in self.nodes)

    def max_depth(self) -> int:
        return max(n.depth for n in self.nodes)

    def trajectory(self, index: int) -> Trajectory:
        """The solution ending at ``index``, scored by the node's mean value."""
        path = [self.nodes[i] for i in self.path_to(index)[1:]]
        node = self.nodes[index]
        return Trajectory(
            [n.text for n in path],
            sum(n.logprob for n in path),
            sum(n.n_tokens for n in path),
            score=node.value,
            answer=node.answer,
        )

    def to_dict(self) -> dict:
        """JSON-ready: every node's fields except the opaque state."""
        nodes = []
        for n in self.nodes:
            d = {name: getattr(n, name) for name in _SERIALISED}
            d["token_ids"], d["children"], d["scores"] = list(n.token_ids), list(n.children), dict(n.scores)
            d["rollouts"] = [dict(r, steps=list(r["steps"])) for r in n.rollouts]
            nodes.append(d)
        return {"question": self.question, "chosen": list(self.chosen), "nodes": nodes}

    @classmethod
    def from_dict(cls, data: dict) -> Tree:
        nodes = []
        for d in data["nodes"]:
            kept = {k: v for k, v in d.items() if k in _SERIALISED}
            kept["token_ids"] = tuple(kept.get("token_ids", ()))
            nodes.append(Node(**kept))
        return cls(nodes, data.get("question", ""), list(data.get("chosen", [])))


def trees_match(a: dict, b: dict, tol: float = 1e-3) -> bool:
    """Whether two serialised trees are the same search: identical structure, texts, visits and answers,
    and floats within ``tol`` (a batched forward pass and a cached one differ in the last bits)."""
    if len(a["nodes"]) != len(b["nodes"]) or a.get("chosen") != b.get("chosen"):
        return False
    return all(_nodes_match(x, y, tol) for x, y in zip(a["nodes"], b["nodes"], strict=True))


def _nodes_match(x: dict, y: dict, tol: float) -> bool:
    if x.keys() != y.keys():
        return False
    for k, vx in x.items():
        vy = y[k]
        if isinstance(vx, float) or isinstance(vy, float):
            if vx is None or vy is None or not math.isclose(vx, vy, abs_tol=tol):
                return False
        elif isinstance(vx, dict):
            if vx.keys() != vy.keys() or any(not math.isclose(vx[s], vy[s], abs_tol=tol) for s in vx):
                return False
        elif vx != vy:
            return False
    return True
