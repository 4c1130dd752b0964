"""Copy a trained policy into the package as the shipped default, with the command that reproduces it.

    .venv/bin/python scripts/ship_policy.py RUN_DIR "qstar pretrain --task arith --out RUN_DIR" [--eval EVAL_JSON...]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ASSET = Path(__file__).resolve().parents[1] / "src" / "qstar" / "assets" / "policy-arith"
FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "pretrain_config.json", "pretrain_summary.json"]


def main() -> None:
    run, command, evals = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if ASSET.exists():
        shutil.rmtree(ASSET)
    ASSET.mkdir(parents=True)
    for name in FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, ASSET / name)
    cfg = json.loads((run / "pretrain_config.json").read_text())
    summary = json.loads((run / "pretrain_summary.json").read_text())
    lines = [
        "# The shipped default policy",
        "",
        "A ~0.9M-parameter `LlamaForCausalLM` with the built-in character tokenizer, trained from scratch on",
        "the `arith` task. It loads with any Hugging Face tool (`AutoModelForCausalLM.from_pretrained(this_dir)`).",
        "",
        "Reproduce it (same seed, same configuration as `pretrain_config.json`):",
        "",
        f"    {command}",
        "",
        f"Seed {cfg['seed']}, {summary['steps']} steps of batch {cfg['batch_size']}, "
        f"{summary['wall_s'] / 60:.1f} minutes on this run's machine; loss {summary['first_loss']:.3f} -> "
        f"{summary['final_loss']:.3f}.",
    ]
    for e in evals:
        s = json.loads(Path(e).read_text())["summary"]
        c = json.loads(Path(e).read_text())["config"]
        extra = f", pass@{s['n']} {s['pass_at_n']:.3f}" if "pass_at_n" in s else ""
        lines.append(f"- `{c['method']}` on {s['n_problems']} arith test problems: accuracy {s['accuracy']:.3f}{extra}")
    (ASSET / "README.md").write_text("\n".join(lines) + "\n")
    print(f"shipped {run} -> {ASSET}")


if __name__ == "__main__":
    main()
