"""``qstar dpo`` on a tiny random model: on-policy pairs the verifier agrees with, a trained policy, resume."""

from __future__ import annotations

import json

import pytest
import torch

from qstar.errors import QstarError
from qstar.models.load import load_causal_lm
from qstar.tasks import get_task
from qstar.train.dpo import DPORunConfig, run_dpo


def tiny(model_dir, **overrides) -> DPORunConfig:
    fields = dict(policy=str(model_dir), problems=6, samples=2, max_new_tokens=24, batch_size=4, lr=1e-2)
    return DPORunConfig(**{**fields, **overrides})


def _pairs(out) -> list[dict]:
    return [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]


def test_pairs_are_right_against_wrong_and_the_policy_moves(char_model_dir, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "dpo"
    summary = run_dpo(tiny(char_model_dir), out, progress=False)
    task = get_task("arith")
    by_prompt = {task.prompt(p): p for p in task.problems("train", 6, seed=3000)}
    pairs = _pairs(out)
    assert summary["pairs"] == len(pairs) > 0 and set(pairs[0]) == {"prompt", "chosen", "rejected"}
    for pair in pairs:  # a random model is never right: chosen is the reference solution, rejected its sample
        problem = by_prompt[pair["prompt"]]
        assert task.is_correct(pair["chosen"], problem) and not task.is_correct(pair["rejected"], problem)
    assert summary["pair_sources"]["chosen_reference"] == len(pairs)
    assert summary["steps"] == len(summary["rewards"]) > 0 and summary["reference"] == str(char_model_dir)
    before, _ = load_causal_lm(char_model_dir)
    after, _ = load_causal_lm(out / "policy")
    assert any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values(),
                                                    strict=True))


def test_a_rerun_reuses_the_pairs_and_the_finished_policy(char_model_dir, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "dpo"
    cfg = tiny(char_model_dir)
    first = run_dpo(cfg, out, progress=False)
    pairs = (out / "pairs.jsonl").read_text()
    weights = (out / "policy" / "model.safetensors").stat().st_mtime_ns
    assert run_dpo(cfg, out, progress=False) == first  # finished: nothing redone
    assert (out / "policy" / "model.safetensors").stat().st_mtime_ns == weights
    (out / "summary.json").unlink()  # killed during training: the pairs stay, only DPO runs again
    (out / "pairs.jsonl").write_text(pairs.splitlines()[0] + "\n")
    assert run_dpo(cfg, out, progress=False)["pairs"] == 1


def test_another_configuration_or_a_foreign_folder_is_refused(char_model_dir, tmp_path):
    out = tmp_path / "dpo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(QstarError, match="holds no dpo run"):
        run_dpo(tiny(char_model_dir), out, progress=False)
    (out / "notes.txt").unlink()
    (out / "config.json").write_text(json.dumps(tiny(char_model_dir).to_dict()))
    with pytest.raises(QstarError, match=r"another configuration \(lr: 0.01 -> 0.001\)"):
        run_dpo(tiny(char_model_dir, lr=1e-3), out, progress=False)


def test_without_reference_solutions_only_the_policys_own_samples_pair(char_model_dir, tmp_path):
    with pytest.raises(QstarError, match="no preference pairs"):  # a random model solves nothing
        run_dpo(tiny(char_model_dir, reference_chosen=False), tmp_path / "dpo", progress=False)
    assert (tmp_path / "dpo" / "pairs.jsonl").read_text() == ""


def test_init_starts_dpo_elsewhere_while_the_policy_stays_the_reference(char_model_dir, tmp_path):
    from qstar.train.finetune import sft

    torch.set_num_threads(1)
    start = tmp_path / "start"  # another model with the policy's tokenizer
    sft(char_model_dir, [{"prompt": "Ann has 3 pens.\n", "completion": "3+1=4\n#### 4"}] * 4, start, epochs=1,
        lr=1e-2, batch_size=2, seed=0)
    summary = run_dpo(tiny(char_model_dir, init=str(start)), tmp_path / "dpo", progress=False)
    assert summary["init"] == str(start) and summary["reference"] == str(char_model_dir)
    plain = run_dpo(tiny(char_model_dir), tmp_path / "plain", progress=False)
    assert _pairs(tmp_path / "dpo") == _pairs(tmp_path / "plain")  # the policy samples the pairs either way
    trained = load_causal_lm(tmp_path / "dpo" / "policy")[0].state_dict()
    assert any(not torch.equal(v, load_causal_lm(plain["policy"])[0].state_dict()[k]) for k, v in trained.items())


def test_a_bad_init_is_refused_before_anything_is_written(char_model_dir, bpe_model_dir, tmp_path):
    with pytest.raises(QstarError, match="--init .*no such directory"):
        run_dpo(tiny(char_model_dir, init=str(tmp_path / "missing")), tmp_path / "a", progress=False)
    with pytest.raises(QstarError, match="another tokenizer"):
        run_dpo(tiny(char_model_dir, init=str(bpe_model_dir)), tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_dpo_trains_on_step_pairs_unless_told_otherwise(char_model_dir, tmp_path, monkeypatch):
    from qstar.train import finetune

    trained = []

    def fake_dpo(start, reference, pairs, out, **kw):
        trained.append(pairs)
        return {"steps": 0, "pairs": len(pairs)}

    monkeypatch.setattr(finetune, "dpo", fake_dpo)
    sampled = {"prompt": "Ann has 3 pens. She gets 5. She doubles them. How many now?\n",
               "chosen": "3+5=8\n8*2=16\n#### 16", "rejected": "3+5=8\n8*2=17\n#### 17"}
    for step_pairs, out in ((True, tmp_path / "step"), (False, tmp_path / "solution")):
        cfg = tiny(char_model_dir, step_pairs=step_pairs)
        out.mkdir()  # a run killed after sampling: its pairs are reused as they are
        (out / "config.json").write_text(json.dumps(cfg.to_dict()))
        (out / "pairs.jsonl").write_text(json.dumps(sampled) + "\n")
        (out / "pairs_summary.json").write_text("{}")
        assert run_dpo(cfg, out, progress=False)["pairs"] == 1
        assert _pairs(out) == [sampled]  # the file keeps the whole solutions either way
    step = {"prompt": sampled["prompt"] + "3+5=8\n", "chosen": "8*2=16\n#### 16", "rejected": "8*2=17\n"}
    assert trained == [[step], [sampled]]


@pytest.mark.parametrize("flags, step_pairs", [((), True), (("--solution-pairs",), False)])
def test_cli_pairs_are_step_level_unless_asked_for_whole_solutions(monkeypatch, capsys, flags, step_pairs):
    from qstar.cli.main import build_parser
    from qstar.train import dpo as dpo_module

    seen = []

    def fake_run(cfg, out, progress):
        seen.append(cfg)
        return {"pairs": 1, "steps": 1, "wall_s": 0.0, "policy": f"{out}/policy", "reference": cfg.policy}

    monkeypatch.setattr(dpo_module, "run_dpo", fake_run)
    args = build_parser().parse_args(["dpo", "--out", "unused", *flags])
    args.func(args)
    assert [cfg.step_pairs for cfg in seen] == [step_pairs]
    assert "policy: unused/policy" in capsys.readouterr().out


def test_init_may_name_a_critics_run_whose_trunk_dpo_starts_from(char_model_dir, tmp_path, monkeypatch):
    import shutil

    from qstar.train import finetune

    started = []
    monkeypatch.setattr(finetune, "dpo", lambda start, *a, **kw: started.append(start) or {"steps": 0, "pairs": 1})
    run = tmp_path / "critics"
    run.mkdir()
    (run / "critics_config.json").write_text("{}")
    with pytest.raises(QstarError, match="critics run without a trunk"):
        run_dpo(tiny(char_model_dir, init=str(run)), tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    shutil.copytree(char_model_dir, run / "trunk" / "model")
    summary = run_dpo(tiny(char_model_dir, init=str(run)), tmp_path / "b", progress=False)
    assert started == [str(run / "trunk" / "model")] and summary["init"] == started[0]
