"""The loop end to end on a tiny model: outputs, resume after a kill in every phase, refused configs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qstar.errors import QstarError
from qstar.improve.config import check_config
from qstar.improve.loop import Run, Step, plan, run_improve
from qstar.search.mcts import MCTSConfig
from tests.conftest import ROOT
from tests.improve.fakes import fake_backend, tiny_config


class Kill(Exception):
    """Stands for the process dying."""


def killer(at: Step, event: str = "commit"):
    """A hook that dies in phase ``at``; at "commit" it first truncates the phase's biggest file, as a kill
    in the middle of writing a checkpoint would."""

    def hook(event_: str, step: Step, path: Path) -> None:
        if (event_, step) != (event, at):
            return
        files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        if files:
            with open(files[-1], "r+b") as f:
                f.truncate(files[-1].stat().st_size // 2)
        raise Kill(step.name)

    return hook


def fingerprint(out: Path) -> dict:
    """What must not depend on kills: the rows (wall times aside) and the bytes of every data and model file."""
    rows = json.loads((out / "results.json").read_text())["rows"]
    rows = [{k: v for k, v in r.items() if "wall" not in k and k != "eval"} for r in rows]
    files = {}
    for p in sorted(out.glob("iter-*/*/*")):
        if p.suffix in (".jsonl", ".safetensors"):
            files[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return {"rows": rows, "files": files}


def starts_and_dones(out: Path) -> dict[str, tuple[int, int]]:
    log = json.loads((out / "state.json").read_text())["log"]
    names = {e["step"] for e in log}
    return {n: (sum(e["step"] == n and e["event"] == "start" for e in log),
                sum(e["step"] == n and e["event"] == "done" for e in log)) for n in names}


@pytest.fixture(scope="module")
def reference(char_model_dir, tmp_path_factory) -> Path:
    """One uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run_improve(tiny_config(char_model_dir), out, backend=fake_backend(), progress=False)
    return out


def test_a_run_writes_rows_plot_state_and_trl_data(reference):
    results = json.loads((reference / "results.json").read_text())
    assert [r["iteration"] for r in results["rows"]] == [0, 1]
    assert results["config"]["oracle_orm"] is True and "verifier" in results["oracle"]
    row = results["rows"][1]
    assert row["kept"] > 0 and row["pairs"] > 0
    assert set(row["phase_wall_s"]) == {"search", "synthesise", "sft", "dpo", "critics", "eval"}
    assert (reference / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = reference / "iter-01" / "synthesise"
    sft = [json.loads(line) for line in open(data / "sft.jsonl")]
    pairs = [json.loads(line) for line in open(data / "pairs.jsonl")]
    assert len(sft) == row["kept"] and all(set(r) == {"prompt", "completion"} for r in sft)
    assert len(pairs) == row["pairs"] and all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
    search = json.loads((reference / "iter-01" / "search" / "summary.json").read_text())
    assert (search["searched"], search["sampled"]) == (4, 6)  # sampling reaches past the searched problems
    assert len({r["prompt"] for r in sft}) == len(sft)  # one completion per problem (sft_per_problem=1)
    samples = [json.loads(line)["samples"] for line in open(reference / "iter-01" / "search" / "samples.jsonl")]
    assert all(len(s) == (1 if ord(s[0][0][0]) % 2 == 0 else 3) for s in samples)  # rejection_focus
    assert search["sampled_beyond_greedy"] == sum(len(s) > 1 for s in samples)
    assert all(n[1] == 1 for n in starts_and_dones(reference).values())
    assert not [p for p in reference.rglob(".*") if p.name not in (".critics.work", ".lock")]  # no temporaries


def focused(run_dir: Path, right) -> list[tuple[bool, int]]:
    """(is the greedy solution right, how many solutions were drawn) per problem of iteration 1's samples."""
    rows = [json.loads(line) for line in open(run_dir / "iter-01" / "search" / "samples.jsonl")]
    return [(right(r["id"], r["samples"][0][0]), len(r["samples"])) for r in rows]


def test_focus_samples_only_where_greedy_is_wrong(char_model_dir, tmp_path):
    cfg = tiny_config(char_model_dir, task="coin-parity", rejection_problems=12)
    stop = next(s for s in plan(cfg) if s.phase == "synthesise")
    with pytest.raises(Kill):
        run_improve(cfg, tmp_path / "run", backend=fake_backend(), hook=killer(stop, "start"), progress=False)
    run = Run(cfg, tmp_path / "run")
    by_id = {p.id: p for p in run.train_problems(1)}
    drawn = focused(tmp_path / "run", lambda pid, text: run.task.is_correct(text, by_id[pid]))
    assert {right for right, _ in drawn} == {True, False}  # both kinds occur
    assert all(n == (1 if right else 3) for right, n in drawn)  # greedy, then 2 samples where it is wrong


def test_without_focus_every_problem_is_sampled(char_model_dir, tmp_path):
    stop = next(s for s in plan(tiny_config(char_model_dir)) if s.phase == "synthesise")
    with pytest.raises(Kill):
        run_improve(tiny_config(char_model_dir, rejection_focus=False), tmp_path / "run", backend=fake_backend(),
                    hook=killer(stop, "start"), progress=False)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "iter-01" / "search" / "samples.jsonl")]
    assert len(rows) == 6 and all(len(r["samples"]) == 3 for r in rows)  # greedy + 2 samples each
    with pytest.raises(QstarError, match="needs rejection_greedy"):
        run_improve(tiny_config(char_model_dir, rejection_greedy=False), tmp_path / "other",
                    backend=fake_backend(), progress=False)


def test_resume_after_a_kill_in_each_phase(reference, char_model_dir, tmp_path):
    cfg, out = tiny_config(char_model_dir), tmp_path / "run"
    steps, committed = plan(cfg), {}
    for i, step in enumerate(steps):
        with pytest.raises(Kill):
            run_improve(cfg, out, backend=fake_backend(), hook=killer(step), progress=False)
        run = Run(cfg, out)
        assert not run.done(step) and all(run.done(s) for s in steps[:i])
        for s in steps[:i]:  # phases committed before this kill were not redone by the rerun
            mtime = (run.path(s) / "summary.json").stat().st_mtime_ns
            assert committed.setdefault(s, mtime) == mtime, s.name
    run_improve(cfg, out, backend=fake_backend(), progress=False)
    assert fingerprint(out) == fingerprint(reference)
    # every phase was started twice (killed once, then redone from its start) and committed once
    assert starts_and_dones(out) == {s.name: (2, 1) for s in steps}


def test_a_kill_between_commit_and_log_is_recovered_without_redoing(reference, char_model_dir, tmp_path):
    cfg, out = tiny_config(char_model_dir), tmp_path / "run"
    steps = plan(cfg)
    sft = next(s for s in steps if s.phase == "sft")
    with pytest.raises(Kill):
        run_improve(cfg, out, backend=fake_backend(), hook=killer(steps[steps.index(sft) + 1], "start"),
                    progress=False)
    state = json.loads((out / "state.json").read_text())
    # the kill came after the sft rename but before its log entry: drop the entry and what followed it
    cut = next(i for i, e in enumerate(state["log"]) if e["step"] == sft.name and e["event"] == "done")
    (out / "state.json").write_text(json.dumps({"log": state["log"][:cut]}))
    run_improve(cfg, out, backend=fake_backend(), progress=False)
    log = json.loads((out / "state.json").read_text())["log"]
    assert [e.get("recovered") for e in log if e["step"] == sft.name] == [None, True]
    assert fingerprint(out) == fingerprint(reference)


def test_sigkill_mid_phase_then_the_same_command_finishes_the_run(reference, char_model_dir, tmp_path):
    out = tmp_path / "run"
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from tests.improve.fakes import tiny_config, fake_backend\n"
              "from qstar.improve.loop import run_improve\n"
              f"run_improve(tiny_config({str(char_model_dir)!r}), {str(out)!r}, backend=fake_backend(), "
              "progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait for the sft phase to begin
        state = out / "state.json"
        if state.is_file() and '"iter-01/sft"' in state.read_text():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").is_file() or len(json.loads((out / "results.json").read_text())["rows"]) < 2
    run_improve(tiny_config(char_model_dir), out, backend=fake_backend(), progress=False)
    assert fingerprint(out) == fingerprint(reference)
    done_before = [n for n, (starts, _) in starts_and_dones(out).items() if starts == 1]
    assert "iter-01/synthesise" in done_before and "iter-00/eval" in done_before


def test_more_iterations_continue_a_finished_run(reference, char_model_dir, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = (out / "iter-01" / "dpo" / "summary.json").stat().st_mtime_ns
    calls: list = []
    results = run_improve(tiny_config(char_model_dir, iterations=2), out, backend=fake_backend(calls),
                          progress=False)
    assert [r["iteration"] for r in results["rows"]] == [0, 1, 2]
    assert (out / "iter-01" / "dpo" / "summary.json").stat().st_mtime_ns == before
    assert calls == [(str(out / "iter-02" / "dpo"), 2)]  # only the new iteration's critics were trained
    assert json.loads((out / "config.json").read_text())["iterations"] == 2


def test_a_rerun_may_change_threads_only(reference, char_model_dir, tmp_path):
    """Threads change how fast a run goes, not what it computes: resuming with another count is allowed, and
    the refusal of another configuration does not list them."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    run = Run(tiny_config(char_model_dir, threads=2), out)
    run.open()
    run.close()
    assert json.loads((out / "config.json").read_text())["threads"] == 2
    with pytest.raises(QstarError, match=r"configuration \(sft_lr: 0.001 -> 0.002\); rerun"):
        Run(tiny_config(char_model_dir, threads=1, sft_lr=2e-3), out).open()
    with pytest.raises(QstarError, match="threads must be at least 1"):
        check_config(tiny_config(char_model_dir, threads=0))


def test_a_run_with_another_config_is_refused(reference, char_model_dir, tmp_path):
    with pytest.raises(QstarError, match=r"another configuration \(sft_lr: 0.001 -> 0.002\)"):
        Run(tiny_config(char_model_dir, sft_lr=2e-3), reference).open()
    with pytest.raises(QstarError, match="search"):
        run_improve(tiny_config(char_model_dir, search=MCTSConfig()),
                    reference, backend=fake_backend(), progress=False)
    held = Run(tiny_config(char_model_dir), reference)
    held.open()
    with pytest.raises(QstarError, match="in use by another"):
        Run(tiny_config(char_model_dir), reference).open()
    held.close()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a run")
    with pytest.raises(QstarError, match="no config.json"):
        Run(tiny_config(char_model_dir), tmp_path / "other").open()


def test_a_run_saved_before_sft_order_existed_resumes_as_it_trained(reference, char_model_dir, tmp_path):
    """Such a run trained on batches by length with a linear schedule (today's defaults): it resumes, and
    other settings are refused by name."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    saved = json.loads((out / "config.json").read_text())
    del saved["sft_order"], saved["sft_schedule"]
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(QstarError, match=r"\(sft_order: 'by_length' -> 'random'; sft_schedule: 'linear' -> 'cosine'\)"):
        Run(tiny_config(char_model_dir, sft_order="random", sft_schedule="cosine"), out).open()
    run = Run(tiny_config(char_model_dir), out)
    run.open()
    run.close()
    with pytest.raises(QstarError, match="sft_order must be one of random, by_length"):
        check_config(tiny_config(char_model_dir, sft_order="shuffled"))


def test_sft_trains_with_the_configured_batch_order_and_schedule(reference, char_model_dir, tmp_path, monkeypatch):
    from qstar.improve.loop import phase_sft
    from qstar.train import finetune

    seen = []
    monkeypatch.setattr(finetune, "sft", lambda *args, **kw: seen.append(kw["overrides"]) or {})
    for order, schedule in (("random", "cosine"), ("by_length", "linear")):
        phase_sft(Run(tiny_config(char_model_dir, sft_order=order, sft_schedule=schedule), reference), 1,
                  tmp_path / order)
    assert seen == [{"train_sampling_strategy": "random", "lr_scheduler_type": "cosine"},
                    {"train_sampling_strategy": "group_by_length", "lr_scheduler_type": "linear"}]


def test_static_critics_and_sft_only_plans(char_model_dir):
    static = plan(tiny_config(char_model_dir, retrain_critics=False, finetune="sft", iterations=2))
    assert [s.name for s in static] == ["iter-00/critics", "iter-00/eval",
                                        "iter-01/search", "iter-01/synthesise", "iter-01/sft", "iter-01/eval",
                                        "iter-02/search", "iter-02/synthesise", "iter-02/sft", "iter-02/eval"]
    given = plan(tiny_config(char_model_dir, critics="/some/critics", finetune="dpo"))
    assert [s.name for s in given] == ["iter-00/eval", "iter-01/search", "iter-01/synthesise", "iter-01/dpo",
                                       "iter-01/critics", "iter-01/eval"]
    run = Run(tiny_config(char_model_dir, retrain_critics=False), "/unused")
    assert run.critics_dir(3) == run.path(Step(0, "critics"))


class RuleORM:
    """A trained ORM stand-in: sure of the coin task's rule for letters, unsure about everything else."""

    name = "orm"

    def score(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        texts = ["".join(s) for s in steps]
        return [0.5 if not t[:1].isalpha() else 0.95 if ord(t[0]) % 2 == 0 else 0.02 for t in texts]


def test_keep_by_orm_threshold_needs_no_ground_truth(char_model_dir, tmp_path):
    from qstar.improve.loop import CriticsBackend
    from qstar.search.common import Critics

    backend = CriticsBackend(train=fake_backend().train, load=lambda path: Critics(orm=RuleORM()))
    stop = next(s for s in plan(tiny_config(char_model_dir)) if s.phase == "sft")
    with pytest.raises(Kill):
        run_improve(tiny_config(char_model_dir, keep="orm", gamma=0.9), tmp_path / "run", backend=backend,
                    hook=killer(stop, "start"), progress=False)
    data = tmp_path / "run" / "iter-01" / "synthesise"
    summary = json.loads((data / "summary.json").read_text())
    sft = [json.loads(line) for line in open(data / "sft.jsonl")]
    assert sft and all(r["completion"][0].isalpha() and ord(r["completion"][0]) % 2 == 0 for r in sft)
    assert summary["kept_correct"] == 1.0  # the verifier agrees with every row the ORM kept
    # focus by the ORM's judgement: samples follow the greedy solution where the ORM is below gamma
    drawn = focused(tmp_path / "run", lambda pid, text: RuleORM().score([""], [[text]])[0] >= 0.9)
    assert drawn and all(n == (1 if right else 3) for right, n in drawn)


def test_the_loop_trains_critics_without_a_trunk_unless_asked(monkeypatch, tmp_path):
    """The trunk phase of train-critics takes minutes; the loop's critics skip it unless critic_options
    name it, and nested options override single fields of the defaults."""
    import qstar.critics.train as critics_train
    from qstar.improve import loop

    seen = []
    monkeypatch.setattr(critics_train, "train_critics", lambda policy, task, out, cfg: seen.append(cfg))
    loop.train_critics(tmp_path, "arith", tmp_path, 3, {"problems": 8, "data": {"rollouts": 2}})
    loop.train_critics(tmp_path, "arith", tmp_path, 3, {"trunk": {"problems": 16}})
    plain, asked = seen
    assert (plain.problems, plain.data.rollouts, plain.trunk.problems, plain.seed) == (8, 2, 0, 3)
    assert plain.data.samples_per_problem == critics_train.DataConfig().samples_per_problem
    assert asked.trunk.problems == 16 and asked.trunk.epochs == critics_train.TrunkConfig().epochs
