"""Verifiable tasks. ``get_task(name, data=...)`` builds one by name; task modules load lazily."""

from __future__ import annotations

import importlib

from qstar.errors import QstarError
from qstar.tasks.base import Problem, Task

# name -> "module:factory"; a factory takes ``data`` (a file path or None) and keyword options.
TASKS: dict[str, str] = {
    "arith": "qstar.tasks.arith:ArithTask.from_data",
    "gsm8k": "qstar.tasks.gsm8k:GSM8KTask",
    "math500": "qstar.tasks.math500:Math500Task",
    "humaneval": "qstar.tasks.humaneval:HumanEvalTask",
    "code-arith": "qstar.tasks.code_arith:CodeArithTask.from_data",
}


def get_task(name: str, data: str | None = None, **options) -> Task:
    """Build the task ``name``; data-file tasks read ``data`` (a JSONL file)."""
    if name not in TASKS:
        raise QstarError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    module, _, attr = TASKS[name].partition(":")
    factory = importlib.import_module(module)
    for part in attr.split("."):
        factory = getattr(factory, part)
    try:
        return factory(data, **options)
    except TypeError as err:  # an option the task does not take: one line, not a traceback
        if not options:
            raise
        raise QstarError(f"task {name} does not take the option(s) {sorted(options)} ({err})") from err


__all__ = ["TASKS", "Problem", "Task", "get_task"]
