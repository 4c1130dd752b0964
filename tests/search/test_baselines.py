"""The whole-solution baselines over the fake adding world: exact, seeded, no model."""

import pytest

from qstar.errors import QstarError
from qstar.search.baselines import SampleConfig, best_of_n, greedy, sample, self_consistency, split_steps
from qstar.search.common import Critics, vote
from qstar.search.protocols import Trajectory
from tests.search.fakes import FakePolicy, FakeTask, OracleCritic


def _grade(task, problems, results):
    return [task.is_correct(r.trajectory.text, p) for p, r in zip(problems, results, strict=True)]


def test_greedy_is_one_deterministic_solution_and_wrong_here():
    task = FakeTask()
    problems = task.problems()
    results = greedy(problems, task, FakePolicy(), Critics(), SampleConfig())
    assert all(len(r.candidates) == 1 for r in results)
    assert _grade(task, problems, results) == [False, False, False]  # the likeliest first step is a slip
    assert results[0].trajectory.text == "3+5=9\n9+4=13\nThe answer is 13"
    assert results[0].trajectory.steps == ["3+5=9\n", "9+4=13\n", "The answer is 13"]


def test_sampling_is_seeded_and_counts_tokens():
    task = FakeTask()
    problems = task.problems()
    a = sample(problems, task, FakePolicy(), Critics(), SampleConfig(n=8, seed=1))
    b = sample(problems, task, FakePolicy(), Critics(), SampleConfig(n=8, seed=1))
    c = sample(problems, task, FakePolicy(), Critics(), SampleConfig(n=8, seed=2))
    texts = [[t.text for t in r.candidates] for r in a]
    assert texts == [[t.text for t in r.candidates] for r in b]
    assert texts != [[t.text for t in r.candidates] for r in c]
    total = sum(len(t) for r in a for t in (c.text for c in r.candidates))
    assert sum(r.cost.generated_tokens for r in a) == pytest.approx(total)


def test_best_of_n_with_a_knowing_critic_beats_greedy():
    task = FakeTask()
    problems = task.problems()
    critics = Critics(orm=OracleCritic("orm", right=1.0, wrong=0.0))
    results = best_of_n(problems, task, FakePolicy(), critics, SampleConfig(n=16, seed=0, critic="orm"))
    assert all(_grade(task, problems, results))
    assert all(r.trajectory.score == 1.0 for r in results)


def test_best_of_n_needs_its_critic_and_prior_needs_none():
    task = FakeTask()
    with pytest.raises(QstarError, match="orm critic"):
        best_of_n(task.problems(), task, FakePolicy(), Critics(), SampleConfig(critic="orm"))
    res = best_of_n(task.problems(), task, FakePolicy(), Critics(), SampleConfig(n=4, critic="prior"))
    for r in res:
        best = max(r.candidates, key=lambda t: t.logprob / t.n_tokens)
        assert r.trajectory is best


def test_self_consistency_is_the_majority_answer():
    task = FakeTask()
    problems = task.problems()
    for r in self_consistency(problems, task, FakePolicy(), Critics(), SampleConfig(n=15, seed=3)):
        answers = [t.answer for t in r.candidates]
        assert answers.count(r.answer) == max(answers.count(a) for a in answers)
        assert r.trajectory.answer == r.answer


def test_vote_weighted_and_ties():
    ts = [Trajectory([], answer=a) for a in ["1", "2", "2", None, "1"]]
    assert vote(ts) == "1"  # a tie goes to the answer seen first
    assert vote(ts, [0.1, 0.5, 0.5, 9.0, 0.1]) == "2"
    assert vote([Trajectory([], answer=None)]) is None


def test_split_steps_keeps_the_text():
    for text in ["a\nb\n#### 3", "a\n\nb", "", "x"]:
        assert "".join(split_steps(text, "\n")) == text or text == ""
    assert split_steps("a\nb\n", "\n") == ["a\n", "b\n"]
