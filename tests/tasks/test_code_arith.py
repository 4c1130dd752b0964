import pytest

from qstar.errors import QstarError
from qstar.tasks import get_task
from qstar.tasks.base import Problem, Task
from qstar.tasks.code_arith import CodeArithConfig, CodeArithTask, evaluate_steps

# One problem written by hand, hidden tests included, so grading is checked against known values.
HAND = Problem(
    id="hand",
    question="# x times 3, plus 2, minus x\ndef f(x):",
    answer="",
    meta={"tests": [[-2, -2], [0, 2], [1, 4], [5, 12], [7, 16]]},
)
GOOD = "    y = x * 3\n    y = y + 2\n    y = y - x\n    return y"


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = CodeArithTask(CodeArithConfig(seed=3)).problems("test", 50)
    b = CodeArithTask(CodeArithConfig(seed=3)).problems("test", 50)
    c = CodeArithTask(CodeArithConfig(seed=4)).problems("test", 50)
    assert a == b and [p.meta for p in a] == [p.meta for p in b]
    assert [p.question for p in a] != [p.question for p in c]


def test_splits_are_disjoint_and_hash_assigned():
    task = CodeArithTask()
    train = task.problems("train", 10_000)
    test = task.problems("test")
    assert len(test) == 200 and len({p.question for p in test}) == 200
    assert not {p.question for p in train} & {p.question for p in test}
    assert all(task.split_of(p.question) == "test" for p in test)
    fresh = task.problems("train", 3000, seed=99)  # the stream pretraining draws never meets the test split
    assert not {p.question for p in fresh} & {p.question for p in test}
    assert task.problems("train", 10) == task.problems("train", 100)[:10]


def test_reference_solutions_pass_their_hidden_tests_in_the_sandbox():
    task = CodeArithTask()
    problems = task.problems("test")
    solutions = [task.format_solution(p) for p in problems]
    assert all(task.extract_answer(s) == s == p.answer for s, p in zip(solutions, problems, strict=True))
    assert all(task.is_terminal(s) for s in solutions)
    assert all(task.is_correct_batch(solutions, problems))


def test_a_perturbed_body_fails():
    task = CodeArithTask()
    problems = task.problems("test", 40)
    # Off by one in the last step, or the last step dropped: each changes f on some hidden input.
    shifted = [p.answer.replace("\n    return y", "\n    y = y + 1\n    return y") for p in problems]
    dropped = ["\n".join(p.answer.split("\n")[:-2] + ["    return y"]) for p in problems]
    assert not any(task.is_correct_batch(shifted, problems))
    assert not any(task.is_correct_batch(dropped, problems))
    results = task.verify_batch(shifted[:1], problems[:1])
    assert results[0].status == "failed" and "should be" in results[0].detail


def test_grading_by_hand():
    task = CodeArithTask()
    assert task.prompt(HAND) == "# x times 3, plus 2, minus x\ndef f(x):\n"
    assert task.is_correct(GOOD, HAND)
    assert task.is_correct(GOOD + "\n", HAND)
    assert task.is_correct("    return 2 * x + 2", HAND)  # any equivalent body passes
    assert task.is_correct(GOOD + "\nprint('after the function')", HAND)  # cut where the function ends
    assert not task.is_correct(GOOD.replace("+ 2", "+ 3"), HAND)
    assert not task.is_correct("    y = x * 3\n    y = y + 2", HAND)  # no return: fails without running
    assert not task.is_correct("    y = z * 3\n    return y", HAND)  # NameError: crashed
    assert not task.is_correct("    while True: pass\n    return 0", HAND)  # stopped by the time limit
    assert task.verify("    y = z\n    return y", HAND).status == "crashed"


def test_answers_and_terminal_states():
    task = CodeArithTask()
    assert task.extract_answer(GOOD + "  \n    y = 0\n") == GOOD  # through the first return line
    assert task.extract_answer("    y = x * 3\n") is None
    assert task.extract_answer("def g(x):\n    return x") is None  # a column-0 line ends the body
    assert not task.is_terminal("    y = x * 3\n")
    assert task.is_terminal("    y = x * 3\n    return y")
    assert task.is_terminal("    y = x * 3\ndef g")  # the function has ended without a return


def test_difficulty_knobs():
    cfg = CodeArithConfig(min_steps=4, max_steps=4, ops="+", arg_prob=0.0, const_range=(1, 5), args="n")
    task = CodeArithTask(cfg)
    for p in task.problems("train", 100):
        lines = p.answer.split("\n")
        assert len(lines) == 5 and lines[-1] == "    return y"
        assert lines[0].startswith("    y = n + ") and p.question.endswith("\ndef f(n):")
        assert all(" + " in ln and 1 <= int(ln.rsplit(" ", 1)[1]) <= 5 for ln in lines[:-1])
        assert len(p.meta["tests"]) == 5 and len({x for x, _ in p.meta["tests"]}) == 5


def test_evaluate_steps_matches_the_reference_body():
    assert evaluate_steps([("*", "3"), ("+", "2"), ("-", "x")], "x", 5) == 12
    assert evaluate_steps([("*", "x"), ("-", "1")], "x", -4) == 15


@pytest.mark.parametrize(
    "options",
    [{"min_steps": 3, "max_steps": 2}, {"ops": "/"}, {"args": "y"}, {"n_tests": 30}, {"mul_range": (1, 3)}],
)
def test_bad_knobs_are_refused(options):
    with pytest.raises(QstarError):
        CodeArithConfig(**options)


def test_registry_and_protocol():
    task = get_task("code-arith")
    assert isinstance(task, CodeArithTask) and isinstance(task, Task)
    assert task.name == "code-arith" and task.step_delimiter == "\n"
    assert get_task("code-arith", const_range=[1, 3]).config.const_range == (1, 3)  # JSON lists accepted
    assert task.to_dict()["name"] == "code-arith"
    with pytest.raises(QstarError):
        get_task("code-arith", data="problems.jsonl")
    with pytest.raises(QstarError):
        task.problems("dev")
