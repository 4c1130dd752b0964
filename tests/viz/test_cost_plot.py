"""The accuracy-vs-tokens plot and ``qstar compare``: points from summaries, clear errors, a real PNG."""

import json

import pytest

from qstar.errors import QstarError
from qstar.viz.compare_cli import comparable, read_result
from qstar.viz.cost_plot import Point, cost_points, plot_accuracy_vs_tokens
from qstar.viz.figure import pyplot, save_png

PNG = b"\x89PNG\r\n\x1a\n"


def row(name: str, accuracy: float, tokens: float) -> dict:
    return {"name": name, "summary": {"accuracy": accuracy, "ci95": [accuracy - 0.1, accuracy + 0.05],
                                      "mean_tokens": tokens}}


def test_points_come_from_the_summaries_and_a_bad_row_is_named():
    assert cost_points([row("greedy", 0.6, 35.0)]) == [Point("greedy", 35.0, 0.6, 0.5, 0.65)]
    with pytest.raises(QstarError, match="'mcts' has no accuracy"):
        cost_points([row("greedy", 0.6, 35.0), {"name": "mcts", "summary": {"accuracy": 0.7}}])
    with pytest.raises(QstarError, match="no methods"):
        cost_points([])


def test_the_plot_is_a_png_written_atomically(tmp_path):
    out = plot_accuracy_vs_tokens([row("greedy", 0.65, 35), row("mcts", 0.76, 462), row("sc@16", 0.59, 557)],
                                  tmp_path / "sub" / "m.png", "arith")
    assert out.read_bytes().startswith(PNG) and out.stat().st_size > 5000
    assert [p.name for p in out.parent.iterdir()] == ["m.png"]


def test_a_figure_that_fails_to_save_leaves_nothing(tmp_path):
    fig, _ = pyplot().subplots()
    with pytest.raises(ValueError):
        save_png(fig, tmp_path / "x.png", dpi=-1)
    assert list(tmp_path.iterdir()) == []


def write_result(folder, method: str, n: int = 20, split: str = "test", accuracy: float = 0.5):
    folder.mkdir(parents=True)
    summary = {"method": method, "n_problems": n, "accuracy": accuracy, "ci95": [0.3, 0.7], "mean_tokens": 40.0,
               "wall_s": 1.0}
    (folder / "results.json").write_text(json.dumps(
        {"config": {"task": "arith", "data": None, "split": split, "method": method}, "summary": summary}))
    return folder


def test_read_result_accepts_a_folder_or_its_file_and_refuses_others(tmp_path):
    folder = write_result(tmp_path / "g", "greedy")
    assert read_result(folder)["name"] == read_result(folder / "results.json")["name"] == "greedy"
    with pytest.raises(QstarError, match="no results.json"):
        read_result(tmp_path / "missing")
    (tmp_path / "bad.json").write_text('{"config": {},\n "summary": ')
    with pytest.raises(QstarError, match=r"bad.json:2: malformed JSON"):
        read_result(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"figures": {}}')
    with pytest.raises(QstarError, match="not a qstar eval result"):
        read_result(tmp_path / "other.json")


def test_compared_runs_must_share_their_problems_and_get_distinct_names(tmp_path):
    a = read_result(write_result(tmp_path / "a", "mcts"))
    b = read_result(write_result(tmp_path / "b", "mcts"))
    g = read_result(write_result(tmp_path / "g", "greedy"))
    assert [r["name"] for r in comparable([a, b, g])] == ["mcts (a)", "mcts (b)", "greedy"]
    with pytest.raises(QstarError, match="other problems .*problems=10"):
        comparable([a, read_result(write_result(tmp_path / "c", "beam", n=10))])
    with pytest.raises(QstarError, match="split=train"):
        comparable([a, read_result(write_result(tmp_path / "d", "beam", split="train"))])
