import json
import shutil

import pytest

from qstar.errors import QstarError
from qstar.models.tiny import TinyModelConfig
from qstar.train.pretrain import PretrainConfig, pretrain


def _cfg(**kw) -> PretrainConfig:
    base = dict(steps=6, batch_size=8, lr=3e-3, warmup_steps=1, save_every=3,
                model=TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2))
    base.update(kw)
    return PretrainConfig(**base)


def test_loss_falls_and_outputs_load(tmp_path):
    summary = pretrain(_cfg(steps=30, save_every=100, lr=1e-2), tmp_path / "p")
    assert summary["steps"] == 30
    assert summary["final_loss"] < summary["first_loss"] - 0.5
    saved = json.loads((tmp_path / "p" / "pretrain_config.json").read_text())
    assert PretrainConfig.from_dict(saved) == _cfg(steps=30, save_every=100, lr=1e-2)
    from qstar.models.load import load_causal_lm

    model, tok = load_causal_lm(tmp_path / "p")
    assert model.config.hidden_size == 32 and tok.decode(tok("1+2=3")["input_ids"], skip_special_tokens=True) == "1+2=3"


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    full = pretrain(_cfg(), tmp_path / "full")
    out = tmp_path / "killed"
    pretrain(_cfg(), out)
    # Simulate a kill after step 3: the later checkpoint and final outputs never got written.
    shutil.rmtree(out / "checkpoints" / "checkpoint-6")
    (out / "pretrain_summary.json").unlink()
    resumed = pretrain(_cfg(), out, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-3")
    assert resumed["steps"] == 6
    assert resumed["final_loss"] == pytest.approx(full["final_loss"], rel=1e-4)


def test_refuses_to_clobber_or_resume_another_config(tmp_path):
    pretrain(_cfg(), tmp_path / "p")
    with pytest.raises(QstarError, match="--resume"):
        pretrain(_cfg(), tmp_path / "p")
    with pytest.raises(QstarError, match="another configuration"):
        pretrain(_cfg(lr=1e-3), tmp_path / "p", resume=True)
    with pytest.raises(QstarError, match="no pretraining run"):
        pretrain(_cfg(), tmp_path / "empty", resume=True)


def test_stop_at_saves_the_full_runs_checkpoint_at_that_step(tmp_path):
    import torch
    from safetensors.torch import load_file

    pretrain(_cfg(), tmp_path / "full")
    summary = pretrain(_cfg(stop_at=3), tmp_path / "stopped")
    assert summary["steps"] == 3
    want = load_file(tmp_path / "full" / "checkpoints" / "checkpoint-3" / "model.safetensors")
    got = load_file(tmp_path / "stopped" / "model.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    final = load_file(tmp_path / "full" / "model.safetensors")
    assert not all(torch.equal(final[k], got[k]) for k in final)  # step 6 differs: the stop is real
    with pytest.raises(QstarError, match="stop_at"):
        pretrain(_cfg(stop_at=7), tmp_path / "bad")
