"""Step-level preference pairs: the shared steps go into the prompt, the rejected response stops after its own
first step, the chosen one keeps its whole rest."""

from __future__ import annotations

from qstar.search.baselines import split_steps
from qstar.train.pairs import shared_steps, step_pair, step_pairs

Q = "Ann has 3 pens. She gets 5. She doubles them. How many now?\n"


def test_shared_steps_are_whole_steps_only():
    assert shared_steps("3+5=8\n8*2=16\n#### 16", "3+5=8\n8*2=17\n#### 17", "\n") == "3+5=8\n"
    assert shared_steps("3+5=8\n", "3+5=9\n", "\n") == ""
    assert shared_steps("31+5=36\n", "3+5=8\n", "\n") == ""  # a shared first character is not a shared step
    assert shared_steps("3+5=8\n#### 8", "3+5=8\n#### 8", "\n") == "3+5=8\n"  # the unterminated tail is no step
    assert shared_steps("a;;b;;c", "a;;b;;d", ";;") == "a;;b;;"  # a delimiter longer than one character


def test_the_rejected_cut_is_the_first_step_with_its_delimiter():
    assert split_steps("8*2=17\n#### 17", "\n")[0] == "8*2=17\n"
    assert split_steps("#### 17", "\n")[0] == "#### 17"
    assert split_steps("b;;c", ";;")[0] == "b;;"
    pair = {"prompt": "Q\n", "chosen": "a;;b;;c", "rejected": "a;;x;;y"}
    assert step_pair(pair, ";;") == {"prompt": "Q\na;;", "chosen": "b;;c", "rejected": "x;;"}


def test_a_step_pair_blames_the_first_step_where_the_rejected_solution_leaves_the_chosen_one():
    pair = {"prompt": Q, "chosen": "3+5=8\n8*2=16\n#### 16", "rejected": "3+5=8\n8*2=17\n#### 17"}
    assert step_pair(pair, "\n") == {"prompt": Q + "3+5=8\n", "chosen": "8*2=16\n#### 16", "rejected": "8*2=17\n"}
    early = {"prompt": Q, "chosen": "3+5=8\n8*2=16\n#### 16", "rejected": "3+5=9\n9*2=18\n#### 18"}
    assert step_pair(early, "\n") == {"prompt": Q, "chosen": early["chosen"], "rejected": "3+5=9\n"}
    last = {"prompt": Q, "chosen": "3+5=8\n8*2=16\n#### 16", "rejected": "3+5=8\n8*2=16\n#### 61"}
    assert step_pair(last, "\n") == {"prompt": Q + "3+5=8\n8*2=16\n", "chosen": "#### 16", "rejected": "#### 61"}


def test_pairs_with_nothing_left_to_prefer_are_dropped():
    same = {"prompt": Q, "chosen": "3+5=8\n8*2=16\n#### 16", "rejected": "3+5=8\n8*2=16\n#### 16"}
    assert step_pair(same, "\n") is None
    kept = {"prompt": Q, "chosen": "3+5=8\n8*2=16\n#### 16", "rejected": "3+5=8\n8*2=17\n#### 17"}
    assert step_pairs([same, kept, same], "\n") == [step_pair(kept, "\n")]
