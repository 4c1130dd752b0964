import math

import pytest

from qstar.errors import QstarError
from qstar.search import METHODS, Critics
from qstar.search.baselines import SampleConfig, greedy
from qstar.search.beam import BeamConfig, beam, prior_score
from qstar.search.tree import Node, Tree
from tests.search.fakes import ConstantCritic, FakePolicy, FakeTask, OracleCritic, is_right_prefix


def run(cfg: BeamConfig, critics: Critics | None = None, rows=None):
    task, policy = FakeTask(rows), FakePolicy()
    critics = Critics(prm=OracleCritic("prm")) if critics is None else critics
    return beam(task.problems(), task, policy, critics, cfg), policy, task


def test_beam_with_a_knowing_prm_beats_greedy():
    task = FakeTask()
    greedy_answers = [
        r.answer for r in greedy(task.problems(), task, FakePolicy(), Critics(), SampleConfig())
    ]
    results, _, _ = run(BeamConfig(beam_width=2, expansions_per_beam=3))
    for r, g, p in zip(results, greedy_answers, task.problems(), strict=True):
        assert g != p.answer and r.answer == p.answer
        assert is_right_prefix(p.question, r.trajectory.steps)
        assert r.trajectory.score == max(c.score for c in r.candidates)


def test_one_extend_call_per_step_for_all_problems():
    critic = OracleCritic("prm")
    results, policy, task = run(BeamConfig(beam_width=2, expansions_per_beam=3), Critics(prm=critic))
    assert all(c["until"] == "step" and c["n"] == 3 for c in policy.calls)
    assert policy.calls[0]["states"] == len(task.problems())
    assert policy.calls[1]["states"] == 2 * len(task.problems())  # beam_width live beams each
    assert len(policy.calls) == len(critic.batches) <= BeamConfig().max_steps
    assert [c["seed"] for c in policy.calls] == [s * 1009 for s in range(len(policy.calls))]


def test_finished_beams_are_kept_and_stop_the_problem():
    results, _, task = run(BeamConfig(beam_width=2, expansions_per_beam=4))
    for r in results:
        assert len(r.candidates) >= 2  # the search stops once beam_width solutions are finished
        assert all(c.answer is not None for c in r.candidates)
        ends = r.tree.terminal_leaves()
        assert len(ends) == len(r.candidates) and r.tree.chosen[-1] in ends


def test_states_are_released_and_pruned_ones_early():
    results, policy, _ = run(BeamConfig(beam_width=1, expansions_per_beam=3))
    assert policy.live_states() == []
    assert all(n.state is None for r in results for n in r.tree.nodes)


def test_prior_ranking_needs_no_critic_and_missing_critic_is_an_error():
    results, _, _ = run(BeamConfig(critic="prior"), Critics())
    assert all(r.answer is not None for r in results)
    assert all("prior" in r.tree.nodes[1].scores for r in results)
    with pytest.raises(QstarError):
        run(BeamConfig(critic="value"), Critics())


def test_prior_score_is_the_prefix_mean_token_probability():
    tree = Tree()
    a = tree.add(0, Node("ab", (1, 2), -1.0, 2))
    b = tree.add(a, Node("cde", (3, 4, 5), -4.0, 3))
    assert prior_score(tree, b) == pytest.approx(math.exp(-5.0 / 5))


def test_seeded_and_registered():
    first, _, _ = run(BeamConfig(seed=3))
    again, _, _ = run(BeamConfig(seed=3))
    assert [r.tree.to_dict() for r in first] == [r.tree.to_dict() for r in again]
    assert METHODS["beam"] == (beam, BeamConfig)


def test_greedy_first_puts_the_greedy_step_among_the_candidates():
    task = FakeTask()
    greedy_answers = [r.answer for r in greedy(task.problems(), task, FakePolicy(), Critics(), SampleConfig())]
    flat = Critics(prm=ConstantCritic("prm"))  # no preference: the beam keeps the first candidate, greedy's
    on, policy, _ = run(BeamConfig(beam_width=1, expansions_per_beam=3, greedy_first=True), flat)
    assert [r.answer for r in on] == greedy_answers
    assert [(c["temperature"], c["n"]) for c in policy.calls[:2]] == [(0.0, 1), (BeamConfig().temperature, 2)]
    off, _, _ = run(BeamConfig(beam_width=1, expansions_per_beam=3), flat)
    assert [r.answer for r in off] != greedy_answers  # sampled candidates only: the first is not greedy's


def test_repeated_options_under_one_beam_are_dropped_and_released():
    results, policy, _ = run(BeamConfig(beam_width=2, expansions_per_beam=8, greedy_first=True))
    for r in results:
        for node in r.tree.nodes:
            texts = [r.tree.nodes[c].text for c in node.children]
            assert len(texts) == len(set(texts))
    assert any(len(r.tree.nodes[0].children) < 8 for r in results)  # 8 draws of few distinct steps repeat
    assert policy.live_states() == []
