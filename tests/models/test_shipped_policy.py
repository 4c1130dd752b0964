"""The shipped default policy loads, matches the configuration recorded beside it, and speaks the task."""

import json

from qstar.models.load import DEFAULT_POLICY, load_causal_lm
from qstar.train.pretrain import PretrainConfig


def test_shipped_policy_matches_its_recorded_config():
    recorded = json.loads((DEFAULT_POLICY / "pretrain_config.json").read_text())
    # The default configuration users get is the one that produced the shipped weights.
    assert recorded == PretrainConfig().to_dict()
    model, tok = load_causal_lm("default")
    cfg = PretrainConfig.from_dict(recorded).model
    assert model.config.hidden_size == cfg.hidden_size
    assert model.config.num_hidden_layers == cfg.num_layers
    assert model.config.intermediate_size == cfg.intermediate_size
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 1.5e6
    assert "qstar pretrain" in (DEFAULT_POLICY / "README.md").read_text()


def test_shipped_policy_writes_well_formed_solutions():
    from qstar.evaluate import load_policy
    from qstar.search.baselines import SampleConfig, greedy
    from qstar.search.common import Critics
    from qstar.tasks.arith import ArithTask

    task = ArithTask()
    problems = task.problems("test", 16)
    results = greedy(problems, task, load_policy("default", task), Critics(), SampleConfig())
    assert all(r.answer is not None for r in results)
    # every step but the last is an equation, as the task writes them
    assert all("=" in s for r in results for s in r.trajectory.steps[:-1])
