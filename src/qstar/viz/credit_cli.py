"""``qstar credit``: the per-token implicit reward of one solution, as ``credit.html``, ``credit.png`` and
``credit.json`` in ``--out``. Only argparse is imported with the parser; the command imports the rest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qstar.errors import QstarError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "credit", help="per-token implicit reward beta*log(pi/pi_ref) of a DPO policy on one solution (HTML + PNG)"
    )
    p.add_argument("--policy", required=True, help="the DPO-trained policy directory")
    p.add_argument("--ref", required=True, help="the reference policy it was trained against (same tokenizer)")
    p.add_argument("--task", default="arith", help="task whose prompt format and step delimiter to use")
    p.add_argument("--data", help="JSONL file for data tasks")
    p.add_argument("--question", help="the question, as the task phrases it (with --solution)")
    p.add_argument("--solution", help="the solution to score (default with --problem-id: the reference solution)")
    p.add_argument("--problem-id", help="a problem of the task's --split instead of --question")
    p.add_argument("--split", default="test", help="split holding --problem-id (default: test)")
    p.add_argument("--beta", type=float, default=0.1, help="DPO's beta (default 0.1)")
    p.add_argument("--eos", action="store_true", help="also score the EOS token after the solution")
    p.add_argument("--out", required=True, help="directory for credit.html, credit.png and credit.json")
    p.set_defaults(func=cmd_credit)
    return p


def _problem(a: argparse.Namespace, task):
    from qstar.tasks.base import Problem

    if (a.question is None) == (a.problem_id is None):
        raise QstarError("credit: give exactly one of --question (with --solution) or --problem-id")
    if a.question is not None:
        if a.solution is None:
            raise QstarError("credit: --question needs --solution (the text to score)")
        return Problem(id="question", question=a.question, answer=""), a.solution
    problem = next((p for p in task.problems(a.split) if p.id == a.problem_id), None)
    if problem is None:
        raise QstarError(f"credit: no problem {a.problem_id!r} in the {a.split} split of {task.name}")
    return problem, a.solution if a.solution is not None else task.format_solution(problem)


def cmd_credit(a: argparse.Namespace) -> None:
    from qstar.critics.implicit import implicit_rewards, load_models
    from qstar.tasks import get_task
    from qstar.viz.credit import write_credit_html, write_credit_png

    task = get_task(a.task, a.data)
    problem, solution = _problem(a, task)
    policy, ref, tok = load_models(a.policy, a.ref, a.task)
    credit = implicit_rewards(policy, ref, tok, [task.prompt(problem)], [solution], a.beta,
                              step_delimiter=task.step_delimiter, eos=a.eos)[0]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"implicit reward of {a.policy} against {a.ref}"
    html = write_credit_html(credit, out / "credit.html", title=title, question=problem.question)
    png = write_credit_png(credit, out / "credit.png", title=problem.id)
    record = {"policy": a.policy, "ref": a.ref, "task": a.task, "problem_id": problem.id,
              "question": problem.question, **credit.to_dict()}
    (out / "credit.json").write_text(json.dumps(record, indent=1))
    for s, (step, r) in enumerate(zip(credit.steps, credit.step_rewards(), strict=True)):
        print(f"step {s}: {r:+.4f}  {step.rstrip()}")
    print(f"total {credit.total:+.4f} over {len(credit.tokens)} tokens (beta={a.beta:g})")
    print(f"wrote {html}, {png} and {out / 'credit.json'}")
