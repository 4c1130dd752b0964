"""What MCTS costs beside raw generation: prefix recompute, throughput, and the speed-up of cache reuse.

    .venv/bin/python bench/search_cost.py [--model DIR] [--problems 20]

Runs MCTS (default configuration) on arith test problems with the default policy and prints:
- recompute_ratio: tokens the model computed / tokens in the trees (target <= 1.10; 1.0 is the floor)
- throughput_fraction: search tokens/s over raw batched ``generate`` tokens/s of the same model at the
  search's mean batch size (target >= 0.8)
- reuse_speedup: wall time of the same MCTS with KV-cache reuse off / on (target >= 3)
Beside them: ``recompute_ratio_without_merge``, the same ratio with state merge off. State merge
resamples near-duplicate options and drops them, so their tokens are computed but never in a tree;
with it off the ratio shows prefix recompute alone.
The last line is one JSON object with these figures.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from qstar.evaluate import load_policy
from qstar.search.common import Critics
from qstar.search.mcts import MCTSConfig, mcts
from qstar.search.tree import trees_match
from qstar.tasks import get_task


class CountingPolicy:
    """Wraps a policy to record the batch size (rows) of every extend call."""

    def __init__(self, inner):
        self.inner, self.rows = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def extend(self, states, n, **kw):
        self.rows.append(len(states) * n)
        return self.inner.extend(states, n, **kw)


def run_mcts(model: str, problems, task, reuse: bool, cfg: MCTSConfig):
    policy = CountingPolicy(load_policy(model, task, reuse_cache=reuse))
    t0 = time.perf_counter()
    results = mcts(problems, task, policy, Critics(), cfg)
    wall = time.perf_counter() - t0
    in_tree = prompt_tokens(policy, problems, task) + sum(r.stats["tokens_in_tree"] for r in results)
    return policy, results, wall, in_tree


def prompt_tokens(policy, problems, task) -> int:
    return sum(len(policy.tokenizer(task.prompt(p))["input_ids"]) for p in problems)


def generate_throughput(policy, prompts: list[str], batch: int, new_tokens: int) -> float:
    """Raw ``model.generate`` tokens/s (sampling, KV cache on) at ``batch`` rows."""
    tok, model = policy.tokenizer, policy.model
    tok.padding_side = "left"
    rows = (prompts * (batch // len(prompts) + 1))[:batch]
    enc = tok(rows, return_tensors="pt", padding=True)
    with torch.no_grad():
        model.generate(**enc, max_new_tokens=4, do_sample=True, pad_token_id=tok.pad_token_id)  # warm-up
        t0 = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True,
                             pad_token_id=tok.pad_token_id)
        wall = time.perf_counter() - t0
    return (out.shape[1] - enc["input_ids"].shape[1]) * batch / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--problems", type=int, default=20)
    args = ap.parse_args()
    task = get_task("arith")
    problems = task.problems("test", args.problems)
    cfg = MCTSConfig(b_prior=1.0)  # no trained critics here: the policy's own prior evaluates nodes
    on, res_on, wall_on, in_tree = run_mcts(args.model, problems, task, True, cfg)
    off, res_off, wall_off, _ = run_mcts(args.model, problems, task, False, cfg)
    no_merge, _, _, in_tree_nm = run_mcts(args.model, problems, task, True, replace(cfg, merge_threshold=0.0))
    same = all(trees_match(a.tree.to_dict(), b.tree.to_dict()) for a, b in zip(res_on, res_off, strict=True))
    batch = round(sum(on.rows) / len(on.rows))
    search_tok_s = on.cost.generated_tokens / wall_on
    raw_tok_s = generate_throughput(on, [task.prompt(p) for p in problems], batch, new_tokens=32)
    figures = {
        "recompute_ratio": on.cost.computed_tokens / in_tree,
        "throughput_fraction": search_tok_s / raw_tok_s,
        "reuse_speedup": wall_off / wall_on,
        "recompute_ratio_without_merge": no_merge.cost.computed_tokens / in_tree_nm,
        "merge_discarded_tokens": on.cost.generated_tokens - (in_tree - prompt_tokens(on, problems, task)),
        "search_tokens_per_s": search_tok_s,
        "generate_tokens_per_s": raw_tok_s,
        "mean_batch_rows": batch,
        "tokens_computed": on.cost.computed_tokens,
        "tokens_computed_without_reuse": off.cost.computed_tokens,
        "tokens_in_trees": in_tree,
        "wall_s_reuse": wall_on,
        "wall_s_no_reuse": wall_off,
        "same_trees": same,
        "problems": len(problems),
    }
    targets = {"recompute_ratio": ("<=", 1.10), "recompute_ratio_without_merge": ("<=", 1.10),
               "throughput_fraction": (">=", 0.8), "reuse_speedup": (">=", 3.0)}
    print(f"{'figure':<30} {'value':>9} {'target':>8}")
    for k, (op, t) in targets.items():
        print(f"{k:<30} {figures[k]:>9.3f} {op + str(t):>8}")
    print(f"search {search_tok_s:,.0f} tok/s vs generate {raw_tok_s:,.0f} tok/s at batch {batch}; "
          f"same trees with reuse on/off: {same}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
