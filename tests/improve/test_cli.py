"""The ``improve`` subcommand's arguments become the run's config (the lead wires it into ``qstar``)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from qstar.errors import QstarError
from qstar.improve.cli import add_parser, config_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qstar")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["improve", *argv])


def test_flags_and_options_fill_the_config(tmp_path):
    a = parse("--policy", str(tmp_path), "--out", "run", "--iterations", "2", "--static-critics", "--finetune",
              "sft", "--simulations", "5", "--eval-limit", "20", "--options",
              '{"sft_lr": 0.001, "eval_search": {"n_simulations": 7}}')
    cfg = config_from_args(a)
    assert (cfg.policy, cfg.iterations, cfg.retrain_critics, cfg.finetune) == (str(tmp_path), 2, False, "sft")
    assert (cfg.search.n_simulations, cfg.eval_search.n_simulations, cfg.eval_limit) == (5, 7, 20)
    assert cfg.sft_lr == 1e-3 and cfg.eval_search.c_max == 4  # merged into the defaults
    assert cfg.oracle_orm and cfg.iterations == 2


def test_defaults_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_args(parse("--policy", "pol", "--out", "run"))
    assert cfg.policy == str(tmp_path / "pol") and cfg.iterations == 3 and cfg.finetune == "sft+dpo"
    assert cfg.retrain_critics and cfg.critics is None


def test_unknown_options_are_refused():
    with pytest.raises(QstarError, match="unknown field"):
        config_from_args(parse("--out", "run", "--options", '{"sft_learning_rate": 1}'))
    with pytest.raises(QstarError, match="search"):
        config_from_args(parse("--out", "run", "--options", '{"search": {"sims": 1}}'))


def test_help_does_not_import_torch():
    code = ("import sys, argparse; from qstar.improve.cli import add_parser; "
            "add_parser(argparse.ArgumentParser().add_subparsers()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
