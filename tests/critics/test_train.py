"""Training the critics: a critic learns a separable toy set; the whole run works, resumes and checks input."""

import argparse
import json
import shutil
from dataclasses import replace

import pytest
import torch

from qstar.critics import train
from qstar.critics.cli import add_parser
from qstar.critics.data import DataConfig
from qstar.critics.load import load_critics
from qstar.critics.model import CriticSpec, critic_from_policy
from qstar.critics.train import (
    CriticTrainConfig,
    _comparable,
    finetune_on_graded,
    train_critic,
    train_critics,
)
from qstar.critics.trunk import TrunkConfig
from qstar.errors import QstarError
from qstar.models.load import load_tokenizer
from tests.killing import Killed, kill_at_step


def _tiny() -> CriticTrainConfig:
    data = DataConfig(samples_per_problem=2, rollouts=1, max_steps=2, max_step_tokens=8, max_rollout_tokens=8,
                      chunk_problems=2)
    trunk = TrunkConfig(problems=2, samples=2, max_new_tokens=8, epochs=1.0, batch_size=4, chunk_problems=2)
    return CriticTrainConfig(problems=3, data=data, trunk=trunk, steps=2, batch_size=4, warmup_steps=0,
                             report_problems=2)


def _toy(model_dir):
    """A fresh critic and a toy set separable by its last word: ``#### good`` (1) or ``#### bad`` (0)."""
    spec = CriticSpec("orm", "arith", "\n", "{question}\n", 320)
    critic = critic_from_policy(model_dir, load_tokenizer(model_dir), spec)
    questions = [f"Ann has {n} pens. How many now?" for n in range(8)]
    rows = [{"question": q, "steps": [f"{n}+1={n + 1}\n", f"#### {verdict}"], "label": label}
            for n, q in enumerate(questions) for verdict, label in (("good", 1.0), ("bad", 0.0))]
    return critic, rows


def _good_and_bad(critic) -> tuple[float, float]:
    """Scores of a good and a bad solution to a question the critic never saw."""
    good, bad = critic.score(["Bob has 3 cards. How many now?"] * 2, [["3+1=4\n", "#### good"], ["3+1=4\n", "#### bad"]])
    return good, bad


def test_the_probe_fits_the_head_alone(char_model_dir):
    critic, rows = _toy(char_model_dir)
    trunk = {k: v.clone() for k, v in critic.model.lm.state_dict().items()}
    cache = {}
    summary = train_critic(critic, rows, CriticTrainConfig(steps=0), cache)
    assert summary["probe_rows"] == 16 and summary["base_rate"] == 0.5
    assert summary["probe_loss"] < 0.5 * summary["base_loss"]
    good, bad = _good_and_bad(critic)
    assert good > 0.5 > bad
    assert all(torch.equal(v, critic.model.lm.state_dict()[k]) for k, v in trunk.items())
    assert len(cache) == 16  # each distinct text's features, for the next critic


def test_fine_tuning_trains_every_parameter(char_model_dir):
    critic, rows = _toy(char_model_dir)
    before = {k: v.clone() for k, v in critic.model.state_dict().items()}
    summary = train_critic(critic, rows, CriticTrainConfig(probe_rows=0, steps=30, batch_size=8, lr=3e-3,
                                                           warmup_steps=0))
    assert summary["steps"] == 30 and "probe_loss" not in summary
    assert summary["final_loss"] < 0.5 * summary["first_loss"]
    after = critic.model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # trunk and head all trained
    good, bad = _good_and_bad(critic)
    assert good > bad


def _graded(n: int) -> list[dict]:
    """Graded whole solutions, as the trunk phase saves them: right when the answer is ``n + 1``."""
    return [{"question": f"Ann has {n} pens. How many now?", "completion": f"{n}+1={n + k}\n#### {n + k}",
             "correct": k == 1} for n in range(n) for k in (1, 2)]


def test_a_killed_orm_fine_tuning_resumes_from_its_last_checkpoint(char_model_dir, tmp_path, monkeypatch):
    cfg = CriticTrainConfig(orm_epochs=6.0, orm_batch_size=8)  # 16 rows: 12 steps, checkpoints every 4
    monkeypatch.setattr(train, "CHECKPOINT_STEPS", 4)
    torch.manual_seed(0)  # the same fresh head for each run
    whole, _ = _toy(char_model_dir)
    done = finetune_on_graded(whole, _graded(8), cfg, tmp_path / "whole")
    assert done["steps"] == 12 and done["rows"] == 16 and done["resumed_from"] is None

    progress = train._progress
    monkeypatch.setattr(train, "_progress", lambda desc, total: kill_at_step(10))
    torch.manual_seed(0)
    killed, _ = _toy(char_model_dir)
    with pytest.raises(Killed):
        finetune_on_graded(killed, _graded(8), cfg, tmp_path / "run")
    monkeypatch.setattr(train, "_progress", progress)
    resumed, _ = _toy(char_model_dir)
    again = finetune_on_graded(resumed, _graded(8), cfg, tmp_path / "run")
    assert again["resumed_from"] == "checkpoint-8" and again["steps"] == 12
    # the same batches and schedule as the uninterrupted run: the same weights
    ref = whole.model.state_dict()
    assert all(torch.allclose(v, ref[k], atol=1e-5) for k, v in resumed.model.state_dict().items())
    assert not all(torch.equal(v, ref[k]) for k, v in killed.model.state_dict().items())


def test_a_run_saved_before_orm_fine_tuning_existed_kept_the_probe_alone():
    saved = CriticTrainConfig().to_dict()
    for key in ("orm_epochs", "orm_lr", "orm_batch_size"):
        del saved[key]
    assert _comparable(saved) == _comparable(CriticTrainConfig(orm_epochs=0.0).to_dict())
    assert _comparable(saved) != _comparable(CriticTrainConfig().to_dict())
    # without a trunk phase there is nothing to fine-tune the ORM on: an old trunk-less run (e.g. an improve
    # loop's iteration) resumes under the new default
    saved["trunk"]["problems"] = 0
    assert _comparable(saved) == _comparable(CriticTrainConfig(trunk=TrunkConfig(problems=0)).to_dict())


def _run_cli(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="qstar")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train-critics", *argv])
    args.func(args)


def test_cli_quick_run_writes_three_loadable_critics_and_a_report(char_model_dir, tmp_path, capsys):
    out = tmp_path / "critics"
    _run_cli("--policy", str(char_model_dir), "--out", str(out), "--quick", "--problems", "2",
             "--report-problems", "2")
    printed = capsys.readouterr().out
    assert "critics saved to" in printed and "AUROC" in printed
    critics = load_critics(out)
    scores = critics.value.score(["Ann has 5 pens. How many now?"], [["5+1=6\n"]])
    assert 0.0 <= scores[0] <= 1.0 and critics.prm.name == "prm" and critics.orm.name == "orm"
    report = json.loads((out / "report.json").read_text())
    assert report["problems"] == 2 and set(report["metrics"]) == {"value", "prm", "orm"}
    saved = json.loads((out / "critics_config.json").read_text())
    assert saved["problems"] == 2 and saved["data"]["rollouts"] == CriticTrainConfig.quick().data.rollouts


def test_a_rerun_skips_completed_phases(char_model_dir, tmp_path):
    out = tmp_path / "critics"
    first = train_critics(char_model_dir, "arith", out, _tiny())
    assert set(first["phases"]) == {"data", "trunk", "value", "prm", "orm", "report"}
    data_mtime = (out / "data" / "train.jsonl").stat().st_mtime_ns
    assert train_critics(char_model_dir, "arith", out, _tiny())["phases"] == {}
    shutil.rmtree(out / "prm")  # as if killed while training the PRM (before the report)
    (out / "report.json").unlink()
    again = train_critics(char_model_dir, "arith", out, _tiny())
    assert set(again["phases"]) == {"prm", "report"}
    assert again["critics"]["value"] == first["critics"]["value"]
    assert (out / "data" / "train.jsonl").stat().st_mtime_ns == data_mtime


def test_bad_input_is_a_clear_error(char_model_dir, tmp_path):
    with pytest.raises(QstarError, match="--problems must be at least 1"):
        _run_cli("--policy", str(char_model_dir), "--out", str(tmp_path / "a"), "--problems", "0")
    with pytest.raises(QstarError, match="--policy .*no such directory"):
        _run_cli("--policy", str(tmp_path / "missing"), "--out", str(tmp_path / "b"))
    with pytest.raises(QstarError, match="orm_epochs must be at least 0"):
        _run_cli("--policy", str(char_model_dir), "--out", str(tmp_path / "e"), "--orm-epochs", "-1")
    with pytest.raises(QstarError, match="unknown task"):
        _run_cli("--policy", str(char_model_dir), "--task", "chess", "--out", str(tmp_path / "c"))
    train_critics(char_model_dir, "arith", tmp_path / "d", _tiny())
    with pytest.raises(QstarError, match=r"another configuration \(.*problems: 3 -> 4"):
        train_critics(char_model_dir, "arith", tmp_path / "d", CriticTrainConfig.quick())
    with pytest.raises(QstarError, match=r"another configuration \(trunk\.lr: 0\.001 -> 0\.5\)"):
        train_critics(char_model_dir, "arith", tmp_path / "d", replace(_tiny(), trunk=replace(_tiny().trunk, lr=0.5)))
    again = train_critics(char_model_dir, "arith", tmp_path / "d", replace(_tiny(), threads=2))
    assert again["phases"] == {}  # threads change speed, not results: the finished run is resumed, not refused


def test_cli_help_states_the_config_defaults():
    parser = argparse.ArgumentParser(prog="qstar")
    helps = {a.dest: a.help for a in add_parser(parser.add_subparsers())._actions}
    cfg = CriticTrainConfig()
    for dest, value in (("problems", cfg.problems), ("samples_per_problem", cfg.data.samples_per_problem),
                        ("rollouts", cfg.data.rollouts), ("steps", cfg.steps),
                        ("trunk_problems", cfg.trunk.problems), ("trunk_samples", cfg.trunk.samples),
                        ("trunk_epochs", cfg.trunk.epochs), ("orm_epochs", cfg.orm_epochs)):
        assert helps[dest].endswith(f"(default {value})"), dest


def test_cli_trunk_flags_reach_the_trunk_config(monkeypatch, capsys):
    seen = {}

    def fake(policy, task, out, cfg):
        seen["cfg"] = cfg
        return {"phases": {}}

    monkeypatch.setattr(train, "train_critics", fake)
    _run_cli("--out", "unused", "--trunk-problems", "8192", "--trunk-samples", "8", "--trunk-epochs", "2")
    assert (seen["cfg"].trunk.problems, seen["cfg"].trunk.samples, seen["cfg"].trunk.epochs) == (8192, 8, 2.0)
    assert "nothing left to do" in capsys.readouterr().out
