"""The ``qstar`` command. Only argparse is imported at start-up, so ``qstar --help`` is instant;
each subcommand imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
import sys

from qstar.errors import QstarError


def json_dict(text: str) -> dict:
    """argparse type of the JSON-object options (``--options``, ``--task-options``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"n_simulations\": 32}'")
    return value


def cmd_pretrain(a: argparse.Namespace) -> None:
    from qstar.train.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(task=a.task, seed=a.seed, task_options=a.task_options)
    for name in ("steps", "stop_at", "batch_size", "lr"):
        if getattr(a, name) is not None:
            setattr(cfg, name, getattr(a, name))
    summary = pretrain(cfg, a.out, resume=a.resume)
    print(f"trained {summary['steps']} steps in {summary['wall_s']:.0f}s: loss {summary['first_loss']:.3f} -> "
          f"{summary['final_loss']:.3f}; policy saved to {a.out}")


def cmd_dpo(a: argparse.Namespace) -> None:
    from qstar.train.dpo import DPORunConfig, run_dpo

    cfg = DPORunConfig(task=a.task, policy=a.policy, init=a.init, seed=a.seed, reference_chosen=not a.no_reference,
                       step_pairs=not a.solution_pairs)
    for name in ("problems", "samples", "pairs_per_problem", "beta", "lr", "epochs", "sft_weight"):
        if getattr(a, name) is not None:
            setattr(cfg, name, getattr(a, name))
    s = run_dpo(cfg, a.out, progress=not a.quiet)
    rewards = s.get("rewards") or [{}]
    print(f"DPO: {s['pairs']} pairs, {s['steps']} steps in {s['wall_s']:.0f}s; last batch implicit reward "
          f"chosen {rewards[-1].get('chosen', 0):+.4f}, rejected {rewards[-1].get('rejected', 0):+.4f}")
    print(f"policy: {s['policy']}  (reference: {s['reference']})")
    print(f"credit: qstar credit --policy {s['policy']} --ref {a.policy} --task {a.task} --problem-id ID --out DIR")


def _eval_config(a: argparse.Namespace):
    from qstar.evaluate import EvalConfig

    return EvalConfig(
        model=a.model, task=a.task, data=a.data, task_options=a.task_options, split=a.split, method=a.method,
        n=a.n, limit=a.limit, batch_problems=a.batch_problems, temperature=a.temperature, max_new_tokens=a.max_new_tokens,
        seed=a.seed, critics=a.critics, options=a.options,
    )


def cmd_eval(a: argparse.Namespace) -> None:
    from qstar.evaluate import run_eval

    run_eval(_eval_config(a), a.out, progress=not a.quiet)


def cmd_grade_references(a: argparse.Namespace) -> None:
    from qstar.tasks import get_task
    from qstar.tasks.grading import grade_references

    task = get_task(a.task, a.data)
    ok, total, wrong = grade_references(task)
    for pid in wrong[:20]:
        print(f"wrong: {pid}")
    print(f"{ok}/{total} reference solutions grade correct")
    if ok != total:
        sys.exit(1)


def cmd_search(a: argparse.Namespace) -> None:
    from qstar.evaluate import EvalConfig, load_critics, load_policy, method_config
    from qstar.search.single import default_critic_terms, describe, save_tree, search_one
    from qstar.tasks import get_task

    task = get_task(a.task, a.data, **a.task_options)
    critics = load_critics(a.critics)
    options = default_critic_terms(a.method, critics, a.options)
    cfg = EvalConfig(model=a.model, task=a.task, method=a.method, n=a.n, temperature=a.temperature,
                     max_new_tokens=a.max_new_tokens, seed=a.seed, options=options)
    strategy, mcfg = method_config(cfg)
    result = search_one(a.question, task, load_policy(a.model, task), critics, strategy, mcfg)
    print(describe(result))
    if a.save_tree:
        save_tree(result, a.save_tree)
        print(f"tree: {a.save_tree}  (view it: qstar view {a.save_tree} --out tree.html)")


def cmd_view(a: argparse.Namespace) -> None:
    from qstar.viz.tree_html import load_tree_json, write_tree_html

    path = write_tree_html(load_tree_json(a.tree), a.out, title=a.tree)
    print(f"wrote {path}")


def cmd_demo(a: argparse.Namespace) -> None:
    from qstar.demo import run_demo

    run_demo(a.out, quick=a.quick, retrain=a.pretrain)


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="policy directory, or 'default' for the shipped policy of --task")
    p.add_argument("--task", default="arith", help="arith | gsm8k | math500 | humaneval | code-arith")
    p.add_argument("--data", help="JSONL file for data tasks")
    p.add_argument("--task-options", type=json_dict, default={}, help="JSON options of the task generator")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--n", type=int, default=16, help="samples per problem for sampling methods")
    p.add_argument("--limit", type=int, help="evaluate only the first K problems")
    p.add_argument("--batch-problems", type=int, default=16, help="problems searched together")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    p.add_argument("--max-new-tokens", type=int, default=256, help="token budget of one solution")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--critics", help="directory of trained critics")
    p.add_argument("--options", type=json_dict, default={}, help="JSON object of method options")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qstar", description="Search-based reasoning and self-improvement for LMs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pretrain", help="train the default tiny policy from scratch on a task")
    p.add_argument("--task", default="arith")
    p.add_argument("--out", required=True, help="directory for the policy, its checkpoints and config")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the config's)")
    p.add_argument("--stop-at", type=int, help="stop at this step of the --steps schedule and save those weights")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task-options", type=json_dict, default={}, help="JSON options of the task generator")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("dpo", help="a DPO policy from the policy's own samples, for its implicit reward (resumable)")
    p.add_argument("--policy", default="default", help="starting policy and reference: a directory or 'default'")
    p.add_argument("--init", help="start DPO from this model instead (the reference stays --policy), or from "
                                  "the trunk of this critics run (e.g. runs/critics)")
    p.add_argument("--task", default="arith")
    p.add_argument("--out", required=True, help="directory for pairs.jsonl, policy/ and summary.json")
    p.add_argument("--problems", type=int, help="fresh training problems sampled (default 4096)")
    p.add_argument("--samples", type=int, help="solutions sampled per problem (default 8)")
    p.add_argument("--pairs-per-problem", type=int, help="pairs per problem at most (default 3)")
    p.add_argument("--beta", type=float, help="DPO beta (default 0.1)")
    p.add_argument("--lr", type=float, help="learning rate (default 4e-4)")
    p.add_argument("--epochs", type=float, help="epochs over the pairs (default 1)")
    p.add_argument("--sft-weight", type=float, help="weight of the chosen responses' NLL (RPO; default 6, 0: plain DPO)")
    p.add_argument("--no-reference", action="store_true",
                   help="pair only the policy's own samples (no reference solution as the chosen response)")
    p.add_argument("--solution-pairs", action="store_true",
                   help="train on whole-solution pairs (default: step-level pairs, the shared steps in the prompt "
                        "and the rejected solution cut after the step where it leaves the chosen one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_dpo)

    p = sub.add_parser("eval", help="evaluate a method on a task's test problems")
    _add_eval_args(p)
    p.add_argument("--method", default="greedy", help="greedy | sample | best-of-n | self-consistency | beam | mcts")
    p.add_argument("--out", help="directory for results.json; a killed run started again resumes there")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("grade-references", help="grade every reference solution against its own answer")
    p.add_argument("--task", required=True, help="gsm8k | math500 | humaneval | arith")
    p.add_argument("--data", help="JSONL file")
    p.set_defaults(func=cmd_grade_references)

    p = sub.add_parser("search", help="search one question and print the best solution with statistics")
    _add_eval_args(p)
    p.add_argument("--method", default="mcts", help="mcts | beam | greedy | self-consistency | ...")
    p.add_argument("--question", required=True, help="the question, as the task phrases it")
    p.add_argument("--save-tree", help="write the search tree as JSON (for qstar view)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("view", help="write a search tree as one self-contained HTML page")
    p.add_argument("tree", help="tree JSON written by qstar search --save-tree")
    p.add_argument("--out", default="tree.html", help="HTML file to write")
    p.set_defaults(func=cmd_view)

    # Sub-commands that live beside their feature; each module imports only argparse at start-up.
    from qstar.critics.cli import add_parser as add_train_critics
    from qstar.improve.cli import add_parser as add_improve
    from qstar.viz.compare_cli import add_parser as add_compare
    from qstar.viz.credit_cli import add_parser as add_credit

    add_train_critics(sub)
    add_improve(sub)
    add_credit(sub)
    add_compare(sub)

    p = sub.add_parser("demo", help="the end-to-end demo on the built-in default task")
    p.add_argument("--out", default="runs/demo", help="run directory")
    p.add_argument("--quick", action="store_true", help="a tiny version for smoke tests")
    p.add_argument("--pretrain", action="store_true", help="pretrain the policy from scratch instead of the shipped one")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except QstarError as err:
        print(f"qstar: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("qstar: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
