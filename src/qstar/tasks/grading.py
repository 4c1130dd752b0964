"""Conformance of a task's grader: every reference solution must grade correct against its own answer."""

from __future__ import annotations

from qstar.tasks.base import Task


def grade_references(task: Task, split: str = "test") -> tuple[int, int, list[str]]:
    """``(correct, total, ids graded wrong)`` over the task's problems, batched where the task can."""
    problems = task.problems(split)
    solutions = [task.format_solution(p) for p in problems]
    batch = getattr(task, "is_correct_batch", None)
    verdicts = batch(solutions, problems) if batch else [task.is_correct(s, p) for s, p in zip(solutions, problems, strict=True)]
    wrong = [p.id for p, ok in zip(problems, verdicts, strict=True) if not ok]
    return len(problems) - len(wrong), len(problems), wrong
