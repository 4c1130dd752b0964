"""GSM8K: loading, the ``#### N`` answer format, numeric grading, and the reference conformance check."""

from __future__ import annotations

from pathlib import Path

import pytest

from qstar.errors import QstarError
from qstar.tasks import get_task
from qstar.tasks.base import Problem, Task
from qstar.tasks.gsm8k import GSM8KTask, normalize_number, strip_annotations
from tests.conftest import write_jsonl

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared/data/gsm8k"
needs_data = pytest.mark.skipif(not (DATA / "test.jsonl").exists(), reason="shared GSM8K data not present")


def problem(answer: str) -> Problem:
    return Problem("p", "q", answer)


@pytest.fixture
def task() -> GSM8KTask:
    return GSM8KTask()


def test_is_a_task_built_by_the_registry(tmp_path):
    path = write_jsonl(tmp_path / "mini.jsonl", [{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}])
    task = get_task("gsm8k", path)
    assert isinstance(task, Task)
    assert (task.name, task.step_delimiter) == ("gsm8k", "\n")


def test_loads_problems_with_ids_answers_and_stripped_solutions(tmp_path):
    rows = [
        {"question": "Q1", "answer": "2*3=<<2*3=6>>6 apples\n#### 6"},
        {"question": "Q2", "answer": "It costs $<<1000+234=1234>>1,234\n#### 1,234"},
    ]
    task = GSM8KTask(write_jsonl(tmp_path / "mini.jsonl", rows))
    first, second = task.problems("train")
    assert first == Problem("gsm8k-mini-0", "Q1", "6", "2*3=6 apples\n#### 6")
    assert second.id == "gsm8k-mini-1" and second.answer == "1234"
    assert second.solution == "It costs $1,234\n#### 1,234"
    assert task.problems("test", limit=1) == [first]  # one explicit file serves every split


def test_calculator_annotations_can_be_kept(tmp_path):
    path = write_jsonl(tmp_path / "mini.jsonl", [{"question": "Q", "answer": "2*3=<<2*3=6>>6\n#### 6"}])
    kept = GSM8KTask(path, strip_calculator=False).problems("test")[0]
    assert kept.solution == "2*3=<<2*3=6>>6\n#### 6"
    assert strip_annotations("a <<4/2=2>>2 and <<2+2=4>>4") == "a 2 and 4"


def test_prompt_and_format_solution(task):
    p = Problem("p", "How many?", "18", "9*2=18\n#### 18")
    assert task.prompt(p) == "Question: How many?\nAnswer:\n"
    assert task.format_solution(p).splitlines()[-1] == "#### 18"
    assert task.format_solution(problem("5")) == "#### 5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18", "18"),
        ("1,000", "1000"),
        ("$18.00", "18"),
        ("-5", "-5"),
        ("-$5", "-5"),
        ("$-5", "-5"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("007", "7"),
        ("-0", "0"),
        ("12 apples", "12"),
        ("none", None),
    ],
)
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        ("so 18\n#### 18", "18"),
        ("#### 3\nsecond try\n#### 1,200", "1200"),  # the last #### wins
        ("#### -7 degrees\n", "-7"),
        ("the answer is 18", None),
        ("####\n", None),
    ],
)
def test_extract_answer(task, solution, expected):
    assert task.extract_answer(solution) == expected


@pytest.mark.parametrize(
    ("solution", "answer", "correct"),
    [
        ("#### 18", "18", True),
        ("#### 18.00", "18", True),
        ("#### $1,000", "1000", True),
        ("#### 1000", "1,000", True),
        ("#### -3", "-3", True),
        ("#### 3", "-3", False),
        ("#### 17", "18", False),
        ("#### 18.5", "18", False),
        ("18", "18", False),  # no #### line: no answer
        ("", "18", False),
    ],
)
def test_is_correct(task, solution, answer, correct):
    assert task.is_correct(solution, problem(answer)) is correct


def test_is_terminal(task):
    assert not task.is_terminal("He buys 3 apples.\n")
    assert not task.is_terminal("He buys 3 apples.\n####")
    assert not task.is_terminal("See #### 5 mid-line")
    assert task.is_terminal("He buys 3 apples.\n#### 3")
    assert task.is_terminal("step\n  #### $1,200\nQuestion: next")


def test_unknown_default_split_is_refused(task):
    with pytest.raises(QstarError, match="no split 'dev'"):
        task.problems("dev")


@needs_data
def test_default_data_is_the_shared_split_relative_to_cwd(monkeypatch):
    monkeypatch.chdir(REPO)
    task = GSM8KTask()
    assert task.problems("test", limit=1)[0].id == "gsm8k-test-0"
    assert len(task.problems("train", limit=3)) == 3


@needs_data
@pytest.mark.parametrize(("split", "count"), [("test", 1319), ("train", 7473)])
def test_every_reference_solution_grades_correct(split, count):
    task = GSM8KTask(str(DATA / f"{split}.jsonl"))
    problems = task.problems(split)
    assert len(problems) == count
    assert len({p.id for p in problems}) == count
    graded = [p.id for p in problems if not task.is_correct(task.format_solution(p), p)]
    assert graded == []
    assert all(task.is_terminal(task.format_solution(p)) for p in problems)


@needs_data
def test_perturbed_answers_grade_wrong():
    task = GSM8KTask(str(DATA / "test.jsonl"))
    for p in task.problems("test"):
        head, _, _ = task.format_solution(p).rpartition("####")
        assert not task.is_correct(f"{head}#### {int(p.answer) + 1}", p), p.id


def test_missing_file(tmp_path):
    path = tmp_path / "absent.jsonl"
    with pytest.raises(QstarError, match="no such file") as err:
        GSM8KTask(str(path)).problems("test")
    assert str(path) in str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(QstarError, match="no rows") as err:
        GSM8KTask(str(path)).problems("test")
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (['{"question": "Q", "answer": "#### 1"}', '{"question": "Q", "answer": '], "malformed JSON"),
        (['{"question": "Q", "answer": "#### 1"}', '{"question": "Q"}'], "missing field 'answer'"),
        (['{"question": "Q", "answer": "#### 1"}', '{"question": "Q", "answer": "no final line"}'], "####"),
        (
            ['{"question": "Q", "answer": "#### 1"}', '{"question": 3, "answer": "#### 1"}'],
            "must be a string",
        ),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, lines, words):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(QstarError, match=words) as err:
        GSM8KTask(str(path)).problems("test")
    assert f"{path}:2:" in str(err.value)
