"""HumanEval: loading, completion truncation, the terminal heuristic, and grading in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qstar.errors import QstarError
from qstar.tasks import get_task
from qstar.tasks.base import Task
from qstar.tasks.humaneval import HumanEvalTask, build_program, truncate_completion
from qstar.tasks.sandbox import SandboxConfig
from tests.conftest import write_jsonl

DATA = Path(__file__).resolve().parents[2].parent / "shared/data/humaneval/HumanEval.jsonl.gz"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared HumanEval data not present")
FAST = SandboxConfig(timeout_s=2, cpu_s=2)

ADD = {
    "task_id": "Mini/0",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n',
    "canonical_solution": "    return a + b\n",
    "test": "\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}
REV = {
    "task_id": "Mini/1",
    "prompt": 'from typing import List\n\n\ndef rev(xs: List[int]) -> List[int]:\n    """Reversed."""\n',
    "canonical_solution": "    return xs[::-1]\n",
    "test": "\n\ndef check(candidate):\n    assert candidate([1, 2]) == [2, 1]\n",
    "entry_point": "rev",
}


@pytest.fixture
def mini(tmp_path) -> HumanEvalTask:
    return HumanEvalTask(write_jsonl(tmp_path / "mini.jsonl.gz", [ADD, REV], gz=True), sandbox=FAST)


def test_is_a_task_built_by_the_registry(tmp_path):
    task = get_task("humaneval", write_jsonl(tmp_path / "m.jsonl", [ADD]), step_delimiter="\n\n")
    assert isinstance(task, Task)
    assert (task.name, task.step_delimiter) == ("humaneval", "\n\n")
    assert get_task("humaneval").step_delimiter == "\n"
    with pytest.raises(QstarError, match="step_delimiter"):
        HumanEvalTask(step_delimiter="")


def test_problems_prompt_and_reference(mini):
    problems = mini.problems("train")
    assert [p.id for p in problems] == ["Mini/0", "Mini/1"] and mini.problems("test", limit=1) == problems[:1]
    add = problems[0]
    assert (add.question, add.answer, add.solution) == (ADD["prompt"], "add", ADD["canonical_solution"])
    assert add.meta == {"test": ADD["test"], "entry_point": "add"}
    assert mini.prompt(add) == ADD["prompt"] and mini.format_solution(add) == "    return a + b\n"
    assert mini.extract_answer("    return 1\n") == "    return 1\n" and mini.extract_answer(" \n") is None


def test_grading_in_the_sandbox(mini):
    add, rev = mini.problems("test")
    assert mini.is_correct("    return a + b\n", add)
    assert not mini.is_correct("    return a - b\n", add)
    assert not mini.is_correct("    return None\n", add)
    assert mini.is_correct_batch(["    return a + b\n", "    return xs\n"], [add, rev]) == [True, False]
    verdict = mini.verify("    return a - b\n", add)
    assert verdict.status == "failed" and "assert candidate(2, 3) == 5" in verdict.detail
    with pytest.raises(QstarError, match="2 solutions for 1 problems"):
        mini.is_correct_batch(["a", "b"], [add])


def test_pass_at_k_uses_the_sandbox_verdicts(mini):
    samples = {"Mini/0": ["    return a + b\n", "    return 0\n"], "Mini/1": ["    return xs\n"] * 2}
    assert mini.pass_at_k(samples, 1) == pytest.approx((0.5 + 0.0) / 2)
    assert mini.pass_at_k(samples, 2) == pytest.approx((1.0 + 0.0) / 2)
    with pytest.raises(QstarError, match="unknown"):
        mini.pass_at_k({"Nope/0": ["x"]}, 1)


def test_truncation_keeps_only_the_function_body():
    body = "    x = 1\n\n    return x\n"
    assert truncate_completion(body) == body
    for tail in ("def g():\n    pass\n", "class C:\n    pass\n", "if __name__ == '__main__':\n", "print(f(1))\n",
                 "# done\n", "check = lambda c: None\n"):  # fmt: skip
        assert truncate_completion(body + "\n" + tail) == body + "\n"
    assert truncate_completion("    return 1<|endoftext|>garbage") == "    return 1"
    assert truncate_completion("def f():\n    pass\n") == ""


def test_is_terminal_heuristic(mini):
    assert not mini.is_terminal("    x = 1\n    return x\n")
    assert not mini.is_terminal("    if x:\n\n        return 1\n")
    assert mini.is_terminal("    return x\n\n\ndef main():\n")
    assert mini.is_terminal("    return x\nprint(")
    assert mini.is_terminal("    return x</s>")


def test_hostile_completions_fail_without_hurting_the_caller(mini):
    add = mini.problems("test")[0]
    hostile = [
        "    import os\n    os._exit(0)\n",  # exit "successfully" before the tests run
        "    raise SystemExit(0)\n",
        "    while True:\n        pass\n",
        "    import os\n    os.fork()\n    return a + b\n",
        "    return a + b\nimport sys\nsys.exit(0)\n",  # top-level code after the body is cut off...
        "    return a + b\ndef check(candidate):\n    pass\n",  # ...so is a replacement for check
    ]
    assert mini.is_correct_batch(hostile, [add] * len(hostile)) == [False, False, False, False, True, True]


def test_program_layout(mini):
    add = mini.problems("test")[0]
    program = build_program("    return a + b\nprint('x')\n", add)
    assert program == ADD["prompt"] + "    return a + b\n\n" + ADD["test"] + "\ncheck(add)\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ('{"task_id": "a"\n', "m.jsonl:1: malformed JSON"),
        (json.dumps({k: v for k, v in ADD.items() if k != "test"}) + "\n", "m.jsonl:1: missing field 'test'"),
        (json.dumps(ADD) + "\n" + json.dumps(ADD) + "\n", "m.jsonl:2: duplicate task_id"),
        (json.dumps({**ADD, "prompt": 3}) + "\n", "m.jsonl:1: field 'prompt' must be a string"),
    ],
)
def test_data_errors_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "m.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(QstarError, match=message):
        HumanEvalTask(str(path)).problems("test")


@needs_data
def test_all_164_canonical_solutions_pass_and_broken_ones_fail():
    task = HumanEvalTask(str(DATA))
    problems = task.problems("test")
    assert len(problems) == 164 and len({p.id for p in problems}) == 164
    canonical = task.verify_batch([task.format_solution(p) for p in problems], problems)
    assert [
        (p.id, r.status, r.detail) for p, r in zip(problems, canonical, strict=True) if not r.passed
    ] == []
    broken = task.is_correct_batch(["    return None\n"] * len(problems), problems)
    assert not any(broken)
