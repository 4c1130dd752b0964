"""The critics' trunk: samples are graded, only accepted ones train it, sampling resumes by chunk, critics start from it."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from qstar.critics.data import DataConfig, read_jsonl
from qstar.critics.train import CriticTrainConfig, _comparable, train_critics
from qstar.critics.trunk import TrunkConfig, accepted, sample_graded, trainer_settings
from qstar.errors import QstarError
from qstar.models.load import DEFAULT_POLICY
from qstar.tasks import get_task
from tests.search.fakes import FakePolicy, FakeTask

CFG = TrunkConfig(problems=4, samples=6, chunk_problems=2)


def test_every_sample_is_graded_and_only_accepted_ones_are_sft_rows(tmp_path):
    task, policy = FakeTask([[3, 5, 4], [2, 7, 1, 6], [9, 4], [1, 1]]), FakePolicy()
    rows = sample_graded(policy, task, task.problems(), CFG, seed=0, out=tmp_path / "samples.jsonl")
    by_prompt = {task.prompt(p): p for p in task.problems()}
    assert len(rows) == 4 * CFG.samples
    assert all(r["correct"] == task.is_correct(r["completion"], by_prompt[r["prompt"]]) for r in rows)
    assert all(r["question"] == by_prompt[r["prompt"]].question for r in rows)
    sft_rows = accepted(rows)
    assert 0 < len(sft_rows) < len(rows)  # the fake policy slips often: some samples are not SFT rows
    assert all(task.is_correct(r["completion"], by_prompt[r["prompt"]]) for r in sft_rows)
    assert set(sft_rows[0]) == {"prompt", "completion"}
    assert read_jsonl(tmp_path / "samples.jsonl") == rows
    assert [(c["states"], c["n"], c["until"]) for c in policy.calls] == [(2, CFG.samples, "end")] * 2
    assert not (tmp_path / "samples.chunks").exists()  # chunks are merged, then removed


def test_a_killed_sampling_resumes_at_the_first_missing_chunk(tmp_path):
    task = FakeTask([[3, 5, 4], [2, 7, 1, 6], [9, 4], [1, 1]])
    out = tmp_path / "samples.jsonl"
    whole = sample_graded(FakePolicy(), task, task.problems(), CFG, seed=0, out=out)
    out.unlink()
    parts = tmp_path / "samples.chunks"
    parts.mkdir()
    saved = [{"question": "saved", "prompt": "saved", "completion": "chunk 0", "correct": False}]
    (parts / "00000.jsonl").write_text(json.dumps(saved[0]) + "\n")  # as if killed after chunk 0
    policy = FakePolicy()
    resumed = sample_graded(policy, task, task.problems(), CFG, seed=0, out=out)
    assert len(policy.calls) == 1  # only chunk 1 is sampled again
    second = [r for r in whole if r["prompt"] in {task.prompt(p) for p in task.problems()[2:]}]
    assert resumed == saved + second  # ... with the same seed, so the same samples


def _lm_weights(directory) -> dict:
    return load_file(str(directory / "model.safetensors"))


def test_critics_start_from_the_fine_tuned_trunk(tmp_path):
    # The shipped policy solves arith often enough that a few problems yield verified solutions.
    data = DataConfig(samples_per_problem=2, rollouts=1, max_steps=6, max_step_tokens=24, max_rollout_tokens=48,
                      chunk_problems=4)
    trunk = TrunkConfig(problems=6, samples=4, max_new_tokens=48, epochs=1.0, batch_size=4, chunk_problems=6)
    cfg = CriticTrainConfig(problems=4, data=data, trunk=trunk, report_problems=0)
    out = tmp_path / "critics"
    result = train_critics(DEFAULT_POLICY, "arith", out, cfg)
    assert "trunk" in result["phases"]
    task = get_task("arith")
    samples = read_jsonl(out / "trunk" / "samples.jsonl")
    rows = accepted(samples)
    assert len(samples) == 6 * 4 and rows and all(task.extract_answer(r["completion"]) for r in rows)
    summary = json.loads((out / "trunk" / "model" / "trunk_summary.json").read_text())
    assert summary["rows"] == len(rows) and summary["steps"] >= 1 and summary["resumed_from"] is None
    assert not (out / "trunk" / "sft.checkpoints").exists()  # the trunk is saved: its checkpoints are gone
    trunk_lm, policy_lm = _lm_weights(out / "trunk" / "model"), _lm_weights(DEFAULT_POLICY)
    assert any(not torch.equal(trunk_lm[k], policy_lm[k]) for k in trunk_lm)  # SFT moved the trunk
    for role in ("value", "prm"):  # steps = 0: their LM is the trunk, untouched
        critic_lm = _lm_weights(out / role)
        assert all(torch.equal(critic_lm[k], trunk_lm[k]) for k in trunk_lm), role
    # the ORM alone is fine-tuned further, on every graded sample (orm_epochs = 1, 64 per batch: 1 step)
    graded = json.loads((out / "orm" / "train_summary.json").read_text())["graded"]
    assert graded["rows"] == len(samples) and graded["steps"] == 1
    orm_lm = _lm_weights(out / "orm")
    assert any(not torch.equal(orm_lm[k], trunk_lm[k]) for k in trunk_lm)
    assert not (out / "orm.checkpoints").exists()
    # a rerun finds everything done, trunk included
    assert train_critics(DEFAULT_POLICY, "arith", out, cfg)["phases"] == {}
    # an ORM to train again without the samples it is fine-tuned on is a clear error, not a silent probe
    shutil.rmtree(out / "orm")
    (out / "trunk" / "samples.jsonl").unlink()
    with pytest.raises(QstarError, match="samples.jsonl is missing"):
        train_critics(DEFAULT_POLICY, "arith", out, cfg)


def test_without_a_trunk_the_critics_start_from_the_policy(char_model_dir, tmp_path):
    data = DataConfig(samples_per_problem=2, rollouts=1, max_steps=2, max_step_tokens=8, max_rollout_tokens=8,
                      chunk_problems=2)
    cfg = CriticTrainConfig(problems=2, data=data, trunk=TrunkConfig(problems=0), report_problems=0)
    out = tmp_path / "critics"
    assert "trunk" not in train_critics(char_model_dir, "arith", out, cfg)["phases"]
    assert not (out / "trunk").exists()
    policy_lm = _lm_weights(char_model_dir)
    assert all(torch.equal(v, policy_lm[k]) for k, v in _lm_weights(out / "orm").items())
    # a run written before the trunk phase existed has no "trunk" in its config: it resumes as trunk-less
    saved = json.loads((out / "critics_config.json").read_text())
    del saved["trunk"]
    (out / "critics_config.json").write_text(json.dumps(saved))
    assert train_critics(char_model_dir, "arith", out, replace(cfg, trunk=TrunkConfig(problems=0, lr=1.0)))["phases"] == {}


def test_order_and_schedule_name_the_sft_settings():
    assert trainer_settings(TrunkConfig(order="by_length", schedule="linear")) == {
        "train_sampling_strategy": "group_by_length", "lr_scheduler_type": "linear"}
    assert trainer_settings(TrunkConfig()) == {"train_sampling_strategy": "random", "lr_scheduler_type": "cosine",
                                               "warmup_steps": 30, "weight_decay": 0.01}


def test_a_trunk_saved_before_order_existed_counts_as_trained_by_length():
    saved = CriticTrainConfig().to_dict()
    for key in ("order", "schedule"):
        del saved["trunk"][key]
    old_way = CriticTrainConfig(trunk=TrunkConfig(order="by_length", schedule="linear")).to_dict()
    assert _comparable(saved) == _comparable(old_way)
    assert _comparable(saved) != _comparable(CriticTrainConfig().to_dict())  # the new default is another run
