"""Preference pairs at the level of steps: where a chosen and a rejected solution part, and the step-level pair
cut at that point (Step-DPO, Lai et al. 2024).

A whole-solution pair asks DPO to lower every token of the rejected solution that the chosen one does not
share. After a wrong step the rejected solution usually goes on consistently from its wrong number, so DPO
also lowers steps that are right given what precedes them, and the implicit reward beta * log(pi / pi_ref)
spreads the blame over them. Moving the shared steps into the prompt and cutting the rejected response after
its first own step puts the whole push-down on the step where the two solutions first differ: in a wrong
sample against a right one, nearly always the step that went wrong.
"""

from __future__ import annotations

from qstar.search.baselines import split_steps


def shared_steps(a: str, b: str, delimiter: str) -> str:
    """The longest run of whole steps (each ending with ``delimiter``) that ``a`` and ``b`` both start with."""
    n = 0
    for step_a, step_b in zip(split_steps(a, delimiter), split_steps(b, delimiter), strict=False):  # the shorter ends it
        if step_a != step_b or not step_a.endswith(delimiter):  # an unterminated tail is no whole step
            break
        n += len(step_a)
    return a[:n]


def step_pair(pair: dict, delimiter: str) -> dict | None:
    """``pair`` with the steps both responses share moved into the prompt and the rejected response cut after
    its first step; the chosen response keeps the rest of its solution (its likelihood is what the NLL term
    of RPO keeps up: cut to one step too, it taught the policy to stop after one step). None when nothing is
    left to prefer: the two responses are the same."""
    shared = shared_steps(pair["chosen"], pair["rejected"], delimiter)
    chosen = pair["chosen"][len(shared):]
    rejected = split_steps(pair["rejected"][len(shared):], delimiter)[0]
    if chosen == rejected:
        return None
    return {"prompt": pair["prompt"] + shared, "chosen": chosen, "rejected": rejected}


def step_pairs(pairs: list[dict], delimiter: str) -> list[dict]:
    """:func:`step_pair` of each pair, dropping those with nothing left to prefer."""
    return [p for p in (step_pair(pair, delimiter) for pair in pairs) if p is not None]
