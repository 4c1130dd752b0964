"""The shipped code-arith policy: ``--model default`` picks it for code-arith, and it matches its README."""

import json
import re

from qstar.models.load import DEFAULT_POLICY, default_policy, resolve_model_dir
from qstar.tasks.code_arith import CodeArithTask
from qstar.train.pretrain import PretrainConfig

ASSET = DEFAULT_POLICY.parent / "policy-code-arith"


def test_default_resolves_per_task():
    assert default_policy("code-arith") == ASSET
    assert resolve_model_dir("default", "code-arith") == ASSET
    # arith, tasks without a policy of their own, and no task at all keep the arith policy
    for task in ("arith", "gsm8k", "humaneval", None):
        assert default_policy(task) == DEFAULT_POLICY
    assert resolve_model_dir("default") == resolve_model_dir(None) == DEFAULT_POLICY


def test_shipped_code_arith_policy_matches_its_readme():
    recorded = json.loads((ASSET / "pretrain_config.json").read_text())
    readme = (ASSET / "README.md").read_text()
    command = re.search(r"^    (qstar pretrain .*)$", readme, re.M).group(1)
    assert "--task code-arith" in command
    flags = {name: int(m.group(1)) for name, flag in (("steps", "--steps"), ("stop_at", "--stop-at"))
             if (m := re.search(flag + r" (\d+)", command))}
    # the default configuration, but for the task (and the steps / stop, where the README's command names them)
    expected = PretrainConfig(task="code-arith", **flags)
    assert recorded == expected.to_dict()
    # trained on the generator's current defaults: changing them makes this policy stale
    current = json.loads(json.dumps(CodeArithTask().to_dict()))  # tuples as JSON lists
    assert json.loads((ASSET / "task_config.json").read_text()) == current
    from qstar.models.load import load_causal_lm

    model, _ = load_causal_lm("default", task="code-arith")
    cfg = expected.model
    assert model.config.hidden_size == cfg.hidden_size
    assert model.config.num_hidden_layers == cfg.num_layers
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 1.5e6


def test_shipped_code_arith_policy_writes_functions():
    from qstar.evaluate import load_policy
    from qstar.search.baselines import SampleConfig, greedy
    from qstar.search.common import Critics

    task = CodeArithTask()
    problems = task.problems("test", 16)
    results = greedy(problems, task, load_policy("default", task), Critics(), SampleConfig())
    # every solution ends in a return; the lines before it assign y, as the task writes them
    assert all(r.answer is not None for r in results)
    assert all(s.strip().startswith("y = ") for r in results for s in r.trajectory.steps[:-1])
    assert sum(task.is_correct_batch([r.answer for r in results], problems)) >= 4
