"""``code-arith``: the built-in code task — seeded function-writing problems graded by hidden unit tests.

The code counterpart of ``arith``: small enough that the tiny default policy learns it on a CPU in
minutes, and verified only by running the written function in the sandbox. A one-line spec and a
signature are the prompt; the body is one assignment per clause, so search has a step per line::

    # x times 3, add 2, minus x
    def f(x):
        y = x * 3
        y = y + 2
        y = y - x
        return y

The final ``return`` line ends a solution. Each problem carries hidden tests (``n_tests`` inputs with
the outputs the reference computes); a body is correct when ``f`` passes every one of them in the
sandbox, so any equivalent body counts, and nothing the policy writes ever runs in-process.

Train and test splits never overlap: a problem belongs to the split its question's hash picks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from qstar.errors import QstarError
from qstar.tasks.base import Problem, config_from_options
from qstar.tasks.generated import draw_distinct, problem_id, split_of, split_size
from qstar.tasks.humaneval import truncate_completion
from qstar.tasks.sandbox import SandboxConfig, SandboxResult, run_batch

RESULT = "y"
"""the variable every body assigns and returns"""
# How a clause after the first says each operation; {n} is the operand (a constant or the argument).
PHRASES = {
    "+": ["plus {n}", "add {n}"],
    "-": ["minus {n}", "subtract {n}"],
    "*": ["times {n}"],
}
FIRST_WORD = {"+": "plus", "-": "minus", "*": "times"}
"""the first clause always reads "<arg> <word> <n>": it is the expression the body starts from"""


@dataclass
class CodeArithConfig:
    """Difficulty knobs of the generator.

    The defaults (2-8 operations, constants 1-29) are what the shipped ``policy-code-arith`` was trained
    on; see its ``README.md`` for how often it is right greedily and within 16 samples.
    """

    min_steps: int = 2
    """fewest operations (body lines before the ``return``)"""
    max_steps: int = 8
    """most operations"""
    const_range: tuple[int, int] = (1, 29)
    """range of the constants of + and -"""
    mul_range: tuple[int, int] = (2, 9)
    """range of the constant factors of *"""
    ops: str = "+-*"
    """operations to draw from"""
    arg_prob: float = 0.3
    """chance that an operand is the argument rather than a constant"""
    synonyms: bool = True
    """vary the wording of clauses ("plus 2" / "add 2"); False: one phrase per operation"""
    args: str = "x"
    """names the function's argument may take (one letter each, drawn per problem)"""
    n_tests: int = 5
    """hidden unit tests per problem (distinct inputs)"""
    test_range: tuple[int, int] = (-9, 9)
    """range of the test inputs"""
    test_fraction: float = 0.2
    """share of the problem space (by hash) that belongs to the test split"""
    seed: int = 0
    """the seed of the problem stream; the same seed always gives the same problems"""
    n_test: int = 200
    """size of the fixed test split"""

    def __post_init__(self) -> None:
        # JSON (saved configs, --task-options) turns tuples into lists.
        self.const_range = tuple(self.const_range)
        self.mul_range = tuple(self.mul_range)
        self.test_range = tuple(self.test_range)
        problems = []
        if not 1 <= self.min_steps <= self.max_steps:
            problems.append(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if not self.ops or set(self.ops) - set(PHRASES):
            problems.append(f"ops must be drawn from {''.join(PHRASES)!r}, got {self.ops!r}")
        if not self.args or not all(a.isalpha() and a.islower() and a != RESULT for a in self.args):
            problems.append(f"args must be lower-case letters other than {RESULT!r}, got {self.args!r}")
        if self.const_range[0] < 1 or self.const_range[0] > self.const_range[1]:
            problems.append(f"const_range must be positive and ordered, got {self.const_range}")
        if self.mul_range[0] < 2 or self.mul_range[0] > self.mul_range[1]:
            problems.append(f"mul_range must start at 2 or more and be ordered, got {self.mul_range}")
        lo, hi = self.test_range
        if hi - lo + 1 < self.n_tests or self.n_tests < 1:
            problems.append(f"test_range {self.test_range} holds fewer than n_tests={self.n_tests} inputs")
        if problems:
            raise QstarError("code-arith: " + "; ".join(problems))


@dataclass
class CodeArithTask:
    """The world model of the code-arithmetic task (see :class:`qstar.tasks.base.Task`)."""

    config: CodeArithConfig = field(default_factory=CodeArithConfig)
    sandbox: SandboxConfig = field(default_factory=lambda: SandboxConfig(timeout_s=2.0, cpu_s=2.0))
    name: str = "code-arith"
    step_delimiter: str = "\n"

    @classmethod
    def from_data(cls, data: str | None = None, **options) -> CodeArithTask:
        if data is not None:
            raise QstarError("the code-arith task generates its problems; it takes no --data file")
        return cls(config_from_options(CodeArithConfig, options, "code-arith"))

    # -- problems ---------------------------------------------------------------------------------
    def problems(self, split: str, limit: int | None = None, seed: int | None = None) -> list[Problem]:
        """Problems of ``split``, deterministic for the config's seed (or ``seed`` for a fresh stream)."""
        n = split_size(self.name, split, limit, self.config.n_test)
        return list(self.iter_problems(split, n, seed))

    def iter_problems(self, split: str, n: int, seed: int | None = None):
        """Yield ``n`` distinct problems of ``split`` (see :func:`qstar.tasks.generated.draw_distinct`)."""
        base = self.config.seed if seed is None else seed
        for question, (arg, steps) in draw_distinct(self.name, split, n, base, self.config.test_fraction,
                                                    self._draw):
            body = reference_body(arg, steps)
            yield Problem(
                id=problem_id(self.name, split, question),
                question=question,
                answer=body,
                solution=body,
                meta={"tests": self._tests(question, arg, steps)},
            )

    def split_of(self, question: str) -> str:
        """The split a question belongs to, by hash: the same question can never land in both."""
        return split_of(question, self.config.test_fraction)

    def _draw(self, rng: random.Random) -> tuple[str, tuple[str, list[tuple[str, str]]]]:
        """A question, its argument's name, and its steps as (operator, operand source text)."""
        c = self.config
        arg = rng.choice(c.args)
        steps: list[tuple[str, str]] = []
        clauses: list[str] = []
        for i in range(rng.randint(c.min_steps, c.max_steps)):
            op = rng.choice(c.ops)
            if rng.random() < c.arg_prob:
                operand = arg
            elif op == "*":
                operand = str(rng.randint(*c.mul_range))
            else:
                operand = str(rng.randint(*c.const_range))
            if i == 0:
                clauses.append(f"{arg} {FIRST_WORD[op]} {operand}")
            else:
                phrases = PHRASES[op] if c.synonyms else PHRASES[op][:1]
                clauses.append(rng.choice(phrases).format(n=operand))
            steps.append((op, operand))
        return f"# {', '.join(clauses)}\ndef f({arg}):", (arg, steps)

    def _tests(self, question: str, arg: str, steps: list[tuple[str, str]]) -> list[list[int]]:
        """``[input, expected]`` pairs: distinct inputs seeded by the question, outputs from the reference.

        Every body here computes a polynomial of degree at most ``max_steps + 1`` in the argument, and
        two different such polynomials agree on at most that many points; so with more distinct inputs
        than that, a wrong polynomial body fails; with fewer (the default 5), one rarely passes.
        """
        lo, hi = self.config.test_range
        inputs = random.Random(f"code-arith-tests/{question}").sample(range(lo, hi + 1), self.config.n_tests)
        return [[x, evaluate_steps(steps, arg, x)] for x in inputs]

    # -- format and grading -----------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def format_solution(self, problem: Problem) -> str:
        assert problem.solution is not None
        return problem.solution

    def extract_answer(self, solution: str) -> str | None:
        """The body through its first ``return`` line (code is its own answer), or None without one.

        The text is first cut where the function ends (an EOS marker, or a line at column 0, as for
        HumanEval); trailing spaces are dropped so bodies that differ only there vote together.
        """
        lines = truncate_completion(solution).split("\n")
        for i, line in enumerate(lines):
            if line.strip() == "return" or line.strip().startswith("return "):
                return "\n".join(ln.rstrip() for ln in lines[: i + 1])
        return None

    def is_terminal(self, solution: str) -> bool:
        """A ``return`` line was written, or the function has ended (a line at column 0, an EOS marker)."""
        return self.extract_answer(solution) is not None or truncate_completion(solution) != solution

    def is_correct(self, solution: str, problem: Problem) -> bool:
        """Whether the body passes the problem's hidden tests in the sandbox."""
        return self.is_correct_batch([solution], [problem])[0]

    def is_correct_batch(self, solutions: Sequence[str], problems: Sequence[Problem]) -> list[bool]:
        """``is_correct`` for many pairs at once, run in parallel on the sandbox's workers."""
        return [result.passed for result in self.verify_batch(solutions, problems)]

    def verify(self, solution: str, problem: Problem) -> SandboxResult:
        """The sandbox's full verdict (status, the failing assertion) for one solution."""
        return self.verify_batch([solution], [problem])[0]

    def verify_batch(self, solutions: Sequence[str], problems: Sequence[Problem]) -> list[SandboxResult]:
        """``verify`` for many pairs, in order; a solution with no ``return`` fails without running."""
        if len(solutions) != len(problems):
            raise QstarError(f"got {len(solutions)} solutions for {len(problems)} problems")
        results: list[SandboxResult | None] = []
        programs, slots = [], []
        for solution, problem in zip(solutions, problems, strict=True):
            body = self.extract_answer(solution)
            if body is None:
                results.append(SandboxResult("failed", "no return statement"))
                continue
            slots.append(len(results))
            results.append(None)
            programs.append(build_program(body, problem))
        for slot, result in zip(slots, run_batch(programs, self.sandbox) if programs else [], strict=True):
            results[slot] = result
        return results  # type: ignore[return-value]

    def to_dict(self) -> dict:
        return {"name": self.name, **asdict(self.config)}


def reference_body(arg: str, steps: list[tuple[str, str]]) -> str:
    """The reference body: the first step reads the argument, each later one updates ``y``."""
    lines = [
        f"    {RESULT} = {arg if i == 0 else RESULT} {op} {operand}" for i, (op, operand) in enumerate(steps)
    ]
    return "\n".join([*lines, f"    return {RESULT}"])


def evaluate_steps(steps: list[tuple[str, str]], arg: str, x: int) -> int:
    """The reference function at ``x``, computed from the steps (our own data: no ``eval``)."""
    value = x
    for op, operand in steps:
        n = x if operand == arg else int(operand)
        value = value + n if op == "+" else value - n if op == "-" else value * n
    return value


def build_program(body: str, problem: Problem) -> str:
    """The program the sandbox runs: the prompt, the body, one assertion per hidden test."""
    tests = problem.meta.get("tests")
    if not tests:
        raise QstarError(f"code-arith problem {problem.id!r} has no hidden tests (meta['tests'])")
    asserts = "\n".join(f"assert f({x}) == {y}, 'f({x}) should be {y}'" for x, y in tests)
    return f"{problem.question}\n{body}\n\n\n{asserts}\n"
