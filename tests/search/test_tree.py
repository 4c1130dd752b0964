import json
import math

from qstar.search.tree import Node, Tree


def small_tree() -> Tree:
    """root -> a -> (b terminal, c); root -> d"""
    tree = Tree(question="add 1 2")
    a = tree.add(0, Node("1+2=3\n", (1, 2, 3), -1.2, 3, visits=2, value_sum=1.5, state=("live", 1)))
    tree.add(a, Node("The answer is 3", (4, 5), -0.4, 2, terminal=True, answer="3", scores={"orm": 0.9}))
    tree.add(a, Node("oops\n", (6,), -3.0, 1))
    tree.add(0, Node("1+2=4\n", (7, 8, 9, 10), -2.0, 4))
    return tree


def test_structure_queries():
    tree = small_tree()
    assert tree.nodes[0].children == [1, 4] and tree.nodes[1].children == [2, 3]
    assert [tree.nodes[i].depth for i in range(5)] == [0, 1, 2, 2, 1]
    assert tree.path_to(2) == [0, 1, 2] and tree.path_to(0) == [0]
    assert tree.steps(2) == ["1+2=3\n", "The answer is 3"] and tree.steps(0) == []
    assert tree.leaves() == [2, 3, 4]
    assert tree.terminal_leaves() == [2]
    assert tree.tokens_in_tree() == 3 + 2 + 1 + 4
    assert tree.max_depth() == 2


def test_node_value_and_prior():
    node = Node("x", (1, 2), logprob=-1.0, n_tokens=2, visits=4, value_sum=3.0)
    assert node.value == 0.75
    assert math.isclose(node.prior, math.exp(-0.5))
    assert Node().value == 0.0 and Node().prior == 1.0


def test_trajectory_sums_the_path():
    traj = small_tree().trajectory(2)
    assert traj.steps == ["1+2=3\n", "The answer is 3"]
    assert math.isclose(traj.logprob, -1.6) and traj.n_tokens == 5
    assert traj.answer == "3" and traj.text == "1+2=3\nThe answer is 3"


def test_to_dict_round_trip_skips_state():
    tree = small_tree()
    tree.chosen = [0, 1, 2]
    data = tree.to_dict()
    text = json.dumps(data)  # plain JSON, no opaque handles
    assert "live" not in text and "state" not in data["nodes"][1]
    again = Tree.from_dict(json.loads(text))
    assert again.to_dict() == data
    assert again.chosen == [0, 1, 2] and again.nodes[1].token_ids == (1, 2, 3)
    assert again.nodes[1].state is None and again.nodes[2].scores == {"orm": 0.9}
