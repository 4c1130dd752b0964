"""``qstar eval``'s run: a killed evaluation resumes its finished batches and ends as an uninterrupted one."""

import json

import pytest

from qstar.errors import QstarError
from qstar.evaluate import PARTIAL, EvalConfig, run_eval
from qstar.search import METHODS
from qstar.search.protocols import SearchResult


def config(model, **kw) -> EvalConfig:
    return EvalConfig(**{"model": str(model), "method": "sample", "n": 3, "limit": 10, "batch_problems": 3,
                         "max_new_tokens": 24, **kw})


def dying_after(monkeypatch, method: str, calls: list, n: int) -> None:
    """Make ``method`` count its calls in ``calls`` and be killed (Ctrl-C) on call ``n``."""
    strategy, cls = METHODS[method]

    def dying(*args):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return strategy(*args)

    monkeypatch.setitem(METHODS, method, (dying, cls))


def test_a_killed_eval_resumes_and_ends_as_an_uninterrupted_one(tmp_path, char_model_dir, monkeypatch):
    whole = run_eval(config(char_model_dir), tmp_path / "whole", progress=False)
    assert not (tmp_path / "whole" / PARTIAL).exists()
    calls: list = []
    dying_after(monkeypatch, "sample", calls, 3)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(char_model_dir), tmp_path / "run", progress=False)
    kept = sorted(p.name for p in (tmp_path / "run" / PARTIAL).iterdir())
    assert kept == ["00000.json", "00001.json", "config.json"] and not (tmp_path / "run" / "results.json").exists()
    calls.clear()
    resumed = run_eval(config(char_model_dir), tmp_path / "run", progress=False)
    assert len(calls) == 2  # 10 problems in batches of 3: the last two batches only
    assert resumed["records"] == whole["records"] and resumed["summary"]["accuracy"] == whole["summary"]["accuracy"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["records"] == whole["records"]
    assert not (tmp_path / "run" / PARTIAL).exists()


def test_batches_of_another_evaluation_are_refused_by_name(tmp_path, char_model_dir, monkeypatch):
    dying_after(monkeypatch, "sample", [], 2)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(char_model_dir), tmp_path / "run", progress=False)
    with pytest.raises(QstarError, match=r"another evaluation \(config.n: 3 -> 4; method_config.n: 3 -> 4\)"):
        run_eval(config(char_model_dir, n=4), tmp_path / "run", progress=False)


def test_search_results_with_their_stats_read_back_from_json(char_model_dir):
    from qstar.evaluate import load_policy
    from qstar.search.common import Critics
    from qstar.search.mcts import MCTSConfig, mcts
    from qstar.tasks import get_task

    task = get_task("arith")
    policy = load_policy(str(char_model_dir), task)
    got = mcts(task.problems("test", 2), task, policy, Critics(),
               MCTSConfig(n_simulations=4, b_prior=1.0, max_option_tokens=16, max_depth=3))
    for r in got:
        back = SearchResult.from_dict(json.loads(json.dumps(r.to_dict())))
        assert back.tree is None and (back.answer, back.trajectory, back.candidates, back.cost, back.stats) == (
            r.answer, r.trajectory, r.candidates, r.cost, r.stats)


def test_the_progress_bar_grades_each_problem_once(monkeypatch):
    """Grading may run code in a sandbox: the running accuracy must not regrade earlier batches."""
    from qstar.evaluate import evaluate
    from qstar.search.baselines import SampleConfig, greedy
    from qstar.search.common import Critics
    from tests.search.fakes import FakePolicy, FakeTask

    task = FakeTask([[3, 5], [2, 7], [9, 4], [1, 1]])
    graded = []
    monkeypatch.setattr(FakeTask, "is_correct", lambda self, s, p: graded.append(p.id) or True)
    results = evaluate(task.problems(), task, FakePolicy(), Critics(), greedy, SampleConfig(), batch=1)
    assert len(results) == 4 and sorted(graded) == ["p0", "p1", "p2", "p3"]


def test_a_run_killed_before_any_batch_blocks_nothing(tmp_path, char_model_dir, monkeypatch):
    """No batch finished: another configuration may start over in the same folder."""
    dying_after(monkeypatch, "sample", [], 1)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(char_model_dir), tmp_path / "run", progress=False)
    monkeypatch.undo()
    report = run_eval(config(char_model_dir, n=2, limit=3), tmp_path / "run", progress=False)
    assert report["summary"]["n_problems"] == 3 and not (tmp_path / "run" / PARTIAL).exists()


def test_a_model_that_fails_to_load_leaves_no_partial_folder(tmp_path):
    with pytest.raises(QstarError):
        run_eval(config(tmp_path / "no-model"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / PARTIAL).exists()
