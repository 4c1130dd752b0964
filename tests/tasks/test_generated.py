import random

import pytest

from qstar.errors import QstarError
from qstar.tasks.generated import draw_distinct, problem_id, split_of, split_size


def test_split_of_gives_test_about_the_test_fraction_of_questions():
    questions = [f"q{i}" for i in range(4000)]
    share = sum(split_of(q, 0.2) == "test" for q in questions) / len(questions)
    assert 0.17 < share < 0.23
    assert all(split_of(q, 0.0) == "train" for q in questions[:100])
    assert all(split_of(q, 1.0) == "test" for q in questions[:100])


def test_draw_distinct_yields_distinct_questions_of_one_split_with_what_draw_gave():
    def draw(rng: random.Random):
        n = rng.randint(0, 10_000)
        return f"question {n}", n

    got = list(draw_distinct("toy", "train", 50, 0, 0.5, draw))
    assert len(got) == 50 and len({q for q, _ in got}) == 50
    assert all(split_of(q, 0.5) == "train" and q == f"question {n}" for q, n in got)
    assert got == list(draw_distinct("toy", "train", 50, 0, 0.5, draw))  # seeded
    assert got != list(draw_distinct("toy", "train", 50, 1, 0.5, draw))


def test_a_problem_space_too_small_is_a_one_line_error():
    def draw(rng: random.Random):
        return f"question {rng.randint(0, 3)}", None

    with pytest.raises(QstarError, match="cannot draw 100 distinct train problems"):
        list(draw_distinct("toy", "train", 100, 0, 0.0, draw))


def test_split_size_and_problem_id():
    assert split_size("toy", "test", None, 200) == 200
    assert split_size("toy", "train", 7, 200) == 7
    with pytest.raises(QstarError, match="not 'dev'"):
        split_size("toy", "dev", None, 200)
    assert problem_id("toy", "test", "q").startswith("toy-test-") and len(problem_id("toy", "test", "q")) == 19
