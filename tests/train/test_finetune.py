"""SFT and DPO with TRL on a tiny model: the weights move the way each objective says."""

from __future__ import annotations

import pytest
import torch

from qstar.models.load import load_causal_lm
from qstar.train import finetune
from qstar.train.finetune import completion_logprobs, dpo, save_policy_atomic, sft
from tests.killing import Killed, kill_at_step

ROWS = [{"prompt": f"Ann has {i} pens. She buys 2. How many now?\n", "completion": f"{i}+2={i + 2}\n#### {i + 2}"}
        for i in range(3, 9)]
PAIRS = [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": f"{i}+2={i + 3}\n#### {i + 3}"}
         for i, r in zip(range(3, 9), ROWS, strict=True)]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_sft_changes_the_weights_and_raises_the_completions_likelihood(char_model_dir, tmp_path):
    before, tok = load_causal_lm(char_model_dir)
    summary = sft(char_model_dir, ROWS, tmp_path / "sft", epochs=4, lr=1e-2, batch_size=3, seed=0)
    after, _ = load_causal_lm(tmp_path / "sft")
    assert summary["steps"] == 8 and summary["rows"] == len(ROWS)
    old, new = before.state_dict(), after.state_dict()
    changed = [k for k in old if not torch.equal(old[k], new[k])]
    assert len(changed) == len(old), set(old) - set(changed)
    assert _mean(completion_logprobs(after, tok, ROWS)) > _mean(completion_logprobs(before, tok, ROWS)) + 5


def test_sft_overrides_replace_our_trainer_settings(char_model_dir, tmp_path):
    summary = sft(char_model_dir, ROWS, tmp_path / "sft", epochs=4, lr=1e-2, batch_size=3, seed=0,
                  overrides={"max_steps": 2, "train_sampling_strategy": "random"})
    assert summary["steps"] == 2  # not the 8 that four epochs take


def test_dpo_raises_the_chosen_minus_rejected_margin(char_model_dir, tmp_path):
    summary = dpo(char_model_dir, char_model_dir, PAIRS, tmp_path / "dpo", epochs=4, lr=1e-2, batch_size=3,
                  beta=0.1, seed=0)
    assert summary["steps"] == 8 and summary["final_margin"] > summary["first_margin"]
    # the implicit rewards TRL logs at each step, as bench/dpo_rewards.py reads them (first step: pi == pi_ref)
    rewards = summary["rewards"]
    assert [r["step"] for r in rewards] == list(range(1, 9))
    assert abs(rewards[0]["chosen"]) < 1e-6 and abs(rewards[0]["rejected"]) < 1e-6
    last = rewards[-1]
    assert last["margin"] == pytest.approx(last["chosen"] - last["rejected"], abs=1e-5) and last["margin"] > 0

    def margin(model_dir) -> float:
        model, tok = load_causal_lm(model_dir)
        return _mean(completion_logprobs(model, tok, PAIRS, "chosen")) - _mean(
            completion_logprobs(model, tok, PAIRS, "rejected"))

    assert margin(tmp_path / "dpo") > margin(char_model_dir) + 0.5


def test_no_data_saves_the_policy_unchanged(char_model_dir, tmp_path):
    assert sft(char_model_dir, [], tmp_path / "same", epochs=1, lr=1e-2, batch_size=2, seed=0)["steps"] == 0
    a, _ = load_causal_lm(char_model_dir)
    b, _ = load_causal_lm(tmp_path / "same")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_save_policy_atomic_replaces_the_directory_whole(char_model_dir, tmp_path):
    model, tok = load_causal_lm(char_model_dir)
    out = tmp_path / "policy"
    out.mkdir()
    (out / "stale.txt").write_text("from an older save")
    save_policy_atomic(model, tok, out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]  # no temporary directory left
    load_causal_lm(out)


def test_a_progress_title_draws_one_step_bar(char_model_dir, tmp_path, capsys):
    dpo(char_model_dir, char_model_dir, PAIRS[:4], tmp_path / "dpo", epochs=1, lr=1e-3, batch_size=2, beta=0.1,
        seed=0, progress="DPO")
    err = capsys.readouterr().err
    assert "DPO" in err and "2/2" in err and "margin=" in err


def test_a_killed_checkpointed_sft_resumes_where_it_stopped(char_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(finetune, "CHECKPOINT_STEPS", 3)  # 6 rows, batch 2, 4 epochs: 12 steps
    run = dict(epochs=4, lr=1e-2, batch_size=2, seed=0, overrides={"train_sampling_strategy": "random"})
    whole = sft(char_model_dir, ROWS, tmp_path / "whole", checkpoints=tmp_path / "whole.ck", **run)
    assert whole["steps"] == 12 and whole["resumed_from"] is None

    bar = finetune._step_bar
    monkeypatch.setattr(finetune, "_step_bar", lambda desc: kill_at_step(8))
    with pytest.raises(Killed):
        sft(char_model_dir, ROWS, tmp_path / "run", checkpoints=tmp_path / "run.ck", progress="SFT", **run)
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(finetune, "_step_bar", bar)
    capsys.readouterr()
    again = sft(char_model_dir, ROWS, tmp_path / "run", checkpoints=tmp_path / "run.ck", progress="SFT", **run)
    assert again["resumed_from"] == "checkpoint-6" and again["steps"] == 12
    assert "12/12" in capsys.readouterr().err  # the bar starts at the checkpoint's step and ends full
    # the same batches and schedule as the uninterrupted run: the same weights
    ref, resumed = load_causal_lm(tmp_path / "whole")[0].state_dict(), load_causal_lm(tmp_path / "run")[0].state_dict()
    assert all(torch.allclose(v, ref[k], atol=1e-5) for k, v in resumed.items())
