"""Subprocess smoke runs of every CLI command, as a user would type them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA


def qstar(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qstar.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("qstar: error:")
    for needle in needles:
        assert needle in line, line


def test_help_does_not_import_torch():
    code = "import sys; from qstar.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert qstar("--help").returncode == 0


@pytest.mark.parametrize(("task", "path", "total"), [("gsm8k", "gsm8k/test.jsonl", 1319),
                                                    ("math500", "math500/test.jsonl", 500)])
def test_grade_references(task, path, total):
    proc = qstar("grade-references", "--task", task, "--data", str(SHARED_DATA / path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"{total}/{total} reference solutions grade correct"


def test_grade_references_fails_on_a_wrong_reference(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}) + "\n"
                   + json.dumps({"question": "2+2?", "answer": "#### 4"}) + "\n")
    assert qstar("grade-references", "--task", "gsm8k", "--data", str(bad)).returncode == 0
    from qstar.tasks.gsm8k import GSM8KTask

    task = GSM8KTask(str(bad))
    p = task.problems("test")[0]
    assert not task.is_correct("1+1=3\n#### 3", p)


@pytest.mark.parametrize(("content", "needle"), [
    ('{"question": "q", "answer": "#### 1"}\n{"question": 1\n', ":2:"),
    ('{"question": "q"}\n', ":1:"),
    ("", "empty"),
])
def test_bad_data_files(tmp_path, content, needle):
    f = tmp_path / "data.jsonl"
    f.write_text(content)
    assert_clean_error(qstar("grade-references", "--task", "gsm8k", "--data", str(f)), str(f), needle)


def test_missing_file_and_unknown_names(tmp_path):
    assert_clean_error(qstar("grade-references", "--task", "gsm8k", "--data", str(tmp_path / "no.jsonl")), "no.jsonl")
    assert_clean_error(qstar("grade-references", "--task", "nope"), "unknown task")
    assert_clean_error(qstar("eval", "--method", "nope", "--limit", "1"), "unknown method")


def test_bad_model_directories(tmp_path, char_model_dir):
    assert_clean_error(qstar("eval", "--model", str(tmp_path / "absent"), "--limit", "1"), "no such directory")
    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    (no_tok / "config.json").write_text((char_model_dir / "config.json").read_text())
    assert_clean_error(qstar("eval", "--model", str(no_tok), "--limit", "1"), "tokenizer")
    not_lm = tmp_path / "not-lm"
    not_lm.mkdir()
    cfg = json.loads((char_model_dir / "config.json").read_text())
    cfg["architectures"] = ["LlamaForSequenceClassification"]
    (not_lm / "config.json").write_text(json.dumps(cfg))
    for f in char_model_dir.glob("tokenizer*"):
        (not_lm / f.name).write_text(f.read_text())
    assert_clean_error(qstar("eval", "--model", str(not_lm), "--limit", "1"), "not a causal language model")


def test_eval_writes_results(tmp_path, char_model_dir):
    out = tmp_path / "run"
    proc = qstar("eval", "--model", str(char_model_dir), "--method", "sample", "--n", "3", "--limit", "4",
                 "--max-new-tokens", "24", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    assert set(res["summary"]) >= {"accuracy", "n_problems", "mean_tokens", "wall_s", "pass_at_n"}
    assert res["summary"]["n_problems"] == 4 and res["config"]["method"] == "sample"
    rec = res["records"][0]
    assert set(rec) >= {"question", "reference", "prediction", "correct", "tokens"}
    assert 0 < rec["tokens"] <= 3 * 24 and rec["n_candidates"] == 3

    # a second method on the same problems, then both side by side
    greedy = tmp_path / "greedy"
    assert qstar("eval", "--model", str(char_model_dir), "--limit", "4", "--max-new-tokens", "24",
                 "--out", str(greedy), "--quiet").returncode == 0
    proc = qstar("compare", str(out), str(greedy / "results.json"), "--out", str(tmp_path / "c.png"))
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.splitlines()
    assert table[0] == "arith (test, 4 problems)" and [line.split()[0] for line in table[3:5]] == ["sample", "greedy"]
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    other = tmp_path / "other"
    assert qstar("eval", "--model", str(char_model_dir), "--limit", "2", "--max-new-tokens", "8",
                 "--out", str(other), "--quiet").returncode == 0
    assert_clean_error(qstar("compare", str(out), str(other)), "evaluated other problems")


def test_eval_task_options_reach_the_generator(tmp_path, char_model_dir):
    out = tmp_path / "short"
    proc = qstar("eval", "--model", str(char_model_dir), "--task-options", '{"min_steps": 1, "max_steps": 1}',
                 "--limit", "3", "--max-new-tokens", "8", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["task_options"] == {"min_steps": 1, "max_steps": 1}
    assert all(r["question"].count(".") == 2 for r in res["records"])  # "X has N things. One step. How many?"
    assert_clean_error(qstar("eval", "--model", str(char_model_dir), "--task-options", '{"bogus": 1}'),
                       "unknown task option", "bogus", "max_steps")
    assert_clean_error(qstar("eval", "--task", "gsm8k", "--data", str(SHARED_DATA / "gsm8k/test.jsonl"),
                             "--task-options", '{"bogus": 1}'), "gsm8k", "bogus")


def test_bpe_policy_on_gsm8k_end_to_end(tmp_path, bpe_model_dir):
    out = tmp_path / "gsm"
    proc = qstar("eval", "--model", str(bpe_model_dir), "--task", "gsm8k", "--data",
                 str(SHARED_DATA / "gsm8k/test.jsonl"), "--limit", "5", "--max-new-tokens", "32", "--out", str(out),
                 "--quiet")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["n_problems"] == 5 and all(r["tokens"] > 0 for r in res["records"])


def test_pretrain_command(tmp_path):
    out = tmp_path / "pol"
    proc = qstar("pretrain", "--task", "arith", "--out", str(out), "--steps", "3", "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr
    assert (out / "config.json").is_file() and (out / "pretrain_config.json").is_file()
    assert_clean_error(qstar("pretrain", "--task", "arith", "--out", str(out), "--steps", "3"), "--resume")


def test_dpo_command_then_credit(tmp_path, char_model_dir):
    out = tmp_path / "dpo"
    args = ("dpo", "--policy", str(char_model_dir), "--out", str(out), "--problems", "4", "--samples", "2", "--quiet")
    proc = qstar(*args)
    assert proc.returncode == 0, proc.stderr
    assert f"policy: {out / 'policy'}" in proc.stdout and (out / "summary.json").is_file()
    assert_clean_error(qstar(*args, "--lr", "0.5"), "another configuration", "lr: 0.0004 -> 0.5")
    proc = qstar("credit", "--policy", str(out / "policy"), "--ref", str(char_model_dir), "--question", "Ann has 3 pens.",
                 "--solution", "3+1=4\n#### 4", "--out", str(tmp_path / "credit"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "credit" / "credit.html").is_file()


def test_demo_quick(tmp_path):
    proc = qstar("demo", "--quick", "--out", str(tmp_path / "demo"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "qstar improve: arith" in proc.stdout and "progress.png" in proc.stdout.splitlines()[-1]
    res = json.loads((tmp_path / "demo" / "improve" / "results.json").read_text())
    assert [r["iteration"] for r in res["rows"]] == [0, 1]
    assert all(0 <= r[m] <= 1 for r in res["rows"] for m in ("greedy", "self_consistency", "mcts"))
    assert (tmp_path / "demo" / "improve" / "progress.png").stat().st_size > 0


def test_search_and_view(tmp_path, char_model_dir):
    tree = tmp_path / "tree.json"
    proc = qstar("search", "--model", str(char_model_dir), "--method", "mcts", "--question",
                 "Ann has 5 pens. She buys 3. How many now?", "--save-tree", str(tree),
                 "--options", '{"n_simulations": 6, "max_option_tokens": 10, "max_depth": 3}')
    assert proc.returncode == 0, proc.stderr
    assert "solution:" in proc.stdout and "nodes:" in proc.stdout and "generated_tokens:" in proc.stdout
    data = json.loads(tree.read_text())
    assert len(data["nodes"]) > 1 and data["chosen"][0] == 0
    html = tmp_path / "tree.html"
    proc = qstar("view", str(tree), "--out", str(html))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page and "https://" not in page
    tree.write_text("{not json")
    assert_clean_error(qstar("view", str(tree), "--out", str(html)), str(tree))


@pytest.mark.parametrize("method", ["mcts", "beam"])
def test_eval_search_methods(tmp_path, char_model_dir, method):
    out = tmp_path / method
    opts = {"mcts": '{"n_simulations": 4, "max_option_tokens": 8, "max_depth": 3}',
            "beam": '{"beam_width": 2, "expansions_per_beam": 2, "max_steps": 3, "max_option_tokens": 8}'}[method]
    proc = qstar("eval", "--model", str(char_model_dir), "--method", method, "--limit", "2", "--options", opts,
                 "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["n_problems"] == 2 and res["summary"]["mean_tokens"] > 0
    assert res["method_config"]["max_option_tokens"] == 8


def test_humaneval_grading_and_pass_at_k(tmp_path, bpe_model_dir):
    data = str(SHARED_DATA / "humaneval/HumanEval.jsonl.gz")
    proc = qstar("grade-references", "--task", "humaneval", "--data", data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "164/164 reference solutions grade correct"
    out = tmp_path / "he"
    proc = qstar("eval", "--model", str(bpe_model_dir), "--task", "humaneval", "--data", data, "--limit", "2",
                 "--method", "sample", "--n", "2", "--max-new-tokens", "16", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert set(summary["pass_at_k"]) == {"1", "2"} and summary["n"] == 2
