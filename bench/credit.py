"""Does the implicit reward point at the wrong step? Token-level credit on corrupted solutions and on real errors.

    .venv/bin/python bench/credit.py --policy DPO_DIR --ref REF_DIR [--beta 0.1] [--cases 200] [--critics DIR]

DPO_DIR is a DPO-trained policy and REF_DIR its reference, e.g. from ``qstar dpo --out runs/dpo``:
``--policy runs/dpo/policy --ref src/qstar/assets/policy-arith``.

Takes up to ``--cases`` correct solutions of arith test problems (``--validation``: of validation problems
instead, to compare settings without choosing on the test split) and corrupts one arithmetic step in each
(its result is off by 1 to 10), in two variants:

- ``carry``: the wrong result is carried on consistently: later steps start from it and the final answer
  follows (a solution that is wrong but self-consistent after the error);
- ``local``: only that step's result changes; the next step still starts from the right value and the
  final answer stays right.

For each corrupted solution the step with the lowest summed implicit reward beta*log(pi/pi_ref) is picked;
``implicit_top1`` is how often it is the corrupted step (target >= 0.7). ``random_top1`` is the mean of
1/steps (a uniform pick; the ``#### N`` line counts as a step). With ``--critics DIR`` holding a trained
PRM (``qstar.critics``), ``prm_top1`` picks the step whose prefix score drops most from the prefix before
it (the PRM labels a prefix by whether it can still end correct, so the first wrong step is where the
score falls; the lowest score itself is reported as ``prm_top1_lowest``); otherwise it is null, with why.

Two likelihood controls ask what the implicit reward adds to plain surprise: ``ref_logp_top1`` picks the step
the reference finds least likely (summed log pi_ref, no DPO needed) and ``policy_logp_top1`` the same under pi.
A corrupted digit is unlikely under both models, so they find a ``carry`` error almost always; in ``local``
the next step is unlikely too (two surprises: it starts from a number the text never wrote, and its result
follows from that number), so they pick it instead, and the ratio pi / pi_ref is what can tell the two apart.

Solutions: the policy's greedy solutions that are correct when at least ``--min-policy`` of them are,
else the reference solutions of the same problems (``source`` in the output says which; in arith a
correct solution is written one way only, so the two coincide wherever the policy is right).

Beside the corruptions, two ``natural`` sets ask the same question of real mistakes: per problem, the first
wrong one of ``--natural-samples`` solutions sampled at temperature 1 from the DPO policy (``natural_policy``)
or from its reference (``natural_ref``), its wrong step being the first line that leaves the reference
solution (``ArithTask.first_wrong_step``). They are reported on their own and are not part of
``implicit_top1``. They differ by selection: a token sampled from pi tends to be one pi likes more than
pi_ref does (the expected log-ratio under pi is KL(pi || pi_ref) >= 0), so the DPO policy's own errors are
biased towards positive implicit reward. ``wrong_step_positive`` is the share of cases whose wrong
step has a positive summed reward, i.e. where the implicit reward calls the error an improvement.
The last line is one JSON object; ``dpo_run`` in it is the configuration of the ``qstar dpo`` run that trained
the policy (its ``config.json``), or null.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

STEP_RE = re.compile(r"^(\d+)([+\-*])(\d+)=(-?\d+)\n?$")
VARIANTS = ("carry", "local")
"""the corruptions that ``implicit_top1`` counts; ``natural`` (the policy's own errors) is reported apart"""


@dataclass
class Case:
    question: str
    prompt: str
    steps: list[str]
    """the corrupted solution's steps (each ending with "\\n" but the last)"""
    wrong: int
    """index of the corrupted step"""
    variant: str


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def corrupt(solution: str, rng: random.Random, variant: str) -> tuple[list[str], int] | None:
    """``(steps, k)``: ``solution`` with step k's result changed (``variant`` says what follows), or None
    when it has no arithmetic step."""
    lines = solution.split("\n")
    arith = [i for i, line in enumerate(lines) if STEP_RE.match(line)]
    if not arith or not lines[-1].startswith("####"):
        return None
    k = rng.choice(arith)
    a, op, b, c = STEP_RE.match(lines[k]).groups()
    c = int(c)
    wrong = rng.choice([c + d for d in range(-10, 11) if d and c + d >= 0])
    lines[k] = f"{a}{op}{b}={wrong}"
    if variant == "carry":
        value = wrong
        for i in range(k + 1, len(lines)):
            m = STEP_RE.match(lines[i])
            if m:
                _, op_i, b_i, _ = m.groups()
                new = _apply(value, op_i, int(b_i))
                lines[i] = f"{value}{op_i}{b_i}={new}"
                value = new
        lines[-1] = f"#### {value}"
    steps = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    return steps, k


def draw(policy, task, problems, n: int, temperature: float, seed: int | None = None) -> list[list[str]]:
    """``n`` whole solutions per problem (temperature 0: the greedy one), 64 problems per ``extend`` call."""
    texts: list[list[str]] = []
    for i in range(0, len(problems), 64):
        chunk = problems[i : i + 64]
        roots = policy.root([task.prompt(p) for p in chunk])
        options = policy.extend(roots, n, temperature=temperature, until="end", max_new_tokens=96,
                                seed=None if seed is None else seed + i)
        policy.release(roots)
        texts += [[o.text for o in opts] for opts in options]
    return texts


def correct_solutions(policy, task, problems, n_min: int) -> tuple[list[tuple], str, dict]:
    """``(problem, solution)`` pairs: the policy's correct greedy solutions if at least ``n_min`` are correct,
    else every problem's reference solution."""
    texts = [ts[0] for ts in draw(policy, task, problems, 1, 0.0)]
    ok = [task.is_correct(t, p) for t, p in zip(texts, problems, strict=True)]
    same = sum(t.strip() == task.format_solution(p).strip() for t, p, o in zip(texts, problems, ok, strict=True) if o)
    info = {"policy_greedy_correct": sum(ok), "of": len(problems), "correct_equal_to_reference": same}
    if sum(ok) >= n_min:
        return [(p, t) for p, t, o in zip(problems, texts, ok, strict=True) if o], "policy", info
    return [(p, task.format_solution(p)) for p in problems], "reference", info


def natural_cases(policy, task, problems, samples: int, seed: int, variant: str) -> list[Case]:
    """Per problem, the first of ``samples`` solutions (temperature 1) that finishes with a wrong step in it."""
    from qstar.search.baselines import split_steps

    cases = []
    for p, texts in zip(problems, draw(policy, task, problems, samples, 1.0, seed), strict=True):
        for text in texts:
            k = task.first_wrong_step(text, p)
            steps = split_steps(text, task.step_delimiter)
            if task.is_terminal(text) and k is not None and k < len(steps):
                cases.append(Case(p.question, task.prompt(p), steps, k, variant))
                break
    return cases


def lowest(values: list[float]) -> int:
    """Index of the smallest value (the first one on a tie)."""
    return min(range(len(values)), key=lambda i: values[i])


def implicit_picks(policy_dir: str, ref_dir: str, task, cases: list[Case], beta: float) -> tuple[dict, list[float]]:
    """Per case, the step each rule picks, and the wrong step's summed implicit reward. The rules: ``implicit``
    (lowest summed reward), ``min_token`` (the step holding the lowest-reward token) and two likelihood controls
    that need no DPO: ``ref_logp`` (the step the reference finds least likely, summed log pi_ref) and
    ``policy_logp`` (the same under pi; the paper's Q view, reward + beta * log pi_ref = beta * log pi)."""
    from qstar.critics.implicit import implicit_rewards, load_models

    pi, ref, tok = load_models(policy_dir, ref_dir)
    credits = implicit_rewards(pi, ref, tok, [c.prompt for c in cases], ["".join(c.steps) for c in cases], beta,
                               step_delimiter=task.step_delimiter)
    picks: dict[str, list[int]] = {"implicit": [], "min_token": [], "ref_logp": [], "policy_logp": []}
    at_wrong = []
    for c, cr in zip(cases, credits, strict=True):
        assert cr.steps == c.steps, (cr.steps, c.steps)
        sums = cr.step_rewards()
        picks["implicit"].append(lowest(sums))
        picks["min_token"].append(cr.step_of[lowest(cr.rewards)])
        picks["ref_logp"].append(lowest(cr.step_sums(cr.logp_ref)))
        picks["policy_logp"].append(lowest(cr.step_sums(cr.logp_policy)))
        at_wrong.append(sums[c.wrong])
    return picks, at_wrong


def prm_picks(critics_dir: str | None, cases: list[Case]) -> tuple[list[int] | None, list[int] | None, str]:
    """Per case: the step whose PRM prefix score drops most, and the step with the lowest prefix score."""
    if critics_dir is None:
        return None, None, "no --critics DIR given"
    try:
        from qstar.critics.load import load_critics
    except ImportError as err:
        return None, None, f"qstar.critics cannot load trained critics ({err})"
    from qstar.errors import QstarError

    try:
        prm = load_critics(critics_dir).prm
    except (QstarError, OSError, RuntimeError) as err:  # RuntimeError: weights saved by another critic version
        return None, None, f"{critics_dir}: cannot load its PRM ({type(err).__name__}: {str(err)[:200]})"
    if prm is None:
        return None, None, f"{critics_dir} holds no PRM"
    questions, prefixes, owner = [], [], []
    for i, c in enumerate(cases):
        for j in range(len(c.steps) + 1):  # j = 0: the prompt alone, the score before any step
            questions.append(c.question)
            prefixes.append(c.steps[:j])
            owner.append(i)
    scores = prm.score(questions, prefixes)
    per: list[list[float]] = [[] for _ in cases]
    for i, s in zip(owner, scores, strict=True):
        per[i].append(s)
    drop = [min(range(len(s) - 1), key=lambda j: s[j + 1] - s[j]) for s in per]
    return drop, [lowest(s[1:]) for s in per], f"PRM of {critics_dir}"


def dpo_run(policy_dir: str) -> dict | None:
    """The configuration of the ``qstar dpo`` run that trained ``policy_dir`` (``RUN/policy``, beside
    ``RUN/config.json``), so a figure can be traced to its run; None for a policy trained elsewhere."""
    policy = Path(policy_dir)
    config = policy.parent / "config.json"
    return json.loads(config.read_text()) if policy.name == "policy" and config.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True, help="the DPO-trained policy")
    ap.add_argument("--ref", required=True, help="its reference policy")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--cases", type=int, default=200, help="correct solutions to corrupt (at most)")
    ap.add_argument("--min-policy", type=int, default=50, help="fewest correct greedy solutions to use the policy's")
    ap.add_argument("--critics", help="directory of trained critics holding a PRM (qstar.critics)")
    ap.add_argument("--natural-samples", type=int, default=4,
                    help="solutions sampled per problem for the natural-error sets (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validation", action="store_true",
                    help="train-split problems of the validation stream (no trainer draws them) instead of the test "
                         "problems: to compare settings without choosing on the test split")
    ap.add_argument("--out", help="write the per-case records as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from qstar.evaluate import load_policy
    from qstar.tasks import get_task

    t0 = time.perf_counter()
    task = get_task("arith")
    if args.validation:
        from critic_ranking import VALIDATION_STREAM

        from qstar.critics.data import draw_problems

        problems = draw_problems(task, args.cases, VALIDATION_STREAM)
    else:
        problems = task.problems("test", args.cases)
    policy = load_policy(args.policy, task)  # the DPO policy: its greedy solutions, then its own errors
    kept, source, info = correct_solutions(policy, task, problems, args.min_policy)
    cases = []
    for variant in VARIANTS:
        rng = random.Random(f"{args.seed}/{variant}")
        for p, s in kept:
            got = corrupt(s, rng, variant)
            if got is not None:
                cases.append(Case(p.question, task.prompt(p), got[0], got[1], variant))
    n_corrupted = len(cases)
    if args.natural_samples:
        for variant, sampler in (("natural_policy", policy), ("natural_ref", load_policy(args.ref, task))):
            cases += natural_cases(sampler, task, problems, args.natural_samples, args.seed, variant)
    print(f"solutions: {source} ({info}); {n_corrupted} corrupted cases, {len(cases) - n_corrupted} natural",
          flush=True)

    picks, at_wrong = implicit_picks(args.policy, args.ref, task, cases, args.beta)
    drop, prm_lowest, prm_note = prm_picks(args.critics, cases)

    def chosen(variant: str | None) -> list[int]:
        """Indices of the cases a figure covers: one variant, or (None) every corruption."""
        return [i for i, c in enumerate(cases) if c.variant == variant or (variant is None and c.variant in VARIANTS)]

    def top1(picks: list[int] | None, variant: str | None) -> float | None:
        rows = chosen(variant)
        return None if picks is None or not rows else sum(cases[i].wrong == picks[i] for i in rows) / len(rows)

    def figures(variant: str | None) -> dict:
        rows = chosen(variant)
        n = max(1, len(rows))
        return {"implicit_top1": top1(picks["implicit"], variant), "prm_top1": top1(drop, variant),
                "random_top1": sum(1 / len(cases[i].steps) for i in rows) / n,
                "implicit_top1_min_token": top1(picks["min_token"], variant), "prm_top1_lowest": top1(prm_lowest, variant),
                "ref_logp_top1": top1(picks["ref_logp"], variant),
                "policy_logp_top1": top1(picks["policy_logp"], variant),
                "wrong_step_positive": sum(at_wrong[i] > 0 for i in rows) / n, "n": len(rows)}

    shown = (*VARIANTS, "natural_policy", "natural_ref") if len(cases) > n_corrupted else VARIANTS
    result = {**figures(None), **{v: figures(v) for v in shown}, "source": source, "solutions": info,
              "prm": prm_note, "policy": args.policy, "dpo_run": dpo_run(args.policy), "ref": args.ref,
              "beta": args.beta,
              "problems": "validation" if args.validation else "test",
              "wall_s": round(time.perf_counter() - t0, 1)}
    for v in (None, *shown):
        f = figures(v)
        fmt = lambda x: "  null" if x is None else f"{x:6.3f}"  # noqa: E731
        print(f"{v or 'all':14s} n={f['n']:4d}  implicit {fmt(f['implicit_top1'])}  (min token "
              f"{fmt(f['implicit_top1_min_token'])})  prm {fmt(f['prm_top1'])}  (lowest {fmt(f['prm_top1_lowest'])})"
              f"  log pi_ref {fmt(f['ref_logp_top1'])}  log pi {fmt(f['policy_logp_top1'])}"
              f"  random {fmt(f['random_top1'])}  wrong step > 0 {fmt(f['wrong_step_positive'])}")
    if args.out:
        records = [{"variant": c.variant, "question": c.question, "steps": c.steps, "wrong": c.wrong,
                    **{rule: picks[rule][i] for rule in picks},
                    "wrong_step_reward": at_wrong[i],
                    "prm": None if drop is None else drop[i]}
                   for i, c in enumerate(cases)]
        with open(args.out, "w") as f:
            json.dump({"summary": result, "cases": records}, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
