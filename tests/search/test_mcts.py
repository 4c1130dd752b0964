import math
from collections import Counter

import pytest

from qstar.errors import QstarError
from qstar.search import METHODS, Critics
from qstar.search.baselines import SampleConfig, greedy
from qstar.search.mcts import (
    MCTSConfig,
    backpropagate,
    branching_width,
    edit_distance,
    expand,
    importance,
    mcts,
    near_duplicate,
    orm_vote,
    puct_score,
    select_child,
    select_leaves,
    step_seeds,
    uct_score,
)
from qstar.search.tree import Node, Tree
from tests.search.fakes import ConstantCritic, FakePolicy, FakeTask, OracleCritic, is_right_prefix, numbers

ORACLE = Critics(value=OracleCritic())


def run(cfg: MCTSConfig, critics: Critics = ORACLE, rows=None):
    task, policy = FakeTask(rows), FakePolicy()
    return mcts(task.problems(), task, policy, critics, cfg), policy, task


# --- selection -------------------------------------------------------------------------------------------


def hand_tree() -> Tree:
    tree = Tree(nodes=[Node(visits=10, value_sum=6.0)])
    tree.add(0, Node("A", logprob=-1.0, n_tokens=10, visits=6, value_sum=4.2))  # Q .7, P exp(-.1)
    tree.add(0, Node("B", logprob=-0.4, n_tokens=4, visits=1, value_sum=0.5))  # Q .5, P exp(-.1)
    tree.add(0, Node("C", logprob=-6.0, n_tokens=3, visits=3, value_sum=1.8))  # Q .6, P exp(-2)
    return tree


def test_puct_scores_and_choice_by_hand():
    tree = hand_tree()
    root, (a, b, c) = tree.nodes[0], tree.nodes[1:]
    p, s = math.exp(-0.1), math.sqrt(10)
    assert puct_score(root, a, 1.0) == pytest.approx(0.7 + p * s / 7)
    assert puct_score(root, b, 1.0) == pytest.approx(0.5 + p * s / 2)
    assert puct_score(root, c, 1.0) == pytest.approx(0.6 + math.exp(-2) * s / 4)
    assert select_child(tree, 0, MCTSConfig(c_puct=1.0)) == 2  # B: little visited, good prior
    assert select_child(tree, 0, MCTSConfig(c_puct=0.0)) == 1  # A: best mean value
    assert select_child(tree, 0, MCTSConfig(c_puct=0.05)) == 1


def test_uct_scores_and_choice_by_hand():
    tree = hand_tree()
    root, c = tree.nodes[0], tree.nodes[3]
    assert uct_score(root, c, 1.0) == pytest.approx(0.6 + math.sqrt(math.log(10) / 3))
    assert uct_score(root, Node(), 1.0) == math.inf
    assert select_child(tree, 0, MCTSConfig(selection="uct", c_puct=1.0)) == 2
    assert select_child(tree, 0, MCTSConfig(selection="uct", c_puct=0.1)) == 1


def two_open_children(virtual_loss: float) -> tuple[Tree, MCTSConfig]:
    """A root whose two equal children both still want children of their own."""
    tree = Tree(nodes=[Node(visits=2, value_sum=1.0, width=2)])
    for text in ("A", "B"):
        tree.add(0, Node(text, logprob=-1.0, n_tokens=2, visits=1, value_sum=0.5, width=2))
    return tree, MCTSConfig(virtual_loss=virtual_loss)


def test_virtual_loss_spreads_selections_over_leaves():
    tree, cfg = two_open_children(virtual_loss=1.0)
    assert select_leaves(tree, 2, cfg) == [[0, 1], [0, 2]]
    assert [n.virtual_loss for n in tree.nodes] == [2.0, 1.0, 1.0]
    tree, cfg = two_open_children(virtual_loss=0.0)
    assert select_leaves(tree, 2, cfg) == [[0, 1], [0, 1]]  # without it both picks are the same leaf


def test_parallel_steps_spend_one_simulation_per_distinct_leaf():
    results, _, _ = run(MCTSConfig(n_simulations=12, leaves_per_step=3))
    sequential, _, _ = run(MCTSConfig(n_simulations=12, leaves_per_step=1))
    for r, s in zip(results, sequential, strict=True):
        assert all(n.virtual_loss == 0.0 for n in r.tree.nodes)
        # the root is picked 3 times in step 0 (one expansion); later steps pick distinct leaves
        assert 12 / 3 < r.stats["steps"] < s.stats["steps"] == 12
        assert r.tree.nodes[0].visits >= 12


# --- back-propagation and adaptive branching -------------------------------------------------------------


def test_backpropagate_sums_exactly():
    tree = Tree()
    a = tree.add(0, Node("a"))
    b = tree.add(a, Node("b"))
    backpropagate(tree, b, 0.25)
    backpropagate(tree, a, 0.5)
    assert [(n.visits, n.value_sum) for n in tree.nodes] == [(2, 0.75), (2, 0.75), (1, 0.25)]


def test_every_visit_is_one_evaluation_backed_up():
    # two steps, nothing finished yet: every node holds its own evaluation plus its subtree's
    (r,), _, _ = run(MCTSConfig(n_simulations=2), rows=[[3, 5, 4, 2, 1]])
    nodes = r.tree.nodes
    assert not r.tree.terminal_leaves()
    for i, node in enumerate(nodes):
        own = 0 if i == 0 else 1
        assert node.visits == own + sum(nodes[c].visits for c in node.children)
        mine = 0.0 if i == 0 else node.evaluation
        assert node.value_sum == pytest.approx(mine + sum(nodes[c].value_sum for c in node.children))
    assert nodes[0].visits == len(nodes) - 1
    assert nodes[0].value_sum == pytest.approx(sum(n.evaluation for n in nodes[1:]))


def test_branching_width_follows_the_formula():
    cfg = MCTSConfig(c_min=1, c_max=3, alpha=4.0)
    assert [branching_width(i, cfg) for i in (0.0, 0.24, 0.25, 0.3, 0.5, 0.9)] == [1, 1, 2, 2, 3, 3]
    assert branching_width(0.0, MCTSConfig(c_min=2, c_max=5, alpha=10)) == 2
    assert branching_width(0.35, MCTSConfig(c_min=2, c_max=5, alpha=10)) == 4


def test_importance_of_inner_node_and_root():
    tree = Tree()
    s = tree.add(0, Node("s", evaluation=0.5))
    for v in (0.9, 0.1, 0.6):
        tree.add(s, Node("o", evaluation=v))
    assert importance(tree, s) == pytest.approx(0.4)  # max |v([s,o]) - v(s)|
    assert importance(tree, 0) == pytest.approx(0.0)  # root: v = mean of its one child
    tree.add(0, Node("t", evaluation=0.1))
    assert importance(tree, 0) == pytest.approx(0.2)  # |0.5 - 0.3|
    assert importance(tree, 2) is None  # no evaluated child yet


def test_widths_in_a_run_follow_importance_and_nodes_widen():
    cfg = MCTSConfig(n_simulations=10, c_min=1, c_max=3, alpha=4.0, merge_threshold=0.0, seed=1, greedy_first=False)
    results, _, _ = run(cfg)
    widened = []
    for r in results:
        for i, node in enumerate(r.tree.nodes):
            if node.children:
                assert node.width == branching_width(importance(r.tree, i), cfg)
                assert len(node.children) + node.n_merged <= max(node.width, cfg.c_max)
            if i > 0 and len(node.children) > cfg.c_min:
                widened.append(node)
    # an inner node's first expansion gives c_min = 1 child; a right step followed by a slip
    # (|0.1 - 0.9| = 0.8) asks for floor(4 * 0.8) + 1 -> c_max = 3, granted when it is selected again
    assert len(widened) == 1
    assert widened[0].importance == pytest.approx(0.8) and widened[0].width == 3


# --- state merge -----------------------------------------------------------------------------------------


def test_edit_distance_and_near_duplicate():
    assert edit_distance("3+5=8\n", "3+5=8.\n") == pytest.approx(1 / 7)
    assert edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
    assert edit_distance("", "") == 0.0
    assert near_duplicate("3+5=8\n", "3+5=8.\n", 0.15)
    assert not near_duplicate("3+5=8\n", "3+5=8.\n", 0.1)
    assert near_duplicate("same", "same", 0.01) and not near_duplicate("same", "same", 0.0)
    assert not near_duplicate("a" * 50, "b" * 50, 0.5)  # early stop still says "far"
    # different numbers are different steps, however close the texts (1/15 and 1/14 apart here)
    assert edit_distance("1234+5678=6912\n", "1234+5678=6913\n") < 0.1
    assert not near_duplicate("1234+5678=6912\n", "1234+5678=6913\n", 0.1)
    assert not near_duplicate("    y = y - 13\n", "    y = y - 16\n", 0.5)
    assert near_duplicate("    y = y - 13\n", "    y = y  - 13\n", 0.1)  # same numbers, spacing differs


def expand_root(threshold: float, seed: int = 3):
    task, policy = FakeTask([[3, 5, 4]]), FakePolicy()
    tree = Tree([Node(width=4, state=policy.root([task.prompt(task.problems()[0])])[0])])
    cfg = MCTSConfig(merge_threshold=threshold, temperature=1.0, max_resamples=2, greedy_first=False)
    new = expand([tree], [(0, 0)], task, policy, cfg, step_seeds(seed, 0))
    return tree, [i for _, i in new], policy


def test_without_merge_siblings_repeat():
    tree, new, _ = expand_root(0.0)
    texts = [tree.nodes[i].text for i in new]
    assert len(texts) == 4 and len(set(texts)) < 4


def test_state_merge_resamples_near_duplicates():
    tree, new, policy = expand_root(0.2)  # "3+5=8\n" and "3+5=8.\n" are 1/7 apart: one state
    texts = [tree.nodes[i].text for i in new]
    pairs = [(a, b) for k, a in enumerate(texts) for b in texts[k + 1 :]]
    assert all(edit_distance(a, b) >= 0.2 or numbers(a) != numbers(b) for a, b in pairs)
    assert sum(numbers(t) == [3, 5, 8] for t in texts) == 1  # "=8" and "=8." became one state
    assert len(texts) + tree.nodes[0].n_merged == 4  # what could not be made distinct is merged
    assert len(texts) <= 3 and tree.nodes[0].n_merged >= 1
    assert [c["n"] for c in policy.calls[1:]] == [1] * (len(policy.calls) - 1)  # batched resampling rounds
    assert 1 < len(policy.calls) <= 3


# --- whole searches --------------------------------------------------------------------------------------


def test_mcts_with_a_knowing_critic_beats_greedy():
    task = FakeTask()
    problems = task.problems()
    greedy_answers = [r.answer for r in greedy(problems, task, FakePolicy(), Critics(), SampleConfig())]
    assert all(a != p.answer for a, p in zip(greedy_answers, problems, strict=True))
    results, _, _ = run(MCTSConfig())
    for r, p in zip(results, problems, strict=True):
        assert r.answer == p.answer
        assert is_right_prefix(p.question, r.trajectory.steps) and task.is_correct(r.trajectory.text, p)
        assert r.tree.chosen == r.tree.path_to(r.tree.chosen[-1]) and r.tree.nodes[r.tree.chosen[-1]].terminal


@pytest.mark.parametrize("final", ["visits", "value", "vote", "orm-vote"])
def test_final_answer_rules(final):
    results, _, task = run(MCTSConfig(final=final))
    for r, p in zip(results, task.problems(), strict=True):
        assert r.answer == p.answer
        assert all(c.answer is not None for c in r.candidates)
        if final == "value":
            assert r.trajectory.score == max(c.score for c in r.candidates)


def test_orm_vote_weighs_finished_leaves_and_rollouts_by_hand():
    tree = Tree(nodes=[Node(visits=4, value_sum=2.0)])
    tree.add(0, Node("5\n", terminal=True, answer="5", visits=3, value_sum=2.7, scores={"orm": 0.9}))
    b = tree.add(0, Node("7\n", terminal=True, answer="7", visits=1, value_sum=0.6, scores={"orm": 0.6}))
    tree.nodes[0].rollouts = [{"steps": ["7\n"], "answer": "7", "orm": 0.5}]
    (best, node, pool) = orm_vote(tree)  # 5: 0.9 against 7: 0.6 + 0.5
    assert (best.answer, best.score, node) == ("7", 0.6, b) and [x.answer for x in pool] == ["5", "7", "7"]
    c = tree.add(0, Node("6\n", visits=1, value_sum=0.4))  # an open node, rolled out to the end
    tree.nodes[c].rollouts = [{"steps": ["6\n", "8\n"], "answer": "8", "orm": 0.95}]
    tree.nodes[0].rollouts.append({"steps": ["8\n"], "answer": "8", "orm": 0.8})
    (best, node, _) = orm_vote(tree)  # 8 wins on rollouts alone: the path shown is where the best one branched off
    assert (best.answer, best.score, best.steps, node) == ("8", 0.95, ["6\n", "8\n"], c)
    assert orm_vote(Tree(nodes=[Node()])) is None
    again = Tree.from_dict(tree.to_dict())
    assert again.nodes[0].rollouts == tree.nodes[0].rollouts and orm_vote(again)[0].answer == "8"


def test_orm_vote_answers_from_every_finished_solution_search_wrote():
    critics = Critics(value=OracleCritic(), orm=OracleCritic("orm", right=0.8, wrong=0.3))
    results, _, task = run(MCTSConfig(n_simulations=10, final="orm-vote"), critics)
    for r, p in zip(results, task.problems(), strict=True):
        tree = r.tree
        rollouts = [(i, x) for i, n in enumerate(tree.nodes) for x in n.rollouts]
        assert rollouts
        for i, x in rollouts:  # a rollout continues its node's path, and the ORM scored the whole solution
            assert x["steps"][: tree.nodes[i].depth] == tree.steps(i)
            assert x["answer"] == task.extract_answer("".join(x["steps"])) is not None
            assert x["orm"] == (0.8 if is_right_prefix(p.question, x["steps"]) else 0.3)
        leaves = [i for i in tree.terminal_leaves() if "orm" in tree.nodes[i].scores]
        assert len(r.candidates) == len(leaves) + len(rollouts)
        tally = Counter()
        for c in r.candidates:
            tally[c.answer] += c.score
        assert r.answer == max(tally, key=tally.get) == p.answer
        assert r.trajectory.score == max(c.score for c in r.candidates if c.answer == r.answer)
        assert r.stats["finished_rollouts"] == len(rollouts)
        assert r.trajectory.steps[: len(tree.chosen) - 1] == tree.steps(tree.chosen[-1])  # the path it came by
    plain, _, _ = run(MCTSConfig(n_simulations=10, final="visits"), critics)
    assert [len(r.candidates) for r in plain] == [len(r.tree.terminal_leaves()) for r in plain]


def test_an_unknown_answer_rule_is_refused():
    with pytest.raises(QstarError, match="unknown final 'best'.*orm-vote"):
        run(MCTSConfig(final="best"))


def test_orm_vote_without_an_orm_answers_by_visits():
    by_vote, _, _ = run(MCTSConfig(n_simulations=10, final="orm-vote"))
    by_visits, _, _ = run(MCTSConfig(n_simulations=10, final="visits"))
    assert [r.tree.to_dict() for r in by_vote] == [r.tree.to_dict() for r in by_visits]
    assert [r.answer for r in by_vote] == [r.answer for r in by_visits]


def test_same_seed_same_tree_other_seed_other_tree():
    cfg = MCTSConfig(n_simulations=8, leaves_per_step=2)
    first, _, _ = run(cfg)
    again, _, _ = run(cfg)
    other, _, _ = run(MCTSConfig(n_simulations=8, leaves_per_step=2, seed=1))
    assert [r.tree.to_dict() for r in first] == [r.tree.to_dict() for r in again]
    assert [r.tree.to_dict() for r in first] != [r.tree.to_dict() for r in other]


def test_golden_tree_for_seed_0():
    (r,), _, _ = run(MCTSConfig(n_simulations=6, seed=0, greedy_first=False), rows=[[3, 5, 4]])
    root = r.tree.nodes[0]
    summary = [
        (r.tree.nodes[c].text, r.tree.nodes[c].visits, round(r.tree.nodes[c].value_sum, 6))
        for c in root.children
    ]
    assert summary == [("3+5=8.\n", 5, 2.9), ("3+5=9\n", 3, 0.3), ("3+5=7\n", 3, 0.3)]
    assert root.n_merged == 1 and len(r.tree.nodes) == 12
    assert r.tree.chosen == [0, 1, 4, 11] and r.answer == "12"


def test_greedy_first_puts_the_greedy_step_first_in_every_node():
    task, policy = FakeTask(), FakePolicy()
    problems = task.problems()
    results = mcts(problems, task, policy, ORACLE, MCTSConfig(n_simulations=8, leaves_per_step=2))
    greedy_texts = [r.trajectory.text for r in greedy(problems, task, FakePolicy(), Critics(), SampleConfig())]
    for r, text in zip(results, greedy_texts, strict=True):
        path, node = [], 0  # following first children from the root spells greedy's solution
        while r.tree.nodes[node].children:
            node = r.tree.nodes[node].children[0]
            path.append(r.tree.nodes[node].text)
        assert text.startswith("".join(path))
    greedy_calls = [c for c in policy.calls if c["temperature"] == 0.0]
    assert greedy_calls and all(c["n"] == 1 for c in greedy_calls)


def test_greedy_first_without_an_informative_critic_answers_like_greedy():
    task = FakeTask()
    problems = task.problems()
    flat = Critics(value=ConstantCritic())
    want = [r.answer for r in greedy(problems, task, FakePolicy(), Critics(), SampleConfig())]
    got, _, _ = run(MCTSConfig(n_simulations=12), critics=flat)
    assert [r.answer for r in got] == want
    sampled, _, _ = run(MCTSConfig(n_simulations=12, greedy_first=False, seed=2), critics=flat)
    assert [r.answer for r in sampled] != want  # without it, a flat critic leaves the answer to chance


def test_extend_calls_are_batched_across_problems_and_leaves():
    cfg = MCTSConfig(n_simulations=8, leaves_per_step=2, b_orm=1.0, max_resamples=2)
    critics = Critics(value=OracleCritic(), orm=OracleCritic("orm"))
    results, policy, task = run(cfg, critics)
    steps = results[0].stats["steps"]
    assert steps < cfg.n_simulations  # several leaves per step
    per_step = Counter(
        c["seed"] // 1009 for c in policy.calls
    )  # seeds are seed * 1_000_003 + step * 1_009 + call
    assert set(per_step) <= set(range(steps))
    # one call per distinct branching count, the resampling rounds, one rollout call
    assert max(per_step.values()) <= cfg.c_max + cfg.max_resamples + 1
    assert policy.calls[0]["states"] == len(task.problems())  # every root in the first call
    assert sum(c["until"] == "end" for c in policy.calls) <= steps
    assert len(critics.value.batches) <= steps and len(critics.orm.batches) <= steps


def test_every_state_is_released_and_never_extended_after():
    for cfg in (MCTSConfig(n_simulations=30), MCTSConfig(n_simulations=5, leaves_per_step=3, b_orm=1.0)):
        results, policy, _ = run(cfg, Critics(value=OracleCritic(), orm=OracleCritic("orm")))
        assert policy.live_states() == []  # the fake asserts no released state is extended
        assert all(n.state is None for r in results for n in r.tree.nodes)


def test_orm_judges_finished_nodes_and_rollouts_the_rest():
    cfg = MCTSConfig(n_simulations=10, n_rollouts=2)
    results, policy, _ = run(cfg, Critics(value=OracleCritic(), orm=OracleCritic("orm")))
    rollouts = [c for c in policy.calls if c["until"] == "end"]
    assert rollouts and all(c["n"] == 2 for c in rollouts)
    for r in results:
        for node in r.tree.nodes[1:]:
            if node.terminal:
                assert set(node.scores) == {"orm"} and node.evaluation == node.scores["orm"]
            else:
                assert set(node.scores) == {"value", "orm"}
                assert node.evaluation == pytest.approx((node.scores["value"] + node.scores["orm"]) / 2)


def test_prior_term_needs_no_critic_and_some_evaluation_is_required():
    (r,), _, _ = run(MCTSConfig(n_simulations=4, b_prior=1.0), Critics(), rows=[[3, 5, 4]])
    node = r.tree.nodes[1]
    assert set(node.scores) == {"prior"} and node.evaluation == pytest.approx(node.prior)
    with pytest.raises(QstarError):
        run(MCTSConfig(), Critics())
    with pytest.raises(QstarError):
        run(MCTSConfig(c_min=3, c_max=2))


def test_weights_are_normalised_over_the_terms_in_use():
    critics = Critics(value=ConstantCritic("value", 0.2), prm=ConstantCritic("prm", 0.8))
    (r,), _, _ = run(MCTSConfig(n_simulations=2, b_value=1.0, b_prm=3.0), critics, rows=[[3, 5, 4]])
    for node in r.tree.nodes[1:]:
        assert node.evaluation == pytest.approx((0.2 + 3 * 0.8) / 4)


def test_cost_counts_prompts_once_and_every_generated_token():
    results, policy, task = run(MCTSConfig(n_simulations=6))
    assert sum(r.cost.prompt_tokens for r in results) == pytest.approx(
        sum(len(task.prompt(p)) for p in task.problems())
    )
    generated = sum(r.cost.generated_tokens for r in results)
    assert generated == pytest.approx(policy.cost.generated_tokens)
    assert generated >= sum(r.stats["tokens_in_tree"] for r in results)
    assert sum(r.cost.model_calls for r in results) == pytest.approx(len(policy.calls))


def test_registered():
    assert METHODS["mcts"] == (mcts, MCTSConfig)
