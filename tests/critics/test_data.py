"""Critic data: Monte Carlo labels checked exactly on the fake adding world (tests/search/fakes.py)."""

import pytest

from qstar.critics.data import (
    DataConfig,
    build_records,
    critic_rows,
    draw_problems,
    label_chunk,
    mc_returns,
    read_jsonl,
)
from qstar.errors import QstarError
from qstar.tasks import get_task
from tests.search.fakes import FakePolicy, FakeTask, is_right_prefix

CFG = DataConfig(samples_per_problem=6, rollouts=3, chunk_problems=2)


def test_mc_returns_count_rollouts_and_the_solution_itself():
    rollouts = [{"after": 1, "correct": True}, {"after": 1, "correct": False},
                {"after": 2, "correct": False}, {"after": 2, "correct": False}]
    assert mc_returns(3, True, rollouts, 2) == [2 / 3, 1 / 3, 1.0]
    assert mc_returns(3, False, rollouts, 2) == [1 / 3, 0.0, 0.0]
    assert mc_returns(2, True, [], 0) == [1.0, 1.0]  # no rollouts: the outcome labels every prefix
    assert mc_returns(0, False, [], 3) == []


def test_one_step_problems_have_exact_labels():
    # "add 9 4": after the first step the only continuation is "The answer is <its sum>", so a right
    # first step returns exactly 1 and a slip exactly 0.
    task, policy = FakeTask([[9, 4]]), FakePolicy()
    records = label_chunk(policy, task, task.problems(), CFG, seed=0, chunk=0)
    assert len(records) == CFG.samples_per_problem
    kinds = set()
    for r in records:
        right = is_right_prefix(r["question"], r["steps"][:1])
        kinds.add(right)
        assert r["correct"] == right and r["finished"]
        assert r["mc"] == [float(right), float(right)]
        assert [ro["after"] for ro in r["rollouts"]] == [1] * CFG.rollouts
    assert kinds == {True, False}  # the sample holds both right and wrong first steps


def test_labels_match_their_rollouts_and_rollouts_are_one_batched_call():
    task, policy = FakeTask([[3, 5, 4], [2, 7, 1, 6]]), FakePolicy()
    records = label_chunk(policy, task, task.problems(), CFG, seed=1, chunk=0)
    for r in records:
        n = len(r["steps"])
        problem = next(p for p in task.problems() if p.question == r["question"])
        assert r["correct"] == task.is_correct("".join(r["steps"]), problem)
        for k in range(1, n):
            mine = [ro for ro in r["rollouts"] if ro["after"] == k]
            assert len(mine) == CFG.rollouts
            for ro in mine:  # each rollout is graded as the whole solution it completes
                assert ro["correct"] == task.is_correct("".join(r["steps"][:k] + ro["steps"]), problem)
            assert r["mc"][k - 1] == (sum(ro["correct"] for ro in mine) + r["correct"]) / (CFG.rollouts + 1)
        assert r["mc"][-1] == float(r["correct"])
    ends = [c for c in policy.calls if c["until"] == "end"]
    assert len(ends) == 1 and ends[0]["n"] == CFG.rollouts
    assert ends[0]["states"] == sum(len(r["steps"]) - 1 for r in records)
    assert not policy.live_states()  # every state was released


def test_critic_rows_of_each_role():
    record = {"question": "add 3 5 4", "steps": ["3+5=8\n", "8+4=13\n", "The answer is 13"], "correct": False,
              "mc": [0.5, 0.0, 0.0],
              "rollouts": [{"after": 1, "steps": ["8+4=12\n", "The answer is 12"], "correct": True},
                           {"after": 2, "steps": ["The answer is 13"], "correct": False}]}
    value = critic_rows([record], "value")
    assert [(len(r["steps"]), r["label"]) for r in value] == [(1, 0.5), (2, 0.0), (3, 0.0)]
    prm = critic_rows([record], "prm", prm_threshold=0.5)
    assert [(r["label"], r["soft"]) for r in prm] == [(1.0, 0.5), (0.0, 0.0), (0.0, 0.0)]
    assert [r["label"] for r in critic_rows([record], "prm", prm_threshold=0.6)] == [0.0, 0.0, 0.0]
    orm = critic_rows([record], "orm")
    assert [(r["steps"], r["label"]) for r in orm] == [
        (record["steps"], 0.0),
        (["3+5=8\n", "8+4=12\n", "The answer is 12"], 1.0),
        (["3+5=8\n", "8+4=13\n", "The answer is 13"], 0.0),
    ]
    assert len(critic_rows([record], "orm", orm_rollouts=False)) == 1


def test_problems_come_from_the_train_split_and_streams_differ():
    task = get_task("arith")
    a, b = draw_problems(task, 20, seed=1000), draw_problems(task, 20, seed=2000)
    assert all(task.split_of(p.question) == "train" for p in a + b)
    assert {p.question for p in a}.isdisjoint({p.question for p in b})
    held = draw_problems(task, 20, seed=1000, exclude={p.question for p in a[:5]})
    assert len(held) == 20 and {p.question for p in held}.isdisjoint({p.question for p in a[:5]})
    fake = FakeTask([[1, 2], [3, 4], [5, 6]])  # a task without seeded streams: a shuffled train split
    got = draw_problems(fake, 5, seed=0, exclude={"add 1 2"})
    assert sorted(p.question for p in got) == ["add 3 4", "add 5 6"]
    with pytest.raises(QstarError, match="no train problems"):
        draw_problems(fake, 2, seed=0, exclude={"add 1 2", "add 3 4", "add 5 6"})


class DiesOnChunk(FakePolicy):
    """Stops the run (as a kill would) the first time it is asked about one of ``fatal`` prompts."""

    def __init__(self, fatal: set[str]):
        super().__init__()
        self.fatal = fatal

    def extend(self, states, n, **kw):
        if any(s[1] in self.fatal for s in states):
            raise KeyboardInterrupt
        return super().extend(states, n, **kw)


def test_a_killed_sampling_run_resumes_from_its_saved_chunks(tmp_path):
    task = FakeTask([[3, 5, 4], [2, 7, 1, 6], [9, 4], [1, 1, 1]])
    problems = task.problems()
    full = build_records(FakePolicy(), task, problems, CFG, 0, tmp_path / "full.jsonl")
    out = tmp_path / "run.jsonl"
    second_chunk = {task.prompt(p) for p in problems[2:]}
    with pytest.raises(KeyboardInterrupt):
        build_records(DiesOnChunk(second_chunk), task, problems, CFG, 0, out)
    assert not out.exists() and (tmp_path / "run.chunks" / "00000.jsonl").is_file()
    again = FakePolicy()
    resumed = build_records(again, task, problems, CFG, 0, out)
    assert resumed == full == read_jsonl(out)
    assert again.calls[0]["states"] == 2  # only the second chunk's two problems were sampled again
    assert not (tmp_path / "run.chunks").exists()
