"""A tiny hand-written world for testing search exactly: summing a list of numbers, one step at a time.

Problem "add 3 5 4" has the solution "3+5=8\\n", "8+4=12\\n", "The answer is 12". At each step the
fake policy may slip (claim one more or one less) or write the right sum with a trailing dot (a
near-duplicate of the right step). Its most likely first step is a slip, so greedy decoding is wrong;
the oracle critic knows which steps are right, so a search guided by it can find the answer.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace

from qstar.search.protocols import Option, TokenCost
from qstar.tasks.base import Problem

# (kind, probability): "ok" right sum, "dot" right sum written "a+b=c.", "up"/"down" off by one
FIRST_STEP = [("up", 0.45), ("ok", 0.25), ("dot", 0.15), ("down", 0.15)]
LATER_STEP = [("ok", 0.55), ("up", 0.2), ("down", 0.15), ("dot", 0.1)]


def numbers(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


class FakeTask:
    name = "fake-add"
    step_delimiter = "\n"

    def __init__(self, problems: list[list[int]] | None = None):
        rows = problems or [[3, 5, 4], [2, 7, 1, 6], [9, 4]]
        self._problems = [
            Problem(f"p{i}", "add " + " ".join(map(str, row)), str(sum(row))) for i, row in enumerate(rows)
        ]

    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        return self._problems[:limit]

    def prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def format_solution(self, problem: Problem) -> str:
        return "".join(right_steps(problem.question))

    def extract_answer(self, solution: str) -> str | None:
        m = re.search(r"The answer is (-?\d+)", solution)
        return m.group(1) if m else None

    def is_terminal(self, solution: str) -> bool:
        return "The answer is" in solution

    def is_correct(self, solution: str, problem: Problem) -> bool:
        return self.extract_answer(solution) == problem.answer


def right_steps(question: str) -> list[str]:
    nums, steps, total = numbers(question), [], None
    total = nums[0]
    for b in nums[1:]:
        steps.append(f"{total}+{b}={total + b}\n")
        total += b
    return steps + [f"The answer is {total}"]


class FakePolicy:
    """The Policy protocol over the adding world. A state is ``(uid, prompt, steps)``; tokens are characters.

    Costs are counted as a KV-cache backend would: a prompt's tokens once, at its first extension;
    every generated option's tokens. Extending a released state (or a descendant of one) is an error.
    """

    def __init__(self):
        self._cost = TokenCost()
        self.calls: list[dict] = []
        """one record per extend call: number of states, n, until, seed"""
        self._uid = 0
        self._parent: dict[int, int | None] = {}
        self._released: set[int] = set()
        self._prompted: set[int] = set()

    # --- protocol ---

    def root(self, prompts: list[str]) -> list[tuple]:
        return [self._new(None, p, ()) for p in prompts]

    def extend(self, states, n, *, temperature=1.0, until="step", max_new_tokens=256, seed=None):
        self.calls.append({"states": len(states), "n": n, "until": until, "seed": seed, "temperature": temperature})
        self._cost.model_calls += 1
        rng = random.Random(seed)
        out = []
        for state in states:
            assert self.alive(state[0]), f"extended a released state {state}"
            root = self._root_of(state[0])
            if root not in self._prompted:
                self._prompted.add(root)
                self._cost.prompt_tokens += len(state[1])
            out.append([self._sample(state, rng, temperature, until, max_new_tokens) for _ in range(n)])
        return out

    @property
    def cost(self) -> TokenCost:
        return replace(self._cost)  # a copy: search subtracts an earlier reading from a later one

    def release(self, states) -> None:
        self._released.update(s[0] for s in states)

    # --- test helpers ---

    def alive(self, uid: int) -> bool:
        while uid is not None:
            if uid in self._released:
                return False
            uid = self._parent[uid]
        return True

    def live_states(self) -> list[int]:
        return [u for u in self._parent if self.alive(u)]

    # --- the world ---

    def _new(self, parent: int | None, prompt: str, steps: tuple[str, ...]) -> tuple:
        self._uid += 1
        self._parent[self._uid] = parent
        return (self._uid, prompt, steps)

    def _root_of(self, uid: int) -> int:
        while self._parent[uid] is not None:
            uid = self._parent[uid]
        return uid

    def _sample(self, state, rng, temperature, until, max_new_tokens) -> Option:
        _, prompt, steps = state
        texts, logprob, finished = [], 0.0, False
        while not finished:
            text, lp, finished = self._next_step(prompt, steps + tuple(texts), rng, temperature)
            texts.append(text)
            logprob += lp
            if until == "step":
                break
        text = "".join(texts)
        if len(text) > max_new_tokens:
            text, finished = text[:max_new_tokens], True
        self._cost.generated_tokens += len(text)
        child = self._new(state[0], prompt, steps + tuple(texts))
        return Option(text, tuple(ord(c) for c in text), logprob, finished, child)

    def _next_step(self, prompt: str, steps: tuple[str, ...], rng, temperature) -> tuple[str, float, bool]:
        """One option: (text, log-prob, finished)."""
        nums = numbers(prompt)
        total = numbers(steps[-1])[-1] if steps else nums[0]  # the policy trusts its own last claim
        if len(steps) >= len(nums) - 1:
            return f"The answer is {total}", 0.0, True
        b = nums[len(steps) + 1]
        kind, p = _draw(FIRST_STEP if not steps else LATER_STEP, rng, temperature)
        result = {"ok": total + b, "dot": total + b, "up": total + b + 1, "down": total + b - 1}[kind]
        dot = "." if kind == "dot" else ""
        return f"{total}+{b}={result}{dot}\n", math.log(p), False


def _draw(table: list[tuple[str, float]], rng: random.Random, temperature: float) -> tuple[str, float]:
    if temperature == 0:
        return max(table, key=lambda kp: kp[1])
    weights = [p ** (1 / temperature) for _, p in table]
    x, acc = rng.random() * sum(weights), 0.0
    for (kind, p), w in zip(table, weights, strict=True):
        acc += w
        if x < acc:
            return kind, p
    return table[-1]


class OracleCritic:
    """Knows the right steps: ``right`` for a prefix of the right solution, ``wrong`` otherwise."""

    def __init__(self, name: str = "value", right: float = 0.9, wrong: float = 0.1):
        self.name, self.right, self.wrong = name, right, wrong
        self.batches: list[int] = []

    def score(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        self.batches.append(len(questions))
        return [
            self.right if is_right_prefix(q, s) else self.wrong for q, s in zip(questions, steps, strict=True)
        ]


def is_right_prefix(question: str, steps: list[str]) -> bool:
    want = right_steps(question)
    return len(steps) <= len(want) and all(
        numbers(s) == numbers(w) for s, w in zip(steps, want, strict=False)
    )


class ConstantCritic:
    def __init__(self, name: str = "value", value: float = 0.5):
        self.name, self.value = name, value

    def score(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        return [self.value] * len(questions)
