"""Option-level MCTS as in AlphaLLM (Tian et al., 2024, "Toward Self-Improvement of LLMs via Imagination,
Searching, and Criticizing"), batched across problems and leaves.

An action is an option: the tokens up to the task's step delimiter. One simulation step runs for
every problem at once:

1. select: up to ``leaves_per_step`` root-to-leaf paths per tree by PUCT (or UCT); a virtual loss on
   the paths already picked in this step pushes the next pick elsewhere;
2. expand: every selected leaf gets the options it still wants (adaptive branching), all trees'
   leaves in one ``policy.extend`` call per distinct count; an option too close to a sibling is
   resampled (state merge);
3. evaluate: each new node gets v = weighted critics (value, PRM, ORM over fast rollouts, the policy's
   own prior), one batched call per critic and one rollout call;
4. back up each new evaluation along its path, and re-derive each expanded node's width from its
   importance I(s).

A selected leaf that cannot grow (finished solution, or ``max_depth``) backs up its evaluation again.

Where the paper leaves room, this file chooses:

- every new child is evaluated at once and counts as one visit of its own evaluation, so for each node
  N(s) = (its own evaluations) + sum of its children's N (the root has none of its own);
- adaptive branching: the root's first expansion has ``root_width`` children (c_max) and any other node's
  c_min; after each expansion of s, n(s) is recomputed from I(s), and a node selected again with fewer
  than n(s) children (merged duplicates counting as children) is widened by the difference instead of
  descended. The root's v(s) is the mean of its children's evaluations (it is never scored itself);
- state merge compares option texts only with siblings (same parent), by normalised edit distance;
- virtual loss counts ``virtual_loss`` extra visits of value 0 on every node of a selected path until
  the step is backed up; a leaf picked twice in a step is expanded once and spends one simulation.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from qstar.errors import QstarError
from qstar.search.baselines import split_steps
from qstar.search.common import Critics, measure, split_cost, vote
from qstar.search.protocols import Critic, Option, Policy, SearchResult, Trajectory
from qstar.search.tree import Node, Tree
from qstar.tasks.base import Problem, Task

FinalRule = Literal["visits", "value", "vote", "orm-vote"]
FINAL_RULES = get_args(FinalRule)
"""how MCTS picks its answer (``MCTSConfig.final``)"""


@dataclass
class MCTSConfig:
    n_simulations: int = 24
    """simulations per problem: each expands one leaf, or backs up a leaf that cannot grow once more"""
    leaves_per_step: int = 1
    """leaves selected per tree and expanded together in one step (1 = sequential MCTS, exactly AlphaLLM)"""
    virtual_loss: float = 1.0
    """visits of value 0 added along a path once it is selected, until its step is backed up"""
    selection: Literal["puct", "uct"] = "puct"
    """PUCT with the option prior exp(mean token log-prob) (AlphaLLM), or UCT without a prior"""
    c_puct: float = 1.0
    """exploration constant (PUCT's c_puct, UCT's c)"""
    temperature: float = 0.8
    """sampling temperature of expansions"""
    greedy_first: bool = True
    """the first option of every node is the policy's greedy step (the rest are sampled): the tree always
    holds the greedy solution's path, and with PUCT's prior it is tried first, so search departs from what
    greedy decoding answers only where the critics rate another branch higher. False: all sampled
    (AlphaLLM); a small policy's samples are often worse than its greedy step"""
    max_option_tokens: int = 256
    """token budget of one option"""
    max_depth: int = 12
    """options from the root; a node this deep is not expanded"""
    c_min: int = 2
    """fewest children of an expanded node; also the width of a node's first expansion"""
    c_max: int = 4
    """most children of a node"""
    alpha: float = 4.0
    """adaptive branching: n(s) = max(c_min, min(floor(alpha * I(s)) + 1, c_max))"""
    root_width: int | None = None
    """children of the root on its first expansion, before any value is known (None: c_max); keep it >= 2,
    since the root's v is its children's mean and one child gives I = 0"""
    merge_threshold: float = 0.1
    """state merge: an option whose normalised edit distance to a sibling is below this is resampled (0: off)"""
    max_resamples: int = 2
    """resampling rounds for near-duplicates; one still too close after them is merged into its sibling"""
    b_value: float = 1.0
    """weight of the value critic in a node's evaluation"""
    b_prm: float = 1.0
    """weight of the PRM"""
    b_orm: float = 1.0
    """weight of the ORM, averaged over ``n_rollouts`` fast rollouts to the end"""
    b_prior: float = 0.0
    """weight of the policy's own mean token probability of the option (a critic before trained ones exist)"""
    n_rollouts: int = 1
    """fast rollouts per new node for the ORM term"""
    rollout_temperature: float = 0.8
    """sampling temperature of the rollouts"""
    max_rollout_tokens: int = 512
    """token budget of one rollout"""
    final: FinalRule = "orm-vote"
    """the answer: the most-visited path, the best mean value among finished leaves, a value-weighted vote over
    them, or an ORM-weighted vote over every finished solution search wrote: the finished leaves and the fast
    rollouts, which search pays for anyway (without an ORM: "visits"). On arith with the earlier default
    critics (a 2-epoch trunk), the same trees answered 0.792 by visits and 0.800 by ORM vote on 600 validation
    problems, and 0.775 and 0.795 on the 200 test problems ("value": 0.778, "vote": 0.775 on validation)"""
    seed: int = 0
    """seed of every sampling call (with the step index)"""


Pairs = list[tuple[int, int]]
"""(tree index, node index) pairs: the unit of work batched across problems"""
Seeds = Callable[[], int]
"""hands out the seed of the next extend call (see ``step_seeds``)"""


# --- selection -------------------------------------------------------------------------------------------


def _mean(node: Node) -> float:
    """Q with pending selections counted as losses (value 0), so parallel picks spread out."""
    n = node.visits + node.virtual_loss
    return node.value_sum / n if n else 0.0


def puct_score(parent: Node, child: Node, c: float) -> float:
    """Q(s,o) + c * P(o|s) * sqrt(N(s)) / (1 + N(s,o)), P = exp(mean token log-prob)."""
    n_parent = parent.visits + parent.virtual_loss
    return _mean(child) + c * child.prior * math.sqrt(n_parent) / (1 + child.visits + child.virtual_loss)


def uct_score(parent: Node, child: Node, c: float) -> float:
    """Q(s,o) + c * sqrt(ln N(s) / N(s,o)); an unvisited child first."""
    n_child = child.visits + child.virtual_loss
    if n_child == 0:
        return math.inf
    return _mean(child) + c * math.sqrt(math.log(max(parent.visits + parent.virtual_loss, 1)) / n_child)


SELECTION: dict[str, Callable[[Node, Node, float], float]] = {"puct": puct_score, "uct": uct_score}


def select_child(tree: Tree, index: int, cfg: MCTSConfig) -> int:
    """The child of ``index`` with the best selection score; ties go to the earliest child."""
    parent, score = tree.nodes[index], SELECTION[cfg.selection]
    return max(parent.children, key=lambda c: score(parent, tree.nodes[c], cfg.c_puct))


def can_grow(node: Node, cfg: MCTSConfig) -> bool:
    return not node.terminal and node.depth < cfg.max_depth


def wanted(node: Node, cfg: MCTSConfig) -> int:
    """How many more options the node wants now (merged duplicates count as children)."""
    return max(0, node.width - len(node.children) - node.n_merged) if can_grow(node, cfg) else 0


def select_path(tree: Tree, cfg: MCTSConfig) -> list[int]:
    """Descend from the root to a node that wants children, or to a leaf that cannot grow."""
    path = [0]
    while not wanted(tree.nodes[path[-1]], cfg) and tree.nodes[path[-1]].children:
        path.append(select_child(tree, path[-1], cfg))
    return path


def select_leaves(tree: Tree, k: int, cfg: MCTSConfig) -> list[list[int]]:
    """``k`` paths, each picked after a virtual loss was put on the ones before (the caller clears it)."""
    paths = []
    for _ in range(k):
        path = select_path(tree, cfg)
        for i in path:
            tree.nodes[i].virtual_loss += cfg.virtual_loss
        paths.append(path)
    return paths


# --- adaptive branching and back-propagation ---------------------------------------------------------------


def importance(tree: Tree, index: int) -> float | None:
    """I(s) = max over evaluated children o of |v([s, o]) - v(s)|.

    The root is never evaluated itself; its v is the mean of its children's, a sample estimate of
    v(root) = E_o v([root, o]) under the policy.
    """
    node = tree.nodes[index]
    values = [tree.nodes[c].evaluation for c in node.children if tree.nodes[c].evaluation is not None]
    if not values:
        return None
    base = node.evaluation if node.evaluation is not None else sum(values) / len(values)
    return max(abs(v - base) for v in values)


def branching_width(imp: float, cfg: MCTSConfig) -> int:
    """n(s) = max(c_min, min(floor(alpha * I(s)) + 1, c_max))."""
    return max(cfg.c_min, min(math.floor(cfg.alpha * imp) + 1, cfg.c_max))


def backpropagate(tree: Tree, index: int, value: float) -> None:
    """Add one visit of ``value`` to ``index`` and every ancestor."""
    for i in tree.path_to(index):
        tree.nodes[i].visits += 1
        tree.nodes[i].value_sum += value


# --- state merge -------------------------------------------------------------------------------------------


def _levenshtein(a: str, b: str, stop: float = math.inf) -> int:
    """Edit distance; stops early with a lower bound once that bound reaches ``stop``."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) >= stop:  # every alignment passes through this row
            return min(cur)
        prev = cur
    return prev[-1]


def edit_distance(a: str, b: str) -> float:
    """Levenshtein distance over the longer length, in [0, 1]."""
    longer = max(len(a), len(b))
    return _levenshtein(a, b) / longer if longer else 0.0


NUMBER = re.compile(r"\d+(?:\.\d+)?")


def near_duplicate(a: str, b: str, threshold: float) -> bool:
    """``edit_distance(a, b) < threshold``, without the full quadratic table for clearly different options.

    Options that write different numbers are never duplicates, however close their texts: in math and code a
    step's numbers are its content (``60-36=24`` vs ``60-36=26``, ``y = y - 13`` vs ``y = y - 16``), and
    merging such siblings would drop exactly the alternative that search exists to try.
    """
    longer = max(len(a), len(b))
    if threshold <= 0 or longer == 0:
        return threshold > 0
    if NUMBER.findall(a) != NUMBER.findall(b):
        return False
    stop = threshold * longer
    return abs(len(a) - len(b)) < stop and _levenshtein(a, b, stop) < stop


# --- expansion ---------------------------------------------------------------------------------------------


def step_seeds(seed: int, step: int) -> Seeds:
    """Seeds for the extend calls of one step, fixed by (seed, step, call number): a search replays exactly."""
    calls = itertools.count()
    return lambda: (seed * 1_000_003 + step * 1_009 + next(calls)) % 2**31


def add_option(tree: Tree, parent: int, option: Option, task: Task, width: int = 0) -> int:
    """Append ``option`` under ``parent``; it is terminal if the policy stopped or the task sees an answer."""
    text = "".join(tree.steps(parent)) + option.text
    terminal = option.finished or task.is_terminal(text)
    node = Node(
        option.text,
        tuple(option.token_ids),
        option.logprob,
        option.n_tokens,
        terminal=terminal,
        answer=task.extract_answer(text) if terminal else None,
        width=width,
        state=option.state,
    )
    return tree.add(parent, node)


def sample_options(
    policy: Policy, states: list, counts: list[int], temperature: float, max_tokens: int, seeds: Seeds,
    greedy: list[bool] | None = None,
) -> list[list[Option]]:
    """``counts[r]`` options of ``states[r]``: one extend call per distinct count, every tree in it. Rows
    with ``greedy[r]`` get the greedy option first (one extra batched call at temperature 0)."""
    out: list[list[Option]] = [[] for _ in states]
    counts = list(counts)
    first = [r for r, c in enumerate(counts) if c and greedy and greedy[r]]
    if first:
        got = policy.extend([states[r] for r in first], 1, temperature=0.0, until="step",
                            max_new_tokens=max_tokens, seed=seeds())
        for r, options in zip(first, got, strict=True):
            out[r], counts[r] = list(options), counts[r] - 1
    for n in sorted(set(counts) - {0}):
        rows = [r for r, c in enumerate(counts) if c == n]
        got = policy.extend(
            [states[r] for r in rows],
            n,
            temperature=temperature,
            until="step",
            max_new_tokens=max_tokens,
            seed=seeds(),
        )
        for r, options in zip(rows, got, strict=True):
            out[r] += options
    return out


def _merge(
    parents: list,
    siblings: list[list[str]],
    samples: list[list[Option]],
    policy: Policy,
    cfg: MCTSConfig,
    seeds: Seeds,
) -> tuple[list[list[Option]], list[int]]:
    """State merge: keep each option far from its siblings' texts, resample the others from ``parents[r]``
    (batched, ``max_resamples`` rounds). Returns the kept options and the count merged away, per request."""
    kept: list[list[Option]] = [[] for _ in samples]
    dropped: list[Option] = []
    offers = [(r, o) for r, options in enumerate(samples) for o in options]
    for round_ in range(cfg.max_resamples + 1):
        retry = []
        for r, option in offers:
            if any(near_duplicate(option.text, s, cfg.merge_threshold) for s in siblings[r]):
                retry.append(r)
                dropped.append(option)
            else:
                kept[r].append(option)
                siblings[r].append(option.text)
        if not retry or round_ == cfg.max_resamples:
            break
        again = sample_options(policy, [parents[r] for r in retry], [1] * len(retry), cfg.temperature,
                               cfg.max_option_tokens, seeds)
        offers = [(r, options[0]) for r, options in zip(retry, again, strict=True)]
    if dropped:
        policy.release([o.state for o in dropped])
    merged = [0] * len(samples)
    for r in retry:
        merged[r] += 1
    return kept, merged


def expand(
    trees: list[Tree], leaves: Pairs, task: Task, policy: Policy, cfg: MCTSConfig, seeds: Seeds
) -> Pairs:
    """Give every ``(tree, node)`` in ``leaves`` the options it wants; returns the new ``(tree, node)`` pairs."""
    nodes = [trees[t].nodes[i] for t, i in leaves]
    parents = [n.state for n in nodes]
    first = [cfg.greedy_first and not n.children and not n.n_merged for n in nodes]
    samples = sample_options(policy, parents, [wanted(n, cfg) for n in nodes], cfg.temperature,
                             cfg.max_option_tokens, seeds, greedy=first)
    siblings = [[trees[t].nodes[c].text for c in n.children] for (t, _), n in zip(leaves, nodes, strict=True)]
    kept, merged = _merge(parents, siblings, samples, policy, cfg, seeds)
    new = []
    for (t, i), node, options, m in zip(leaves, nodes, kept, merged, strict=True):
        node.n_merged += m
        new += [(t, add_option(trees[t], i, o, task, width=cfg.c_min)) for o in options]
    return new


# --- evaluation --------------------------------------------------------------------------------------------


def active_terms(critics: Critics, cfg: MCTSConfig) -> dict[str, float]:
    """The evaluation terms in use, by role, with their weights (a weight of 0 or a missing critic drops one)."""
    weights = {"value": cfg.b_value, "prm": cfg.b_prm, "orm": cfg.b_orm, "prior": cfg.b_prior}
    terms = {r: w for r, w in weights.items() if w > 0 and (r == "prior" or critics.get(r) is not None)}
    if not terms:
        raise QstarError("mcts needs an evaluation: give critics (value, prm or orm) or set b_prior > 0")
    return terms


def node_terms(node: Node, terms: dict[str, float]) -> dict[str, float]:
    """A finished solution is judged by the ORM alone when there is one; any other node by every term."""
    return {"orm": terms["orm"]} if node.terminal and "orm" in terms else terms


def _orm(
    trees: list[Tree], new: Pairs, task: Task, policy: Policy, critic: Critic, cfg: MCTSConfig, seeds: Seeds
) -> None:
    """ORM on finished nodes' solutions and on ``n_rollouts`` fast rollouts of the others, in one call each."""
    open_ = [(t, i) for t, i in new if not trees[t].nodes[i].terminal]
    owners = [(t, i) for t, i in new if trees[t].nodes[i].terminal]
    solutions = [trees[t].steps(i) for t, i in owners]
    finished: list[int] = []  # indices into ``solutions`` of the rollouts that reached an end
    if open_:
        rollouts = policy.extend(
            [trees[t].nodes[i].state for t, i in open_],
            cfg.n_rollouts,
            temperature=cfg.rollout_temperature,
            until="end",
            max_new_tokens=cfg.max_rollout_tokens,
            seed=seeds(),
        )
        policy.release([o.state for options in rollouts for o in options])
        for (t, i), options in zip(open_, rollouts, strict=True):
            for o in options:
                owners.append((t, i))
                solutions.append(
                    trees[t].steps(i) + [s for s in split_steps(o.text, task.step_delimiter) if s]
                )
                if o.finished:
                    finished.append(len(solutions) - 1)
    scores = critic.score([trees[t].question for t, _ in owners], solutions)
    per: dict[tuple[int, int], list[float]] = defaultdict(list)
    for key, s in zip(owners, scores, strict=True):
        per[key].append(s)
    for k in finished:
        t, i = owners[k]
        answer = task.extract_answer("".join(solutions[k]))
        trees[t].nodes[i].rollouts.append({"steps": solutions[k], "answer": answer, "orm": scores[k]})
    for (t, i), ss in per.items():
        trees[t].nodes[i].scores["orm"] = sum(ss) / len(ss)


def evaluate(
    trees: list[Tree], new: Pairs, task: Task, policy: Policy, critics: Critics, cfg: MCTSConfig, seeds: Seeds
) -> None:
    """Fill ``scores`` and ``evaluation`` of every new node: one batched call per critic."""
    terms = active_terms(critics, cfg)
    for role in ("value", "prm"):
        todo = [(t, i) for t, i in new if role in node_terms(trees[t].nodes[i], terms)]
        if todo:
            scores = critics.get(role).score(
                [trees[t].question for t, _ in todo], [trees[t].steps(i) for t, i in todo]
            )
            for (t, i), s in zip(todo, scores, strict=True):
                trees[t].nodes[i].scores[role] = s
    if "orm" in terms and new:
        _orm(trees, new, task, policy, critics.orm, cfg, seeds)
    for t, i in new:
        node = trees[t].nodes[i]
        if "prior" in node_terms(node, terms):
            node.scores["prior"] = node.prior
        used = {r: w for r, w in node_terms(node, terms).items() if r in node.scores}
        node.evaluation = sum(w * node.scores[r] for r, w in used.items()) / sum(used.values())


# --- the search --------------------------------------------------------------------------------------------


def release_nodes(policy: Policy, nodes: list[Node]) -> None:
    """Give the policy back the states search will not extend again."""
    states = [n.state for n in nodes if n.state is not None]
    if states:
        policy.release(states)
    for n in nodes:
        n.state = None


def release_tree(policy: Policy, tree: Tree) -> None:
    """Release the root (the policy forgets its descendants with it) and drop every handle."""
    release_nodes(policy, tree.nodes[:1])
    for node in tree.nodes:
        node.state = None


def simulate(
    trees: list[Tree],
    budget: list[int],
    task: Task,
    policy: Policy,
    critics: Critics,
    cfg: MCTSConfig,
    step: int,
) -> None:
    """One batched simulation step over every tree; ``budget[t]`` simulations are left for tree ``t``."""
    seeds = step_seeds(cfg.seed, step)
    grow, again = [], []
    for t, tree in enumerate(trees):
        # a leaf picked twice in one step is expanded once and spends one simulation
        leaves = list(
            dict.fromkeys(p[-1] for p in select_leaves(tree, min(cfg.leaves_per_step, budget[t]), cfg))
        )
        budget[t] -= len(leaves)
        for leaf in leaves:
            (grow if wanted(tree.nodes[leaf], cfg) else again).append((t, leaf))
    new = expand(trees, grow, task, policy, cfg, seeds)
    evaluate(trees, new, task, policy, critics, cfg, seeds)
    for t, i in new:
        backpropagate(trees[t], i, trees[t].nodes[i].evaluation)
    for t, i in again:
        backpropagate(trees[t], i, trees[t].nodes[i].evaluation or 0.0)
    for t, i in grow:
        node = trees[t].nodes[i]
        node.importance = importance(trees[t], i)
        if node.importance is not None:
            node.width = branching_width(node.importance, cfg)
    release_nodes(policy, [trees[t].nodes[i] for t, i in new if not can_grow(trees[t].nodes[i], cfg)])
    for tree in trees:
        for node in tree.nodes:
            node.virtual_loss = 0.0


def finished_solutions(tree: Tree) -> tuple[list[Trajectory], list[int], list[bool]]:
    """Every finished solution search wrote, scored by the ORM: the finished leaves (those the ORM scored) and
    the fast rollouts. Beside each, the node it ends at or, for a rollout, branched off from, and whether it
    is a leaf of the tree."""
    solutions, nodes, is_leaf = [], [], []
    for i in tree.terminal_leaves():
        if "orm" in tree.nodes[i].scores:
            trajectory = tree.trajectory(i)
            trajectory.score = tree.nodes[i].scores["orm"]
            solutions.append(trajectory)
            nodes.append(i)
            is_leaf.append(True)
    for i, node in enumerate(tree.nodes):
        for r in node.rollouts:
            solutions.append(Trajectory(list(r["steps"]), score=r["orm"], answer=r["answer"]))
            nodes.append(i)
            is_leaf.append(False)
    return solutions, nodes, is_leaf


def orm_vote(tree: Tree) -> tuple[Trajectory, int, list[Trajectory]] | None:
    """The ORM-weighted vote over :func:`finished_solutions`: the best-scored solution with the winning answer,
    the node to show as the chosen path (the best leaf with that answer, else the node the best rollout
    branched off from) and the solutions voted on; None when search finished nothing the ORM scored."""
    solutions, nodes, is_leaf = finished_solutions(tree)
    answer = vote(solutions, [s.score for s in solutions])
    if answer is None:
        return None
    with_answer = [k for k, s in enumerate(solutions) if s.answer == answer]
    best = max(with_answer, key=lambda k: solutions[k].score)
    leaves = [k for k in with_answer if is_leaf[k]]
    shown = max(leaves, key=lambda k: solutions[k].score) if leaves else best
    return solutions[best], nodes[shown], solutions


def choose_leaf(tree: Tree, final: str) -> int:
    """The node whose solution search answers with (see ``MCTSConfig.final``; "orm-vote" is :func:`orm_vote`'s,
    and without an ORM it answers by visits)."""
    ends = tree.terminal_leaves()
    if final in ("visits", "orm-vote") or not ends:
        return most_visited_leaf(tree, ends)
    if final == "vote":
        answer = vote(
            [Trajectory([], answer=tree.nodes[i].answer) for i in ends], [tree.nodes[i].value for i in ends]
        )
        ends = [i for i in ends if tree.nodes[i].answer == answer] or ends
    return max(ends, key=lambda i: (tree.nodes[i].value, tree.nodes[i].visits, -i))


def most_visited_leaf(tree: Tree, ends: list[int]) -> int:
    """Follow the most-visited child from the root, staying on paths to a finished solution if any exists."""
    allowed = {a for i in ends for a in tree.path_to(i)}
    i = 0
    while kids := [c for c in tree.nodes[i].children if not allowed or c in allowed]:
        i = max(kids, key=lambda c: (tree.nodes[c].visits, tree.nodes[c].value, -c))
    return i


def _result(tree: Tree, cfg: MCTSConfig, steps: int) -> SearchResult:
    voted = orm_vote(tree) if cfg.final == "orm-vote" else None
    leaf = voted[1] if voted else choose_leaf(tree, cfg.final)
    tree.chosen = tree.path_to(leaf)
    chosen = voted[0] if voted else tree.trajectory(leaf)
    # the candidates are what the answer was chosen from: the rollouts too when they took part in the vote
    candidates = voted[2] if voted else [tree.trajectory(i) for i in tree.terminal_leaves()]
    stats = {
        "simulations": cfg.n_simulations,
        "steps": steps,
        "nodes": len(tree.nodes),
        "depth": tree.max_depth(),
        "tokens_in_tree": tree.tokens_in_tree(),
        "terminals": len(tree.terminal_leaves()),
        "finished_rollouts": sum(len(n.rollouts) for n in tree.nodes),
        "merged": sum(n.n_merged for n in tree.nodes),
    }
    return SearchResult(chosen.answer, chosen, candidates, tree=tree, stats=stats)


def mcts(
    problems: list[Problem], task: Task, policy: Policy, critics: Critics, cfg: MCTSConfig
) -> list[SearchResult]:
    """Option-level MCTS for every problem, batched; one SearchResult per problem."""
    check_config(cfg)
    active_terms(critics, cfg)  # fail before any model call
    with measure(policy) as spent:
        roots = policy.root([task.prompt(p) for p in problems])
        width = cfg.root_width or cfg.c_max
        trees = [
            Tree([Node(width=width, state=s)], question=p.question)
            for p, s in zip(problems, roots, strict=True)
        ]
        budget = [cfg.n_simulations] * len(trees)
        step = 0
        while any(budget):
            simulate(trees, budget, task, policy, critics, cfg, step)
            step += 1
            for t, tree in enumerate(trees):  # done, or nothing left to grow: free its states now
                if not budget[t] or not any(wanted(n, cfg) for n in tree.nodes):
                    release_tree(policy, tree)
        for tree in trees:
            release_tree(policy, tree)
        results = [_result(tree, cfg, step) for tree in trees]
    for r, c in zip(results, split_cost(spent, len(problems)), strict=True):
        r.cost = c
    return results


def check_config(cfg: MCTSConfig) -> None:
    if not 1 <= cfg.c_min <= cfg.c_max:
        raise QstarError(f"mcts needs 1 <= c_min <= c_max, got c_min={cfg.c_min}, c_max={cfg.c_max}")
    if cfg.leaves_per_step < 1 or cfg.n_simulations < 0:
        raise QstarError("mcts needs leaves_per_step >= 1 and n_simulations >= 0")
    if cfg.b_orm > 0 and cfg.n_rollouts < 1:
        raise QstarError("the ORM term needs n_rollouts >= 1 (or set b_orm 0)")
    if cfg.final not in FINAL_RULES:
        raise QstarError(f"mcts: unknown final {cfg.final!r}; choose one of: {', '.join(FINAL_RULES)}")
