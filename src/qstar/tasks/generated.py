"""What the generated tasks (``arith``, ``code-arith``) share: disjoint splits by hash and seeded streams.

A generated task draws questions from a seeded random stream. A question belongs to the split its hash
picks, so the same question can never be generated for both splits, and asking for more train problems
never shifts the test set (each split has its own stream).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from typing import TypeVar

from qstar.errors import QstarError

SPLITS = ("train", "test")
TRAIN_LIMIT = 10_000
"""problems of the train split when no limit is given"""

Drawn = TypeVar("Drawn")


def digest(text: str) -> str:
    """The SHA-256 hex digest of ``text``: a question's split and its problem id come from it."""
    return hashlib.sha256(text.encode()).hexdigest()


def split_of(question: str, test_fraction: float) -> str:
    """The split ``question`` belongs to: "test" for the first ``test_fraction`` of the hash space."""
    return "test" if int(digest(question)[:8], 16) / 0xFFFFFFFF < test_fraction else "train"


def problem_id(task: str, split: str, question: str) -> str:
    return f"{task}-{split}-{digest(question)[:10]}"


def split_size(task: str, split: str, limit: int | None, n_test: int) -> int:
    """How many problems ``problems(split, limit)`` returns; an unknown split is a one-line error."""
    if split not in SPLITS:
        raise QstarError(f"{task} has splits 'train' and 'test', not {split!r}")
    return limit if limit is not None else (n_test if split == "test" else TRAIN_LIMIT)


def draw_distinct(task: str, split: str, n: int, seed: int, test_fraction: float,
                  draw: Callable[[random.Random], tuple[str, Drawn]]) -> Iterator[tuple[str, Drawn]]:
    """Yield ``n`` distinct ``(question, what draw gave with it)`` of ``split`` from the stream of ``seed``.

    ``draw(rng)`` makes one question; those of the other split, and repeats, are rejected and drawn again.
    Fails in one line when the problem space is too small to give ``n``.
    """
    rng = random.Random(f"{task}/{seed}/{split}")
    seen: set[str] = set()
    tries = 0
    while len(seen) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise QstarError(f"{task}: cannot draw {n} distinct {split} problems; widen the ranges")
        question, rest = draw(rng)
        if split_of(question, test_fraction) != split or question in seen:
            continue
        seen.add(question)
        yield question, rest
