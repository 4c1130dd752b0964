"""Synthesis on a hand-made tree: the best correct trajectory is kept, pairs are correct/wrong siblings."""

from __future__ import annotations

from qstar.improve.synthesise import (
    Searched,
    best_leaf,
    label_leaves,
    orm_label,
    preference_pairs,
    synthesise,
)
from qstar.search.tree import Node, Tree
from qstar.tasks.arith import ArithTask
from qstar.tasks.base import Problem

TASK = ArithTask()
PROBLEM = Problem("p", "Ann has 3 pens. She buys 5. How many now?", "8")
PROMPT = TASK.prompt(PROBLEM)


def _leaf(text: str, value: float, visits: int = 1) -> Node:
    return Node(text, terminal=True, answer=TASK.extract_answer(text), visits=visits, value_sum=value * visits)


def make_tree(b1_value: float = 0.6) -> Tree:
    """root -> A "3+5=8" -> {A1 "#### 8" (right, 0.9), A2 "#### 7" (wrong, 0.3)}
            -> B "3+5=9" -> {B1 "#### 9" (wrong, b1_value)}
            -> C "3*5=" (unfinished leaf)"""
    tree = Tree([Node()], question=PROBLEM.question)
    a = tree.add(0, Node("3+5=8\n"))
    b = tree.add(0, Node("3+5=9\n"))
    tree.add(0, Node("3*5="))
    tree.add(a, _leaf("#### 8", 0.9))
    tree.add(a, _leaf("#### 7", 0.3))
    tree.add(b, Node("#### 9", terminal=True, answer="9", visits=2, value_sum=2 * b1_value))
    return tree


def _verified(tree: Tree) -> dict:
    return label_leaves(tree, lambda text: TASK.is_correct(text, PROBLEM))


def _item(tree: Tree, samples=(), sample_labels=()) -> Searched:
    return Searched(PROMPT, tree, _verified(tree), list(samples), list(sample_labels))


def test_labels_cover_finished_leaves_only():
    tree = make_tree()
    labels = _verified(tree)
    assert {tree.nodes[i].text: ok for i, ok in labels.items()} == {"#### 8": True, "#### 7": False, "#### 9": False}


def test_best_trajectory_by_critic_score_is_kept_when_correct():
    tree = make_tree()
    assert tree.nodes[best_leaf(tree)].text == "#### 8"
    data = synthesise([_item(tree)], sft_per_problem=2, pairs_per_problem=0)
    assert data.sft == [{"prompt": PROMPT, "completion": "3+5=8\n#### 8"}]
    assert (data.kept_search, data.kept_samples) == (1, 0)
    assert TASK.is_correct(data.sft[0]["completion"], PROBLEM)


def test_a_wrong_best_trajectory_is_not_kept_but_correct_samples_are():
    tree = make_tree(b1_value=0.95)  # the critics prefer a wrong solution
    assert tree.nodes[best_leaf(tree)].text == "#### 9"
    samples = ["3+5=8\n#### 8", "3+5=6\n#### 6", "3+5=8\n#### 8", "5+3=8\n#### 8", "8\n#### 8"]
    labels = [TASK.is_correct(s, PROBLEM) for s in samples]
    data = synthesise([_item(tree, samples, labels)], sft_per_problem=2, pairs_per_problem=0)
    # distinct correct samples only, in order, capped per problem
    assert [r["completion"] for r in data.sft] == ["3+5=8\n#### 8", "5+3=8\n#### 8"]
    assert (data.kept_search, data.kept_samples) == (0, 2)


def test_pairs_are_correct_and_wrong_siblings_deepest_branch_first():
    tree = make_tree()
    pairs = preference_pairs(_item(tree), limit=5)
    assert pairs == [
        {"prompt": PROMPT + "3+5=8\n", "chosen": "#### 8", "rejected": "#### 7"},
        {"prompt": PROMPT, "chosen": "3+5=8\n#### 8", "rejected": "3+5=9\n#### 9"},
    ]
    solutions = {"".join(tree.steps(i)) for i in tree.terminal_leaves()}
    for p in pairs:
        assert set(p) == {"prompt", "chosen", "rejected"}  # TRL's preference format
        assert p["prompt"].startswith(PROMPT)
        prefix = p["prompt"][len(PROMPT):]
        assert prefix + p["chosen"] in solutions and prefix + p["rejected"] in solutions
        assert TASK.is_correct(prefix + p["chosen"], PROBLEM)
        assert not TASK.is_correct(prefix + p["rejected"], PROBLEM)
        # siblings: they part at their first step after the shared prefix
        first = [s.split("\n")[0] for s in (p["chosen"], p["rejected"])]
        assert first[0] != first[1]
    assert preference_pairs(_item(tree), limit=1) == pairs[:1]


def test_no_pairs_without_both_outcomes():
    tree = make_tree()
    all_right = {i: True for i in tree.terminal_leaves()}
    assert preference_pairs(Searched(PROMPT, tree, all_right), limit=5) == []


def test_orm_labels_skip_unsure_solutions():
    assert [orm_label(s, 0.8) for s in (0.95, 0.8, 0.5, 0.15, 0.05)] == [True, True, None, False, False]
    tree = make_tree()
    a1, a2, b1 = tree.terminal_leaves()
    # A2 is unsure, so the only pair left is the root's: A1 against B1
    labels = {a1: True, a2: None, b1: False}
    pairs = preference_pairs(Searched(PROMPT, tree, labels), limit=5)
    assert pairs == [{"prompt": PROMPT, "chosen": "3+5=8\n#### 8", "rejected": "3+5=9\n#### 9"}]


def test_a_tree_without_finished_solutions_gives_nothing():
    tree = Tree([Node()], question=PROBLEM.question)
    tree.add(0, Node("3+5="))
    data = synthesise([_item(tree)], sft_per_problem=1, pairs_per_problem=2)
    assert data.sft == [] and data.pairs == [] and best_leaf(tree) is None


def test_equal_final_scores_are_settled_by_the_step_critics():
    """An oracle scores every right answer 1; the solution whose steps the critics trust more wins."""
    tree = Tree([Node()], question=PROBLEM.question)
    lucky = tree.add(0, Node("3+5=9\n", evaluation=0.2))
    sound = tree.add(0, Node("3+5=8\n", evaluation=0.7))
    for parent, text in ((lucky, "9-1=8\n#### 8"), (sound, "#### 8")):
        leaf = _leaf(text, 1.0)
        leaf.evaluation = 1.0
        tree.add(parent, leaf)
    assert "".join(tree.steps(best_leaf(tree))) == "3+5=8\n#### 8"


def test_the_most_likely_correct_sample_comes_first():
    samples = ["3+5=8\n#### 8", "5+3=8\n#### 8", "3+5=7\n#### 7"]
    item = Searched(PROMPT, None, samples=samples, sample_labels=[True, True, False],
                    sample_logprobs=[-9.0, -2.0, -0.5])
    data = synthesise([item], sft_per_problem=1, pairs_per_problem=2)
    assert data.sft == [{"prompt": PROMPT, "completion": "5+3=8\n#### 8"}] and data.pairs == []
    assert (data.kept_search, data.kept_samples) == (0, 1)


def test_sample_pairs_put_the_shared_steps_in_the_prompt():
    samples = ["3+5=8\n8*2=16\n#### 16", "3+5=8\n8*2=17\n#### 17", "3+5=9\n9*2=18\n#### 18",
               "3+5=8\n8*2=17\n#### 17", "3+5=8\n8*2=16\n#### 16"]
    item = Searched(PROMPT, None, samples=samples, sample_labels=[True, False, False, False, True],
                    sample_logprobs=[-3.0, -1.0, -2.0, -1.0, -3.0])
    assert synthesise([item], 1, 2).pairs == []  # off by default
    data = synthesise([item], sft_per_problem=1, pairs_per_problem=2, sample_pairs_per_problem=5)
    assert data.pairs == [  # one per distinct wrong sample; both diverge right after the shared steps
        {"prompt": PROMPT + "3+5=8\n", "chosen": "8*2=16\n#### 16", "rejected": "8*2=17\n#### 17"},
        {"prompt": PROMPT, "chosen": "3+5=8\n8*2=16\n#### 16", "rejected": "3+5=9\n9*2=18\n#### 18"},
    ]
    assert data.summary()["sample_pairs"] == 2
    assert len(synthesise([item], 1, 2, sample_pairs_per_problem=1).pairs) == 1
    no_correct = Searched(PROMPT, None, samples=samples[1:4], sample_labels=[False] * 3)
    assert synthesise([no_correct], 1, 2, sample_pairs_per_problem=5).pairs == []
