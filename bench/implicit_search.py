"""Implicit-reward guided search: the DPO policy's own beta*log(pi/pi_ref) as the critic of beam search and MCTS.

    .venv/bin/python bench/implicit_search.py --policy DPO_DIR --ref REF_DIR [--beta 0.1] [--problems 200] [--aggregate cumulative|q] [--greedy-first]

DPO_DIR is a DPO-trained policy and REF_DIR its reference, e.g. from ``qstar dpo --out runs/dpo``:
``--policy runs/dpo/policy --ref src/qstar/assets/policy-arith``.

On the first ``--problems`` arith test problems, with the DPO policy as the generator throughout:

- ``greedy``: greedy decoding of the DPO policy;
- ``beam-w{1,2,4,8}``: step-level beam search ranked by the implicit reward (``ImplicitRewardCritic`` in the
  beam's critic slot), ``--expansions`` options per beam and step (with ``--greedy-first`` the first of them
  is the greedy step);
- ``mcts``: MCTS with the implicit-reward critic in place of the PRM (b_prm=1, no value, no ORM);
- ``beam-w4-prior`` (control): the same beam ranked by the policy's own mean token log-prob, no critic,
  so the gain of the implicit reward over the policy's likelihood shows.

The critic scores a prefix by ``--aggregate`` (cumulative: the summed reward of the whole prefix; last: the
last step's own reward; q: the summed reward plus beta * the reference's log-likelihood, i.e. beta * log pi
of the prefix, the paper's "likelihood search on the DPO policy is search on its implicit reward").
Accuracy with its 95% interval, generated tokens per problem (the policy's; the critic's forward passes over
each scored prefix are not counted) and wall time per method; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from qstar.search.baselines import SampleConfig, greedy
from qstar.search.beam import BeamConfig, beam
from qstar.search.common import Critics
from qstar.search.mcts import MCTSConfig, mcts


def methods(widths: list[int], expansions: int, seed: int, greedy_first: bool = False) -> dict:
    """name -> (strategy, config, uses the implicit critic)."""
    beam_kw = dict(expansions_per_beam=expansions, max_steps=8, max_option_tokens=32, temperature=0.8, seed=seed,
                   greedy_first=greedy_first)
    out = {"greedy": (greedy, SampleConfig(n=1, max_new_tokens=96, seed=seed), False)}
    for w in widths:
        out[f"beam-w{w}"] = (beam, BeamConfig(beam_width=w, critic="prm", **beam_kw), True)
    out["beam-w4-prior"] = (beam, BeamConfig(beam_width=4, critic="prior", **beam_kw), False)
    out["mcts"] = (mcts, MCTSConfig(n_simulations=16, c_max=4, max_option_tokens=32, max_depth=8, b_value=0.0,
                                    b_prm=1.0, b_orm=0.0, seed=seed), True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True, help="the DPO-trained policy")
    ap.add_argument("--ref", required=True, help="its reference policy")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--aggregate", default="cumulative", choices=["cumulative", "last", "q"])
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--widths", default="1,2,4,8")
    ap.add_argument("--expansions", type=int, default=4, help="options sampled per beam and step")
    ap.add_argument("--greedy-first", action="store_true",
                    help="each beam's first candidate is the greedy step (BeamConfig.greedy_first)")
    ap.add_argument("--only", help="comma-separated method names to run (default: all)")
    ap.add_argument("--batch-problems", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write every method's results.json-style report here (JSON)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from qstar.critics.implicit import ImplicitRewardCritic, load_models
    from qstar.evaluate import evaluate, format_table, summarise
    from qstar.models.hf_policy import HFPolicy
    from qstar.tasks import get_task

    task = get_task("arith")
    problems = task.problems("test", args.problems)
    pi, ref, tok = load_models(args.policy, args.ref)
    critic = ImplicitRewardCritic(pi, ref, tok, task, args.beta, aggregate=args.aggregate)
    todo = methods([int(w) for w in args.widths.split(",")], args.expansions, args.seed, args.greedy_first)
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only.split(",")}
    rows, reports = [], {}
    for name, (strategy, cfg, uses_critic) in todo.items():
        policy = HFPolicy(pi, tok, task.step_delimiter)  # fresh cost counters per method
        critics = Critics(prm=critic) if uses_critic else Critics()
        t0 = time.perf_counter()
        results = evaluate(problems, task, policy, critics, strategy, cfg, args.batch_problems, progress=False)
        report = summarise(problems, task, results, time.perf_counter() - t0, 1)
        rows.append({"name": name, **report})
        reports[name] = report["summary"]
        s = report["summary"]
        print(f"{name:14s} acc {s['accuracy']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] "
              f"tokens/problem {s['mean_tokens']:.0f}  {s['wall_s']:.0f}s", flush=True)
    print(format_table(rows, title=f"arith test, {len(problems)} problems; policy {args.policy}, ref {args.ref}"))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": vars(args), "results": {r["name"]: r for r in rows}}, f, indent=1)
    line = {name: {"accuracy": s["accuracy"], "ci95": s["ci95"], "tokens": s["mean_tokens"],
                   "wall_s": round(s["wall_s"], 1)} for name, s in reports.items()}
    print(json.dumps({"policy": args.policy, "ref": args.ref, "beta": args.beta, "aggregate": args.aggregate,
                      "greedy_first": args.greedy_first,
                      "problems": len(problems), **line}))


if __name__ == "__main__":
    main()
