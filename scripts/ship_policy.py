"""Copy a trained policy into the package as a shipped policy, with the command that reproduces it.

    .venv/bin/python scripts/ship_policy.py RUN_DIR "qstar pretrain --task arith --out RUN_DIR" [--eval EVAL_JSON...]
    .venv/bin/python scripts/ship_policy.py RUN_DIR "qstar pretrain --task code-arith ..." --asset policy-code-arith \
        [--weights CHECKPOINT_DIR] [--note TEXT] [--eval EVAL_JSON...]

``--asset`` names the folder under ``src/qstar/assets`` (default ``policy-arith``, the shipped default);
``qstar ... --model default`` loads ``policy-<task>`` where one ships. ``--weights`` takes the weights from
one of the run's checkpoints instead of its final save (the config and summary still come from RUN_DIR).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "src" / "qstar" / "assets"
WEIGHTS = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
           "special_tokens_map.json"]
RUN_FILES = ["pretrain_config.json", "pretrain_summary.json"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the pretraining run's --out directory")
    p.add_argument("command", help="the exact command that reproduces the weights")
    p.add_argument("--asset", default="policy-arith", help="folder under src/qstar/assets (default policy-arith)")
    p.add_argument("--weights", type=Path, help="a checkpoint directory to take the weights from (default: RUN)")
    p.add_argument("--note", default="", help="an extra paragraph for the README")
    p.add_argument("--eval", nargs="*", default=[], help="results.json files of `qstar eval` to quote")
    # the original positional form `RUN COMMAND EVAL...` keeps working
    a, rest = p.parse_known_args()
    evals = [*a.eval, *rest]
    run, weights, asset = a.run, a.weights or a.run, ASSETS / a.asset
    if asset.exists():
        shutil.rmtree(asset)
    asset.mkdir(parents=True)
    for name in WEIGHTS:
        if (weights / name).is_file():
            shutil.copy2(weights / name, asset / name)
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, asset / name)
    cfg = json.loads((run / "pretrain_config.json").read_text())
    summary = json.loads((run / "pretrain_summary.json").read_text())
    task = cfg["task"]
    if task in ("arith", "code-arith"):  # generated data: record the generator the weights were trained on
        from qstar.tasks import get_task

        generator = get_task(task, **cfg["task_options"]).to_dict()
        (asset / "task_config.json").write_text(json.dumps(generator, indent=2) + "\n")
    title = "The shipped default policy" if a.asset == "policy-arith" else f"The shipped `{task}` policy"
    lines = [
        f"# {title}",
        "",
        "A ~0.9M-parameter `LlamaForCausalLM` with the built-in character tokenizer, trained from scratch on",
        f"the `{task}` task. It loads with any Hugging Face tool (`AutoModelForCausalLM.from_pretrained(this_dir)`).",
        "",
        "Reproduce it (same seed, same configuration as `pretrain_config.json`"
        + (", generator as `task_config.json`):" if (asset / "task_config.json").is_file() else "):"),
        "",
        f"    {a.command}",
        "",
        f"Seed {cfg['seed']}, {summary['steps']} steps of batch {cfg['batch_size']}, "
        f"{summary['wall_s'] / 60:.1f} minutes on this run's machine; loss {summary['first_loss']:.3f} -> "
        f"{summary['final_loss']:.3f}.",
    ]
    if a.weights is not None:
        state_path = a.weights / "trainer_state.json"
        at = ""
        if state_path.is_file():
            state = json.loads(state_path.read_text())
            losses = [h["loss"] for h in state["log_history"] if "loss" in h]
            at = f" (step {state['global_step']}" + (f", loss {losses[-1]:.3f} there)" if losses else ")")
        lines += ["", f"The weights are the run's `{a.weights.name}`{at}, not its final save."]
    if a.note:
        lines += ["", a.note]
    if evals:
        lines.append("")
    for e in evals:
        s = json.loads(Path(e).read_text())["summary"]
        c = json.loads(Path(e).read_text())["config"]
        # a tree's few finished leaves are no n independent samples: quote pass@n for sampling methods only
        extra = f", pass@{s['n']} {s['pass_at_n']:.3f}" if "pass_at_n" in s and c["method"] not in (
            "mcts", "beam") else ""
        critics = " with trained critics" if c.get("critics") else ""
        lines.append(f"- `{c['method']}`{critics} on {s['n_problems']} {task} test problems: accuracy "
                     f"{s['accuracy']:.3f}{extra}, {s['mean_tokens']:.0f} generated tokens per problem")
    (asset / "README.md").write_text("\n".join(lines) + "\n")
    print(f"shipped {weights} -> {asset}")


if __name__ == "__main__":
    main()
