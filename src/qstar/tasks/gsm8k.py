"""GSM8K: grade-school math word problems whose solutions end in a ``#### N`` line.

The final answer is always a number, so grading is exact numeric comparison after normalising the
ways people write numbers (``1,000``, ``$18``, ``18.00``) — no symbolic checker is needed.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

from qstar.errors import QstarError, where
from qstar.tasks.base import Problem
from qstar.tasks.jsonl import first, jsonl_stem, read_jsonl, text_field

DEFAULT_DIR = Path("../shared/data/gsm8k")
SPLITS = ("train", "test")

# ``<<48/2=24>>``: calculator annotations; they teach the model a tool it will not have at search time.
_CALCULATOR = re.compile(r"<<[^<>]*>>")
# A number as people write it: optional sign and dollar sign, thousands commas, optional decimals.
_NUMBER = re.compile(r"(-?)\s*\$?\s*(-?)\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_FINAL_LINE = re.compile(r"^[ \t]*####(.*)$", re.MULTILINE)


def strip_annotations(text: str) -> str:
    """The solution without its ``<<a*b=c>>`` calculator annotations."""
    return _CALCULATOR.sub("", text)


def normalize_number(text: str) -> str | None:
    """The first number in ``text`` in canonical form (``-1,000.50`` -> ``-1000.5``), or None.

    Canonical strings make reference answers comparable by eye and usable as dictionary keys.
    """
    match = _NUMBER.search(text)
    if match is None:
        return None
    negative = bool(match.group(1) or match.group(2))
    digits = match.group(3).replace(",", "")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    digits = digits.lstrip("0") or "0"
    if digits.startswith("."):
        digits = "0" + digits
    return f"-{digits}" if negative and digits != "0" else digits


def to_fraction(text: str) -> Fraction | None:
    """The exact value of a number string, so that ``18`` equals ``18.00`` without float rounding."""
    number = normalize_number(text)
    return Fraction(number) if number is not None else None


class GSM8KTask:
    """GSM8K problems from JSONL rows with ``question`` and ``answer`` (the solution ending ``#### N``)."""

    name = "gsm8k"
    step_delimiter = "\n"

    def __init__(self, data: str | None = None, strip_calculator: bool = True) -> None:
        self.data = data
        self.strip_calculator = strip_calculator
        self._cache: dict[Path, list[Problem]] = {}

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        """Problems of ``split``; with an explicit ``data`` file that file serves every split."""
        path = self._path(split)
        if path not in self._cache:
            self._cache[path] = self._load(path)
        return first(self._cache[path], limit)

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nAnswer:\n"

    def format_solution(self, problem: Problem) -> str:
        """The reference solution; a problem built without one gets just its ``#### N`` line."""
        return problem.solution if problem.solution else f"#### {problem.answer}"

    def extract_answer(self, solution: str) -> str | None:
        """The number after the last ``####``, normalised; None when there is no ``####`` or no number."""
        _, marker, rest = solution.rpartition("####")
        if not marker:
            return None
        return normalize_number(rest.split("\n", 1)[0])

    def is_terminal(self, solution: str) -> bool:
        """True once some line starts with ``####`` and holds a number: the solution has answered."""
        return any(normalize_number(rest) is not None for rest in _FINAL_LINE.findall(solution))

    def is_correct(self, solution: str, problem: Problem) -> bool:
        """Whether the solution's final number equals the reference exactly (as rationals)."""
        predicted = self.extract_answer(solution)
        if predicted is None:
            return False
        reference = to_fraction(problem.answer)
        return reference is not None and Fraction(predicted) == reference

    def _path(self, split: str) -> Path:
        """The file for ``split``: the given data file, else the shared split file (relative to the cwd)."""
        if self.data is not None:
            return Path(self.data)
        if split not in SPLITS:
            raise QstarError(f"gsm8k has no split {split!r}; choose one of: {', '.join(SPLITS)}")
        return DEFAULT_DIR / f"{split}.jsonl"

    def _load(self, path: Path) -> list[Problem]:
        stem = jsonl_stem(path)
        rows = read_jsonl(path, ("question", "answer"))
        return [
            self._problem(path, line, row, f"gsm8k-{stem}-{index}") for index, (line, row) in enumerate(rows)
        ]

    def _problem(self, path: Path, line: int, row: dict, problem_id: str) -> Problem:
        """One problem; a solution without a numeric ``####`` line is a data error, reported at its line."""
        solution = text_field(path, line, row, "answer")
        if self.strip_calculator:
            solution = strip_annotations(solution)
        answer = self.extract_answer(solution)
        if answer is None:
            raise QstarError(f"{where(path, line)}: field 'answer' has no final '#### <number>' line")
        question = text_field(path, line, row, "question")
        return Problem(problem_id, question, answer, solution, meta={"file": str(path), "line": line})
