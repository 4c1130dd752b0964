"""MATH-500: boxed-answer extraction, symbolic grading with math-verify, and the reference conformance check."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from qstar.errors import QstarError
from qstar.tasks import get_task
from qstar.tasks.base import Problem, Task
from qstar.tasks.math500 import Math500Task, last_boxed
from tests.conftest import write_jsonl

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared/data/math500/test.jsonl"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared MATH-500 data not present")


def problem(answer: str) -> Problem:
    return Problem("p", "q", answer)


@pytest.fixture
def task() -> Math500Task:
    return Math500Task()


def test_is_a_task_built_by_the_registry(tmp_path):
    path = write_jsonl(tmp_path / "mini.jsonl", [{"question": "1+1?", "answer": "It is $\\boxed{2}$."}])
    task = get_task("math500", path)
    assert isinstance(task, Task)
    assert (task.name, task.step_delimiter) == ("math500", "\n\n")


def test_loads_problems_with_the_boxed_answer(tmp_path):
    rows = [
        {"question": "Half?", "answer": "So $\\boxed{\\frac{1}{2}}$.The answer is: \\frac{1}{2}", "level": 2},
        {"question": "Q2", "answer": "Only a line.\nThe answer is: 7"},
    ]
    task = Math500Task(write_jsonl(tmp_path / "mini.jsonl", rows))
    first, second = task.problems("train")  # one explicit file serves every split
    assert first.id == "math500-mini-0" and first.answer == "\\frac{1}{2}"
    assert first.solution == rows[0]["answer"] and first.meta["level"] == 2
    assert second.answer == "7"
    assert task.prompt(first) == "Problem: Half?\nSolution:\n"
    assert task.format_solution(first) == rows[0]["answer"]


def test_shared_default_is_test_only(task, monkeypatch):
    with pytest.raises(QstarError, match="only a 'test' split"):
        task.problems("train")
    if DATA.exists():
        monkeypatch.chdir(REPO)
        assert Math500Task().problems("test", limit=2)[1].id == "math500-test-1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\sqrt{2}}", "\\sqrt{2}"),
        ("\\boxed{\\boxed{3}}", "3"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{x^{2}}", "x^{2}"),
        ("\\boxed {5}", "5"),
        ("\\boxed{\\frac{1}{2}", None),  # cut off mid-answer
        ("no box", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        ("so $\\boxed{4}$.The answer is: 4", "4"),
        ("no box.\nThe answer is: \\frac{3}{4}.", "\\frac{3}{4}"),
        ("\\boxed{12} and then an unclosed \\boxed{1", "12"),
        ("nothing here", None),
        ("The answer is:", None),
    ],
)
def test_extract_answer(task, solution, expected):
    assert task.extract_answer(solution) == expected


@pytest.mark.parametrize(
    ("answer", "solution", "correct"),
    [
        ("\\frac{1}{2}", "$\\boxed{0.5}$", True),
        ("0.5", "$\\boxed{\\frac12}$", True),
        ("\\frac{1}{2}", "$\\boxed{\\dfrac{1}{2}}$", True),
        ("\\frac{14}{3}", "$\\boxed{\\frac{14}{3}}$", True),
        ("\\frac{639}{40}", "$\\boxed{15\\frac{39}{40}}$", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3,\\pi/2)}", True),
        ("\\frac{\\sqrt{2}}{2}", "\\boxed{\\frac{1}{\\sqrt{2}}}", True),
        ("x^2+2x+1", "The answer is: (x+1)^2", True),
        ("3", "\\boxed{\\boxed{3}}", True),
        ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}", True),
        ("10", "\\fbox{10}", True),
        ("1,000", "\\boxed{1000}", True),
        ("\\frac{1}{2}", "$\\boxed{\\frac{1}{3}}$", False),
        ("p - q", "\\boxed{q - p}", False),
        ("\\text{Evelyn}", "\\boxed{\\text{Bob}}", False),
        ("2", "the answer is two", False),
        ("2", "\\boxed{2", False),
    ],
)
def test_is_correct(task, answer, solution, correct):
    assert task.is_correct(solution, problem(answer)) is correct


def test_grading_works_off_the_main_thread(task):
    """math-verify's default timeouts use signal.alarm, which raises outside the main thread."""
    results: list[bool] = []
    worker = threading.Thread(
        target=lambda: results.append(task.is_correct("\\boxed{0.5}", problem("\\frac12")))
    )
    worker.start()
    worker.join()
    assert results == [True]


def test_is_terminal(task):
    assert not task.is_terminal("Let $x = 2$.\n\n")
    assert not task.is_terminal("So the answer is $\\boxed{\\frac{1}{")
    assert task.is_terminal("So the answer is $\\boxed{\\frac{1}{2}}$.")


@needs_data
def test_every_reference_solution_grades_correct():
    task = Math500Task(str(DATA))
    problems = task.problems("test")
    assert len(problems) == 500
    start = time.perf_counter()
    graded = [p.id for p in problems if not task.is_correct(task.format_solution(p), p)]
    assert graded == []
    assert time.perf_counter() - start < 30
    assert all(task.is_terminal(task.format_solution(p)) for p in problems)


@needs_data
def test_every_reference_answer_is_symbolically_equal_to_itself():
    """The string fast path hides math-verify; check that the checker itself accepts every reference."""
    from qstar.tasks.math500 import equivalent

    problems = Math500Task(str(DATA)).problems("test")
    assert [p.id for p in problems if not equivalent(p.answer, p.answer)] == []


@needs_data
def test_perturbed_answers_grade_wrong():
    task = Math500Task(str(DATA))
    for p in task.problems("test"):
        solution = task.format_solution(p)
        cut = solution.rfind("\\boxed")
        perturbed = solution[:cut] + f"\\boxed{{{p.answer} + 1}}"
        assert not task.is_correct(perturbed, p), p.id


def test_missing_file(tmp_path):
    path = tmp_path / "absent.jsonl"
    with pytest.raises(QstarError, match="no such file") as err:
        Math500Task(str(path)).problems("test")
    assert str(path) in str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(QstarError, match="no rows") as err:
        Math500Task(str(path)).problems("test")
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("second", "words"),
    [
        ('{"question": "Q", "answer": "\\\\boxed{1', "malformed JSON"),
        ('{"answer": "\\\\boxed{1}"}', "missing field 'question'"),
        ('{"question": "Q", "answer": "no final answer"}', "boxed"),
        ('{"question": "Q", "answer": null}', "must be a string"),
        ('"just a string"', "JSON object"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, second, words):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "Q", "answer": "\\\\boxed{1}"}\n' + second + "\n")
    with pytest.raises(QstarError, match=words) as err:
        Math500Task(str(path)).problems("test")
    assert f"{path}:2:" in str(err.value)
