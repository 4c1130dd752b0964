"""The report's metrics on hand-made numbers, and its wiring of critics to their own labels."""

import math

import pytest

from qstar.critics.report import (
    auroc,
    ece,
    evaluate_critics,
    format_report,
    precision_recall,
    within_group_auroc,
)
from qstar.search.common import Critics
from tests.search.fakes import ConstantCritic


def test_auroc():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # the textbook example
    assert auroc([0.5] * 4, [0, 1, 0, 1]) == 0.5  # ties count half
    assert auroc([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(7 / 8)
    assert auroc([0.3, 0.6], [1, 1]) is None


def test_auroc_within_groups_only_compares_candidates_of_one_problem():
    # within each problem the wrong solution scores higher than the right one
    scores, labels, groups = [0.9, 0.8, 0.2, 0.1], [0, 1, 0, 1], ["a", "a", "b", "b"]
    assert auroc(scores, labels) == 0.25  # only 0.8 > 0.2 of the four cross pairs
    assert within_group_auroc(scores, labels, groups) == 0.0
    assert within_group_auroc([0.5, 0.5, 0.7, 0.2, 0.3], [1, 0, 1, 0, 0], ["a", "a", "b", "b", "b"]) == 2.5 / 3
    assert within_group_auroc([0.1, 0.2], [1, 0], ["a", "b"]) is None


def test_precision_and_recall_at_one_half():
    scores, labels = [0.9, 0.6, 0.4, 0.2, 0.5], [1, 0, 1, 0, 1]
    assert precision_recall(scores, labels) == (2 / 3, 2 / 3)
    assert precision_recall([0.1, 0.2], [1, 0]) == (None, 0.0)
    assert precision_recall([0.7, 0.8], [0, 0]) == (0.0, None)


def test_expected_calibration_error():
    # bins 0, 1 and 9: (|0.05 - 0| + |0.15 - 0| + |1.9 - 1|) / 4
    assert ece([0.05, 0.15, 0.95, 0.95], [0, 0, 1, 0]) == pytest.approx(0.275)
    assert ece([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0)
    assert ece([0.3, 0.7, 1.0], [0.3, 0.7, 1.0]) == pytest.approx(0.0)  # soft targets; 1.0 in the last bin
    assert ece([0.1, 0.9], [1, 0]) == pytest.approx(0.9)
    assert math.isnan(ece([], []))


def test_each_critic_is_judged_against_its_own_labels():
    records = [
        {"question": "q1", "steps": ["a\n", "b"], "correct": True, "mc": [0.6, 1.0], "rollouts": [], "problem_id": "1"},
        {"question": "q2", "steps": ["c\n", "d"], "correct": False, "mc": [0.2, 0.0], "rollouts": [], "problem_id": "2"},
    ]
    critics = Critics(value=ConstantCritic("value", 0.5), prm=ConstantCritic("prm", 0.5), orm=ConstantCritic("orm", 0.4))
    m = evaluate_critics(critics, records, prm_threshold=0.2)
    assert m["value"]["n"] == 4 and m["value"]["positive_rate"] == 0.5  # returns 0.6 and 1.0 are >= 0.5
    assert m["value"]["ece"] == pytest.approx(abs(0.5 - (0.6 + 1.0 + 0.2 + 0.0) / 4))  # against the returns
    assert m["prm"]["positive_rate"] == 0.75  # 0.2 reaches the threshold
    assert (m["prm"]["precision"], m["prm"]["recall"], m["prm"]["auroc"]) == (0.75, 1.0, 0.5)
    assert m["orm"]["n"] == 2 and m["orm"]["recall"] == 0.0 and m["orm"]["precision"] is None
    assert m["orm"]["auroc_within_problem"] is None  # each problem has one solution here
    assert m["prm"]["auroc_within_problem"] == 0.5  # q2's good first step against its bad second one
    table = format_report(m, title="t")
    assert table.splitlines()[0] == "t" and all(role in table for role in ("value", "prm", "orm"))
    assert evaluate_critics(Critics(orm=ConstantCritic("orm")), records, 0.2).keys() == {"orm"}
