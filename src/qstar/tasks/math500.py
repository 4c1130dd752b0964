"""MATH-500 (and any MATH-format JSONL): competition problems with LaTeX answers in ``\\boxed{...}``.

Answers are expressions, intervals, tuples and text, written many equivalent ways (``\\frac12``,
``0.5``, ``\\dfrac{1}{2}``), so grading is symbolic via math-verify, with a normalised string match
as a fast path and as a fallback when the checker cannot parse an answer.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from qstar.errors import QstarError, where
from qstar.tasks.base import Problem
from qstar.tasks.jsonl import first, jsonl_stem, read_jsonl, text_field

DEFAULT_PATH = Path("../shared/data/math500/test.jsonl")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = "The answer is:"
# LaTeX that changes the look of an answer but not its value.
_COSMETIC = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\s+")


def last_boxed(text: str) -> str | None:
    """The content of the last closed ``\\boxed{...}`` / ``\\fbox{...}``, braces matched; None if none.

    A regex cannot find the end of ``\\boxed{\\frac{1}{2}}``; counting braces (and skipping escaped
    ``\\{`` ``\\}``) can. An unclosed box — a solution cut off mid-answer — does not count.
    """
    for match in reversed(list(_BOX.finditer(text))):
        content = _braced(text, match.end())
        if content is not None:
            return content
    return None


def _braced(text: str, start: int) -> str | None:
    """The text from ``start`` up to the brace closing the one just before it, or None if unclosed."""
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return text[start:i]
        i += 1
    return None


def answer_is(text: str) -> str | None:
    """The rest of the line after the last ``The answer is:``, or None if absent or empty."""
    _, marker, rest = text.rpartition(_ANSWER_IS)
    answer = rest.split("\n", 1)[0].strip().rstrip(".").strip()
    return answer if marker and answer else None


def normalize_latex(answer: str) -> str:
    """A canonical string for a LaTeX answer: the cheap check that catches formatting-only differences."""
    answer = answer.strip().strip("$").rstrip(".")
    answer = re.sub(r"\\[dt]frac", r"\\frac", answer)
    answer = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", answer)
    return _COSMETIC.sub("", answer)


class Math500Task:
    """MATH-format problems from JSONL rows with ``question`` and ``answer`` (a solution with a ``\\boxed``)."""

    name = "math500"
    step_delimiter = "\n\n"

    def __init__(self, data: str | None = None) -> None:
        self.data = data
        self._cache: dict[Path, list[Problem]] = {}

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        """Problems of ``split``; with an explicit ``data`` file that file serves every split.

        The shared MATH-500 file is a test set only: asking it for another split (say, to train on)
        is refused rather than silently training on the test problems.
        """
        path = self._path(split)
        if path not in self._cache:
            self._cache[path] = self._load(path)
        return first(self._cache[path], limit)

    def prompt(self, problem: Problem) -> str:
        return f"Problem: {problem.question}\nSolution:\n"

    def format_solution(self, problem: Problem) -> str:
        """The reference solution; a problem built without one gets just its boxed answer."""
        return problem.solution if problem.solution else f"The answer is $\\boxed{{{problem.answer}}}$."

    def extract_answer(self, solution: str) -> str | None:
        """The last ``\\boxed{}`` content, else what follows ``The answer is:``, else None."""
        boxed = last_boxed(solution)
        if boxed is not None and boxed.strip():
            return boxed.strip()
        return answer_is(solution)

    def is_terminal(self, solution: str) -> bool:
        """True once the solution holds a final answer (a closed box or a ``The answer is:`` line)."""
        return self.extract_answer(solution) is not None

    def is_correct(self, solution: str, problem: Problem) -> bool:
        """Whether the solution's final answer is mathematically equal to the reference answer."""
        predicted = self.extract_answer(solution)
        if predicted is None:
            return False
        if normalize_latex(predicted) == normalize_latex(problem.answer):
            return True
        return equivalent(problem.answer, predicted)

    def _path(self, split: str) -> Path:
        if self.data is not None:
            return Path(self.data)
        if split != "test":
            raise QstarError(f"math500 has only a 'test' split (got {split!r}); pass data=<file> for another")
        return DEFAULT_PATH

    def _load(self, path: Path) -> list[Problem]:
        stem = jsonl_stem(path)
        rows = read_jsonl(path, ("question", "answer"))
        return [
            self._problem(path, line, row, f"math500-{stem}-{index}")
            for index, (line, row) in enumerate(rows)
        ]

    def _problem(self, path: Path, line: int, row: dict, problem_id: str) -> Problem:
        """One problem; a solution with no recoverable final answer is a data error, reported at its line."""
        solution = text_field(path, line, row, "answer")
        answer = self.extract_answer(solution)
        if answer is None:
            raise QstarError(f"{where(path, line)}: field 'answer' has no \\boxed{{...}} or 'The answer is:'")
        question = text_field(path, line, row, "question")
        meta = {"file": str(path), "line": line}
        meta.update({k: v for k, v in row.items() if k not in ("question", "answer")})
        return Problem(problem_id, question, answer, solution, meta=meta)


def equivalent(reference: str, predicted: str) -> bool:
    """Symbolic equality by math-verify (gold first: its comparison is not symmetric)."""
    from math_verify import verify  # slow to import: only graders that need it pay for it

    gold, target = _parse(reference), _parse(predicted)
    if not gold or not target:
        return False
    timeout = {} if _in_main_thread() else {"timeout_seconds": None}
    return bool(verify(gold, target, **timeout))


def _parse(answer: str) -> list:
    """math-verify's parse of a bare answer: it looks for LaTeX inside ``\\boxed{}`` or ``$...$``."""
    from math_verify import parse

    timeout = {} if _in_main_thread() else {"parsing_timeout": None}
    for form in (f"\\boxed{{{answer}}}", f"${answer}$", answer):
        parsed = parse(form, **timeout)
        if parsed:
            return parsed
    return []


def _in_main_thread() -> bool:
    """math-verify's timeouts use ``signal.alarm``, which only the main thread may set."""
    return threading.current_thread() is threading.main_thread()
