"""``arith``: the built-in, embedded default task — seeded multi-step arithmetic word problems.

GSM8K-style but compact, so a 1M-parameter character-level model learns it on a 2-core CPU
in minutes while still making enough mistakes to leave room for search::

    Ann has 23 pens. She buys 15. She loses 9. How many now?
    23+15=38
    38-9=29
    #### 29

Train and test splits never overlap: a problem belongs to the split its hash picks, so the
same question can never be generated for both.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field

from qstar.errors import QstarError
from qstar.tasks.base import Problem, config_from_options
from qstar.tasks.generated import draw_distinct, problem_id, split_of, split_size

NAMES = ["Ann", "Bob", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lu", "Max", "Ned"]
ITEMS = ["pens", "cards", "eggs", "coins", "books", "cups", "rocks", "beads", "nuts", "toys"]
# Phrases for each operation; {n} is the operand. Short on purpose: the model must copy numbers.
PHRASES = {
    "+": ["buys {n}", "gets {n}", "finds {n}", "wins {n}"],
    "-": ["loses {n}", "gives {n}", "sells {n}", "uses {n}"],
    "*": ["{times} them"],
}
TIMES = {2: "doubles", 3: "triples", 4: "quadruples"}
FINAL_RE = re.compile(r"####\s*(-?\d+)")
STEP_RE = re.compile(r"^(-?\d+)([+\-*])(\d+)=(-?\d+)$")
ERROR_KINDS = ("result", "operand", "operation", "carry", "too-few-steps", "too-many-steps", "answer-line",
               "malformed")
"""what :meth:`ArithTask.error_kind` can call the first wrong step of a solution"""


@dataclass
class ArithConfig:
    """Difficulty knobs of the generator."""

    min_steps: int = 2
    """fewest operations in a problem"""
    max_steps: int = 4
    """most operations in a problem"""
    start_range: tuple[int, int] = (5, 60)
    """range of the starting quantity"""
    operand_max: int = 40
    """largest operand of + and -"""
    mul_max: int = 3
    """largest factor of * (2 to 4: the question says doubles / triples / quadruples)"""
    ops: str = "+-*"
    """operations to draw from"""
    max_value: int = 300
    """no intermediate result exceeds this (products that would are redrawn as additions)"""
    test_fraction: float = 0.2
    """share of the problem space (by hash) that belongs to the test split"""
    seed: int = 0
    """the seed of the problem stream; the same seed always gives the same problems"""
    n_test: int = 200
    """size of the fixed test split"""


@dataclass
class ArithTask:
    """The world model of the arithmetic task (see :class:`qstar.tasks.base.Task`)."""

    config: ArithConfig = field(default_factory=ArithConfig)
    name: str = "arith"
    step_delimiter: str = "\n"

    @classmethod
    def from_data(cls, data: str | None = None, **options) -> ArithTask:
        if data is not None:
            raise QstarError("the arith task generates its problems; it takes no --data file")
        return cls(config_from_options(ArithConfig, options, "arith"))

    # -- problems ---------------------------------------------------------------------------------
    def problems(self, split: str, limit: int | None = None, seed: int | None = None) -> list[Problem]:
        """Problems of ``split``, deterministic for the config's seed (or ``seed`` for a fresh stream)."""
        n = split_size(self.name, split, limit, self.config.n_test)
        return list(self.iter_problems(split, n, seed))

    def iter_problems(self, split: str, n: int, seed: int | None = None):
        """Yield ``n`` distinct problems of ``split`` (see :func:`qstar.tasks.generated.draw_distinct`)."""
        base = self.config.seed if seed is None else seed
        for question, (steps, answer) in draw_distinct(self.name, split, n, base, self.config.test_fraction,
                                                       self._draw):
            yield Problem(
                id=problem_id(self.name, split, question),
                question=question,
                answer=str(answer),
                solution="\n".join([*steps, f"#### {answer}"]),
            )

    def split_of(self, question: str) -> str:
        """The split a question belongs to, by hash: the same question can never land in both."""
        return split_of(question, self.config.test_fraction)

    def _draw(self, rng: random.Random) -> tuple[str, tuple[list[str], int]]:
        c = self.config
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        value = rng.randint(*c.start_range)
        sentences, steps = [f"{name} has {value} {item}."], []
        for _ in range(rng.randint(c.min_steps, c.max_steps)):
            op = rng.choice(c.ops)
            if op == "*" and value * 2 > c.max_value:
                op = "-"
            if op == "*":
                n = rng.randint(2, max(2, min(c.mul_max, c.max_value // value)))
                new = value * n
            elif op == "-":
                if value < 2:
                    op, n = "+", rng.randint(1, c.operand_max)
                    new = value + n
                else:
                    n = rng.randint(1, min(c.operand_max, value - 1))
                    new = value - n
            else:
                n = rng.randint(1, min(c.operand_max, max(1, c.max_value - value)))
                new = value + n
            sentences.append("She " + rng.choice(PHRASES[op]).format(n=n, times=TIMES.get(n)) + ".")
            steps.append(f"{value}{op}{n}={new}")
            value = new
        sentences.append("How many now?")
        return " ".join(sentences), (steps, value)

    # -- format and grading -----------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def format_solution(self, problem: Problem) -> str:
        assert problem.solution is not None
        return problem.solution

    def extract_answer(self, solution: str) -> str | None:
        found = FINAL_RE.findall(solution)
        return str(int(found[-1])) if found else None

    def is_terminal(self, solution: str) -> bool:
        return FINAL_RE.search(solution) is not None

    def is_correct(self, solution: str, problem: Problem) -> bool:
        return self.extract_answer(solution) == problem.answer

    def first_wrong_step(self, solution: str, problem: Problem) -> int | None:
        """Index of the first step (line) of ``solution`` that is wrong, or None when none is.

        An arith problem has exactly one correct solution text (each step applies the question's next
        operation to the previous result), so the first wrong step is the first line that differs from the
        reference solution's: a step-level label that needs no rollouts, for measuring how well a critic
        locates a policy's own errors. A solution that stops early without a wrong line has none.
        """
        reference = self.format_solution(problem).split("\n")
        for i, line in enumerate(solution.split("\n")):
            if i >= len(reference) or line != reference[i]:
                return i
        return None

    def error_kind(self, solution: str, problem: Problem) -> str | None:
        """What went wrong at :meth:`first_wrong_step` (one of :data:`ERROR_KINDS`), or None where nothing did.

        ``result``: the step's own arithmetic (``a op b = c`` with the right a, op and b, the wrong c);
        ``carry``: it starts from another number than the previous result; ``operand``: it misreads the
        question's number; ``operation``: it applies another operation. Telling these apart says what a
        critic must check: a result slip is visible in the step alone, a misread operand only against the
        question."""
        i = self.first_wrong_step(solution, problem)
        if i is None:
            return None
        reference, line = self.format_solution(problem).split("\n"), solution.split("\n")[i]
        if i >= len(reference) - 1:
            return "answer-line" if line.startswith("####") else "too-many-steps"
        if line.startswith("####"):
            return "too-few-steps"
        got, want = STEP_RE.match(line), STEP_RE.match(reference[i])
        if got is None or want is None:
            return "malformed"
        for kind, a, b in zip(("carry", "operation", "operand"), got.groups()[:3], want.groups()[:3], strict=True):
            if a != b:
                return kind
        return "result"

    def to_dict(self) -> dict:
        return {"name": self.name, **asdict(self.config)}
