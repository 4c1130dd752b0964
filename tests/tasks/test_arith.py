import pytest

from qstar.errors import QstarError
from qstar.tasks import get_task
from qstar.tasks.arith import ArithConfig, ArithTask
from qstar.tasks.base import Problem


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = ArithTask(ArithConfig(seed=3)).problems("test", 50)
    b = ArithTask(ArithConfig(seed=3)).problems("test", 50)
    c = ArithTask(ArithConfig(seed=4)).problems("test", 50)
    assert a == b
    assert [p.question for p in a] != [p.question for p in c]


def test_splits_are_disjoint_and_hash_assigned():
    task = ArithTask()
    train = task.problems("train", 20_000)
    test = task.problems("test")
    assert len(test) == 200 and len({p.question for p in test}) == 200
    assert not {p.question for p in train} & {p.question for p in test}
    assert all(task.split_of(p.question) == "test" for p in test)
    # A fresh training stream (another seed) still never yields a test question.
    fresh = task.problems("train", 5000, seed=99)
    assert not {p.question for p in fresh} & {p.question for p in test}


def test_more_training_problems_do_not_shift_the_test_split():
    task = ArithTask()
    assert task.problems("train", 10)[:10] == task.problems("train", 100)[:10]


def test_reference_solutions_are_correct_arithmetic():
    task = ArithTask()
    for p in task.problems("test"):
        lines = p.solution.split("\n")
        assert lines[-1] == f"#### {p.answer}"
        value = None
        for line in lines[:-1]:
            lhs, rhs = line.split("=")
            assert eval(lhs) == int(rhs)  # noqa: S307 - our own generated digits and operators
            assert value is None or lhs.startswith(str(value))
            value = int(rhs)
        assert str(value) == p.answer
        assert task.is_correct(task.format_solution(p), p)


def test_difficulty_knobs():
    task = ArithTask(ArithConfig(min_steps=3, max_steps=3, ops="+", operand_max=5))
    for p in task.problems("train", 100):
        steps = p.solution.split("\n")[:-1]
        assert len(steps) == 3
        assert all("+" in s and int(s.split("+")[1].split("=")[0]) <= 5 for s in steps)


def test_grading_by_hand():
    task = ArithTask()
    p = task.problems("test", 1)[0]
    assert task.extract_answer("1+2=3\n#### 3") == "3"
    assert task.extract_answer("1+2=3\n") is None
    assert task.is_terminal("1+2=3\n#### 3") and not task.is_terminal("1+2=3\n")
    assert task.is_correct(f"x\n#### {p.answer}", p)
    assert not task.is_correct(f"x\n#### {int(p.answer) + 1}", p)
    assert not task.is_correct("no answer", p)
    assert task.extract_answer("#### 1\n#### 2") == "2"  # the last final line counts


def test_first_wrong_step_is_where_a_solution_leaves_the_reference():
    task = ArithTask()
    p = Problem(id="x", question="Ann has 23 pens. She buys 15. She loses 9. How many now?", answer="29",
                solution="23+15=38\n38-9=29\n#### 29")
    assert task.first_wrong_step("23+15=38\n38-9=29\n#### 29", p) is None
    assert task.first_wrong_step("23+15=38\n38-9=29", p) is None  # unfinished, nothing written is wrong
    assert task.first_wrong_step("23+15=37\n37-9=28\n#### 28", p) == 0  # arithmetic, carried on
    assert task.first_wrong_step("23+15=38\n38-8=30\n#### 30", p) == 1  # operand misread
    assert task.first_wrong_step("23+15=38\n38-9=29\n29+1=30\n#### 30", p) == 2  # a step too many
    assert task.first_wrong_step("23+15=38\n38-9=29\n#### 28", p) == 2  # only the answer line


def test_error_kind_names_what_the_first_wrong_step_got_wrong():
    task = ArithTask()
    p = Problem(id="x", question="Ann has 23 pens. She buys 15. She loses 9. How many now?", answer="29",
                solution="23+15=38\n38-9=29\n#### 29")
    assert task.error_kind("23+15=38\n38-9=29\n#### 29", p) is None
    assert task.error_kind("23+15=37\n37-9=28\n#### 28", p) == "result"
    assert task.error_kind("23+15=38\n38-8=30\n#### 30", p) == "operand"
    assert task.error_kind("23+15=38\n38+9=47\n#### 47", p) == "operation"
    assert task.error_kind("23+15=38\n23-9=14\n#### 14", p) == "carry"
    assert task.error_kind("23+15=38\n#### 38", p) == "too-few-steps"
    assert task.error_kind("23+15=38\n38-9=29\n29+1=30\n#### 30", p) == "too-many-steps"
    assert task.error_kind("23+15=38\n38-9=29\n#### 28", p) == "answer-line"
    assert task.error_kind("23+15=38\n38-9=2)9\n#### 29", p) == "malformed"


def test_errors():
    with pytest.raises(QstarError, match="no --data"):
        get_task("arith", "file.jsonl")
    with pytest.raises(QstarError, match="unknown task"):
        get_task("nope")
    with pytest.raises(QstarError, match="splits"):
        ArithTask().problems("validation")
