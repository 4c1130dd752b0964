"""Search trees -> training data: SFT rows and DPO preference pairs (pure functions, no model).

Per problem the synthesis sees the MCTS tree, a label for each finished solution in it (correct, wrong,
or unsure), and optionally the policy's own whole-solution samples with their labels:

- SFT (TRL's ``prompt`` / ``completion``): the tree's best finished solution by critic score (its mean
  backed-up value) when it is labelled correct, then distinct correct samples, most likely under the policy
  first (a sample that reached the right answer through an unlikely slip is the least trustworthy), up to a
  cap per problem;
- DPO (TRL's ``prompt`` / ``chosen`` / ``rejected``): at a node where the tree branches, a correct solution
  under one child and a wrong one under a sibling. The prompt is the task prompt plus the shared prefix,
  so the pair differs from its first step on and the preference points at the step where they diverge
  (step-level DPO). Deeper branch points come first: they isolate the wrong step best. Optionally also
  from the samples: a correct and a wrong sample of the same problem, their shared leading steps moved
  into the prompt the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from qstar.search.tree import Tree
from qstar.train.pairs import shared_steps

Label = bool | None
"""True: correct; False: wrong; None: unsure (an ORM score between 1 - gamma and gamma)"""


@dataclass
class Searched:
    """What the synthesis knows of one training problem."""

    prompt: str
    """the task's prompt for the problem (the text the policy continues)"""
    tree: Tree | None
    """the MCTS tree (None: the problem was only sampled)"""
    labels: dict[int, Label] = field(default_factory=dict)
    """label of every finished leaf of ``tree``, by node index"""
    samples: list[str] = field(default_factory=list)
    """the policy's own whole solutions (rejection sampling), in sampling order"""
    sample_labels: list[Label] = field(default_factory=list)
    """label of each sample"""
    sample_logprobs: list[float] | None = None
    """the policy's log-probability of each sample (None: keep sampling order)"""


@dataclass
class Synthesis:
    """The training data of one iteration and where it came from."""

    sft: list[dict] = field(default_factory=list)
    """``{"prompt", "completion"}`` rows"""
    pairs: list[dict] = field(default_factory=list)
    """``{"prompt", "chosen", "rejected"}`` rows"""
    kept_search: int = 0
    """problems whose best search trajectory was kept"""
    kept_samples: int = 0
    """SFT rows that came from rejection samples"""
    sample_pairs: int = 0
    """pairs that came from rejection samples (the rest are from search trees)"""

    def summary(self) -> dict:
        return {"sft_rows": len(self.sft), "pairs": len(self.pairs), "kept_search": self.kept_search,
                "kept_samples": self.kept_samples, "sample_pairs": self.sample_pairs}


# --- labels ------------------------------------------------------------------------------------------------


def label_leaves(tree: Tree, judge: Callable[[str], Label]) -> dict[int, Label]:
    """Label every finished leaf of ``tree`` by ``judge(solution text)``."""
    return {i: judge("".join(tree.steps(i))) for i in tree.terminal_leaves()}


def orm_label(score: float, gamma: float) -> Label:
    """An ORM score as a label: correct at >= gamma, wrong at <= 1 - gamma, unsure between."""
    if score >= gamma:
        return True
    return False if score <= 1 - gamma else None


# --- SFT ---------------------------------------------------------------------------------------------------


def critic_score(tree: Tree, leaf: int) -> tuple:
    """How the critics rank a finished solution: its mean backed-up value, then the mean evaluation of the
    steps that led to it (when an oracle gives every right answer the same value, the step critics still
    prefer the solution whose steps look right), then visits; the earlier node wins what is left."""
    steps = [tree.nodes[i].evaluation for i in tree.path_to(leaf)[1:] if tree.nodes[i].evaluation is not None]
    path = sum(steps) / len(steps) if steps else 0.0
    return tree.nodes[leaf].value, path, tree.nodes[leaf].visits, -leaf


def best_leaf(tree: Tree) -> int | None:
    """The finished leaf with the highest critic score; None when the search finished no solution."""
    ends = tree.terminal_leaves()
    return max(ends, key=lambda i: critic_score(tree, i)) if ends else None


def sft_completions(item: Searched, per_problem: int) -> tuple[list[str], bool]:
    """Distinct correct completions of one problem (the search's best first); and whether that best was kept."""
    best = best_leaf(item.tree) if item.tree is not None else None
    from_search = best is not None and item.labels.get(best) is True
    texts = ["".join(item.tree.steps(best))] if from_search else []
    logprobs = item.sample_logprobs or [0.0] * len(item.samples)
    good = [(s, lp) for s, ok, lp in zip(item.samples, item.sample_labels, logprobs, strict=True) if ok is True]
    texts += [s for s, _ in sorted(good, key=lambda g: -g[1])]  # stable: ties keep sampling order
    return list(dict.fromkeys(texts))[:per_problem], from_search


# --- preference pairs --------------------------------------------------------------------------------------


def _ends_below(tree: Tree) -> dict[int, list[int]]:
    """For every node, the finished leaves in its subtree."""
    below: dict[int, list[int]] = {i: [] for i in range(len(tree.nodes))}
    for leaf in tree.terminal_leaves():
        for i in tree.path_to(leaf):
            below[i].append(leaf)
    return below


def branch_pair(tree: Tree, node: int, labels: dict[int, Label], below: dict[int, list[int]]):
    """(correct leaf, wrong leaf) under two different children of ``node``, or None.

    The correct one is the best-scored correct leaf; the wrong one the best-scored wrong leaf under another
    child (the mistake the critics found most convincing: the most informative negative)."""
    kids = tree.nodes[node].children
    good = {c: [i for i in below[c] if labels.get(i) is True] for c in kids}
    bad = {c: [i for i in below[c] if labels.get(i) is False] for c in kids}
    options = [(_best(tree, good[a]), _best(tree, bad[b])) for a in kids for b in kids
               if a != b and good[a] and bad[b]]
    if not options:
        return None
    return max(options, key=lambda p: (critic_score(tree, p[0]), critic_score(tree, p[1])))


def _best(tree: Tree, leaves: list[int]) -> int:
    return max(leaves, key=lambda i: critic_score(tree, i))


def preference_pairs(item: Searched, limit: int) -> list[dict]:
    """Up to ``limit`` pairs of sibling trajectories, one per branch point, deepest branch point first."""
    tree, below = item.tree, _ends_below(item.tree)
    branches = [i for i, n in enumerate(tree.nodes) if len(n.children) >= 2]
    branches.sort(key=lambda i: (-tree.nodes[i].depth, i))
    pairs: list[dict] = []
    for node in branches:
        if len(pairs) >= limit:
            break
        found = branch_pair(tree, node, item.labels, below)
        if found is None:
            continue
        prefix = len(tree.path_to(node)) - 1  # options from the root to the branch point
        chosen, rejected = ("".join(tree.steps(leaf)[prefix:]) for leaf in found)
        pairs.append({"prompt": item.prompt + "".join(tree.steps(node)), "chosen": chosen, "rejected": rejected})
    return pairs


def sample_pairs(item: Searched, limit: int) -> list[dict]:
    """Up to ``limit`` pairs of (correct sample, wrong sample), one per distinct wrong sample in sampling
    order, each against the most likely correct sample; the steps both share go into the prompt."""
    good = [(s, lp) for s, ok, lp in zip(item.samples, item.sample_labels,
                                         item.sample_logprobs or [0.0] * len(item.samples), strict=True) if ok is True]
    if not good or limit <= 0:
        return []
    chosen = max(good, key=lambda g: g[1])[0]  # max keeps the first on ties: sampling order
    wrong = [s for s, ok in zip(item.samples, item.sample_labels, strict=True) if ok is False]
    pairs = []
    for rejected in list(dict.fromkeys(wrong))[:limit]:
        shared = shared_steps(chosen, rejected, "\n")
        pairs.append({"prompt": item.prompt + shared, "chosen": chosen[len(shared):],
                      "rejected": rejected[len(shared):]})
    return pairs


# --- everything --------------------------------------------------------------------------------------------


def synthesise(items: list[Searched], sft_per_problem: int, pairs_per_problem: int,
               sample_pairs_per_problem: int = 0) -> Synthesis:
    """The SFT rows and preference pairs of a batch of searched problems."""
    out = Synthesis()
    for item in items:
        completions, from_search = sft_completions(item, sft_per_problem)
        out.kept_search += from_search
        out.kept_samples += len(completions) - from_search
        out.sft += [{"prompt": item.prompt, "completion": c} for c in completions]
        if item.tree is not None:
            out.pairs += preference_pairs(item, pairs_per_problem)
        found = sample_pairs(item, sample_pairs_per_problem)
        out.sample_pairs += len(found)
        out.pairs += found
    return out
