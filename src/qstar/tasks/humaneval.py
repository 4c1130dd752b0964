"""HumanEval: complete a Python function from its signature and docstring; graded by running its tests.

The policy continues the prompt (imports, the ``def`` line and the docstring), so a solution is the
function body. Grading follows the reference harness (Chen et al., 2021): the completion is cut where
the function ends, then ``prompt + completion + test + check(entry_point)`` runs in the sandbox, and a
solution is correct when every assertion holds. Code is its own answer: there is no separate final
value to extract and compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from qstar.errors import QstarError, where
from qstar.metrics import pass_at_k
from qstar.tasks.base import Problem
from qstar.tasks.jsonl import first, read_jsonl, text_field
from qstar.tasks.sandbox import SandboxConfig, SandboxResult, run_batch, run_program

DEFAULT_PATH = Path("../shared/data/humaneval/HumanEval.jsonl.gz")
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
# The reference harness stops generation at these; each begins a line at column 0, so cutting at the
# first column-0 line (what truncate_completion does) covers them all, and any other top-level code.
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
# End-of-sequence markers as they appear when a tokenizer's special tokens are decoded into the text.
EOS_MARKERS = ("<|endoftext|>", "</s>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<|end_of_text|>")


def truncate_completion(completion: str) -> str:
    """The function body alone: cut at an EOS marker, then before the first line starting at column 0.

    Prompts end with a newline, so every completion line starts a program line. A non-blank line at
    column 0 means the function has ended; what follows (a second function, a ``print``, a
    ``__main__`` block, a comment) is not graded, exactly as the harness's stop sequences intend.
    This is stricter than those sequences in one way: top-level statements such as ``x = 1`` are cut
    too, so a completion cannot run code outside its function before the tests are defined.
    """
    cut = len(completion)
    for marker in EOS_MARKERS:
        found = completion.find(marker)
        if found != -1:
            cut = min(cut, found)
    body = completion[:cut]
    offset = 0
    for line in body.split("\n"):
        if line[:1] not in ("", " ", "\t"):
            return body[:offset]
        offset += len(line) + 1
    return body


def build_program(completion: str, problem: Problem) -> str:
    """The program the sandbox runs: prompt, truncated completion, the tests, and the call to ``check``."""
    entry_point = problem.meta.get("entry_point", problem.answer)
    body = truncate_completion(completion)
    return f"{problem.question}{body}\n{problem.meta['test']}\ncheck({entry_point})\n"


class HumanEvalTask:
    """The 164 HumanEval problems from a gzipped (or plain) JSONL file, graded in the sandbox."""

    name = "humaneval"

    def __init__(
        self, data: str | None = None, sandbox: SandboxConfig | None = None, step_delimiter: str = "\n"
    ) -> None:
        if not isinstance(step_delimiter, str) or not step_delimiter:
            raise QstarError(f"step_delimiter must be a non-empty string, got {step_delimiter!r}")
        self.data = data
        self.sandbox = sandbox or SandboxConfig()
        self.step_delimiter = step_delimiter
        self._problems: list[Problem] | None = None

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        """All problems, whatever the split: HumanEval is a single test set of 164."""
        if self._problems is None:
            self._problems = self._load(Path(self.data) if self.data is not None else DEFAULT_PATH)
        return first(self._problems, limit)

    def prompt(self, problem: Problem) -> str:
        """The HumanEval prompt itself; the policy writes the body that follows the docstring."""
        return problem.question

    def format_solution(self, problem: Problem) -> str:
        """The canonical body (the training target)."""
        return problem.solution or ""

    def extract_answer(self, solution: str) -> str | None:
        """The solution itself (code is its own answer); None when it is blank."""
        return solution if solution.strip() else None

    def is_terminal(self, solution: str) -> bool:
        """A heuristic for "the function is finished": an EOS marker appeared, or a non-blank line
        starts at column 0 (the body has dedented, as when a model begins a new ``def``).

        It cannot see the end of a body that simply stops (the generator's length limit ends those),
        and a multi-line string with column-0 lines inside the body would end it early.
        """
        if any(marker in solution for marker in EOS_MARKERS):
            return True
        return any(line[:1] not in ("", " ", "\t") for line in solution.split("\n"))

    def is_correct(self, solution: str, problem: Problem) -> bool:
        """Whether the completed function passes the problem's tests in the sandbox."""
        return self.verify(solution, problem).passed

    def is_correct_batch(self, solutions: Sequence[str], problems: Sequence[Problem]) -> list[bool]:
        """``is_correct`` for many pairs at once, run in parallel on the sandbox's workers."""
        return [result.passed for result in self.verify_batch(solutions, problems)]

    def verify(self, solution: str, problem: Problem) -> SandboxResult:
        """The sandbox's full verdict (status, the failing assertion's line) for one solution."""
        return run_program(build_program(solution, problem), self.sandbox)

    def verify_batch(self, solutions: Sequence[str], problems: Sequence[Problem]) -> list[SandboxResult]:
        """``verify`` for many pairs, in order, through ``run_batch``."""
        if len(solutions) != len(problems):
            raise QstarError(f"got {len(solutions)} solutions for {len(problems)} problems")
        programs = [
            build_program(solution, problem) for solution, problem in zip(solutions, problems, strict=True)
        ]
        return run_batch(programs, self.sandbox)

    def pass_at_k(self, samples: Mapping[str, Sequence[str]], k: int) -> float:
        """Mean unbiased pass@k over problems, from ``{task_id: [completion, ...]}`` (n >= k each)."""
        by_id = {problem.id: problem for problem in self.problems("test")}
        unknown = [task_id for task_id in samples if task_id not in by_id]
        if unknown:
            raise QstarError(f"unknown HumanEval task ids: {', '.join(unknown[:5])}")
        short = [task_id for task_id, completions in samples.items() if len(completions) < k]
        if short:
            raise QstarError(f"pass@{k} needs at least {k} samples per problem; {short[0]} has fewer")
        pairs = [
            (task_id, completion) for task_id, completions in samples.items() for completion in completions
        ]
        passed = self.is_correct_batch([c for _, c in pairs], [by_id[task_id] for task_id, _ in pairs])
        correct = dict.fromkeys(samples, 0)
        for (task_id, _), ok in zip(pairs, passed, strict=True):
            correct[task_id] += ok
        scores = [pass_at_k(len(samples[task_id]), correct[task_id], k) for task_id in samples]
        return sum(scores) / len(scores) if scores else 0.0

    def _load(self, path: Path) -> list[Problem]:
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for line, row in read_jsonl(path, FIELDS):
            values = {name: text_field(path, line, row, name) for name in FIELDS}
            task_id = values["task_id"]
            if task_id in seen:
                raise QstarError(
                    f"{where(path, line)}: duplicate task_id {task_id!r} (first on line {seen[task_id]})"
                )
            seen[task_id] = line
            problems.append(
                Problem(
                    id=task_id,
                    question=values["prompt"],
                    answer=values["entry_point"],
                    solution=values["canonical_solution"],
                    meta={"test": values["test"], "entry_point": values["entry_point"]},
                )
            )
        return problems
