"""The implicit reward of a DPO policy: token-level credit and a critic, with no reward model trained.

Rafailov et al. (2024, "From r to Q*: Your Language Model is Secretly a Q-Function") show that a policy
``pi`` trained with DPO against a reference ``pi_ref`` defines a token-level reward

    r(s_t, a_t) = beta * log pi(a_t | s_t) - beta * log pi_ref(a_t | s_t)

whose sum over a prefix is, up to a constant of the prompt, the optimal Q-value of that prefix. This
file computes it for whole solutions (:func:`implicit_rewards`, one batched forward pass of each model)
and wraps it as a :class:`~qstar.search.protocols.Critic` (:class:`ImplicitRewardCritic`) that any
search strategy can use in any critic role.

Tokens and steps. Any Hugging Face tokenizer works; nothing assumes one token per character. The prompt
and the solution are tokenised together and the solution starts where that encoding parts from the
prompt's own encoding (as TRL's ``DPOTrainer`` does), so a BPE token that straddles the boundary counts
as the solution's first token. Token boundaries need not fall on step boundaries (a token such as
``".\\n1"`` ends one step and starts the next): each token belongs to the step holding its first
character.

Whose solutions to score. A token sampled from ``pi`` tends to be one ``pi`` likes more than ``pi_ref`` does
(the log-ratio's expectation under ``pi`` is KL(pi || pi_ref) >= 0), so on the DPO policy's *own* samples
the reward leans positive exactly where the sample went its own way, errors included. ``bench/credit.py``
measures it on arith: the lowest-reward step is the first wrong one in 60% of the reference policy's wrong
samples but in 33% of the DPO policy's, where two thirds of the wrong steps score above zero.

What the ratio adds to plain surprise. On those real errors the reference's own likelihood alone (the step
with the lowest summed log pi_ref) finds the first wrong step more often: 80% and 84%. The ratio earns its
keep where both models are surprised twice, as after a wrong result that the next step silently corrects
(``bench/credit.py``'s ``local`` corruptions: 48% against 12% for log pi_ref).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from qstar.errors import QstarError
from qstar.search.baselines import split_steps
from qstar.tasks.base import Problem, Task

Aggregate = Literal["cumulative", "last", "q"]


@dataclass
class TokenCredit:
    """The implicit reward of every token of one solution (lists are per token, in order)."""

    solution: str
    steps: list[str]
    """the solution cut at the step delimiter, each step keeping it (``"".join(steps) == solution``)"""
    beta: float
    token_ids: list[int]
    tokens: list[str]
    """each token's share of the solution text: from its first character to the next token's, so
    ``"".join(tokens) == solution``; a token that adds no new character (part of a split multi-byte
    character, or the EOS) has ``""``"""
    step_of: list[int]
    """index in ``steps`` of the step holding the token's first character"""
    logp_policy: list[float]
    """log pi(token | prefix)"""
    logp_ref: list[float]
    """log pi_ref(token | prefix)"""
    rewards: list[float]
    """beta * (logp_policy - logp_ref)"""

    def step_rewards(self) -> list[float]:
        """The sum of the rewards of each step's tokens (0 for a step that holds no token's first character)."""
        return self.step_sums(self.rewards)

    def step_sums(self, values: list[float]) -> list[float]:
        """Per step, the sum of a per-token list (``rewards``, ``logp_policy``, ``logp_ref``) over its tokens."""
        sums = [0.0] * len(self.steps)
        for s, v in zip(self.step_of, values, strict=True):
            sums[s] += v
        return sums

    @property
    def total(self) -> float:
        """The sequence-level implicit reward beta * log pi(y|x) / pi_ref(y|x)."""
        return sum(self.rewards)

    def to_dict(self) -> dict:
        return {**asdict(self), "step_rewards": self.step_rewards(), "total": self.total}


# --- tokenizers -----------------------------------------------------------------------------------------


def check_same_tokenizer(policy_tokenizer, ref_tokenizer, names: tuple[str, str] = ("policy", "reference")) -> None:
    """Fail clearly unless both tokenizers map the same text to the same ids (the reward compares the two
    models' log-probs of the *same* token ids)."""
    a, b = policy_tokenizer.get_vocab(), ref_tokenizer.get_vocab()
    problem = None
    if len(a) != len(b):
        problem = f"vocabularies of {len(a)} and {len(b)} tokens"
    elif a != b:
        token = next(t for t in sorted(a) if a[t] != b.get(t))
        problem = f"token {token!r} has id {a[token]} in one and {b.get(token)} in the other"
    else:
        specials = ("bos_token_id", "eos_token_id")
        diff = [s for s in specials if getattr(policy_tokenizer, s) != getattr(ref_tokenizer, s)]
        probe = "Ann has 23 pens.\n23+15=38\n#### 38 the answer is 38."
        if diff:
            problem = f"different {', '.join(diff)}"
        elif policy_tokenizer(probe)["input_ids"] != ref_tokenizer(probe)["input_ids"]:
            problem = "the same vocabulary but different encodings (merges or pre-tokenisation differ)"
    if problem:
        raise QstarError(f"the {names[0]} and {names[1]} tokenizers differ ({problem}); the implicit reward "
                         "needs a DPO policy and the reference it was trained against, which share one tokenizer")


def check_same_vocab(policy_model, ref_model) -> None:
    """Fail clearly when the two models' output layers have different vocabulary sizes."""
    sizes = [m.get_output_embeddings().weight.shape[0] for m in (policy_model, ref_model)]
    if sizes[0] != sizes[1]:
        raise QstarError(f"the policy and reference models have vocabularies of {sizes[0]} and {sizes[1]} tokens; "
                         "the implicit reward needs a DPO policy and its own reference (one tokenizer)")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def encode(tokenizer, prompt: str, solution: str, *, eos: bool = False) -> tuple[list[int], int, list[int]]:
    """``(ids, n_context, starts)``: the ids of prompt + solution (+ EOS), how many of them are context
    (the solution's tokens are ``ids[n_context:]``), and each solution token's first character in
    ``solution`` (non-decreasing; a token that starts inside the prompt starts at 0)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    fast = getattr(tokenizer, "is_fast", False)
    enc = tokenizer(prompt + solution, return_offsets_mapping=fast, return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    n_context = _common_prefix(prompt_ids, ids)
    if n_context == 0:
        raise QstarError("the prompt encodes to no token of its own, so the first token has no context; "
                         "give a non-empty prompt (or a tokenizer that adds BOS)")
    # Special tokens the tokenizer adds (e.g. an EOS its template appends; offsets (0, 0)) are not part of the
    # solution; one written in the text itself (a policy may emit "<s>") is scored like any other token.
    offsets = enc["offset_mapping"] if fast else [None] * len(ids)
    added = [bool(m) and (o is None or tuple(o) == (0, 0))
             for m, o in zip(enc["special_tokens_mask"], offsets, strict=True)]
    keep = [i for i in range(n_context, len(ids)) if not added[i]]
    if fast:
        starts = [max(0, offsets[i][0] - len(prompt)) for i in keep]
    else:  # slow tokenizers have no offsets: measure decoded prefixes instead
        starts = [max(0, len(tokenizer.decode(ids[:i], skip_special_tokens=True)) - len(prompt)) for i in keep]
    ids = ids[:n_context] + [ids[i] for i in keep]
    for i in range(1, len(starts)):  # offsets of byte-level pieces can repeat; keep them ordered
        starts[i] = max(starts[i], starts[i - 1])
    starts = [min(s, len(solution)) for s in starts]
    if eos:
        if tokenizer.eos_token_id is None:
            raise QstarError("eos=True, but the tokenizer has no EOS token")
        ids.append(tokenizer.eos_token_id)
        starts.append(len(solution))
    return ids, n_context, starts


# --- log-probs ------------------------------------------------------------------------------------------


@torch.no_grad()
def token_logprobs(model, rows: list[list[int]], pad_id: int, batch_size: int = 64) -> list[torch.Tensor]:
    """For each row of ids, ``logp[t] = log p(row[t+1] | row[:t+1])`` (length ``len(row) - 1``).

    Rows are right-padded: causal attention keeps pads on the right invisible to real tokens and positions
    start at 0, so a padded row gets the log-probs it would get alone (up to float rounding). Rows are
    batched by length to pad little; with ``batch_size >= len(rows)`` it is one forward pass.
    """
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max((len(r) for r in rows), default=0)
    if limit is not None and longest > limit:
        raise QstarError(f"a prompt + solution of {longest} tokens is longer than the model's {limit} positions")
    out: list[torch.Tensor] = [torch.empty(0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(rows[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, i in enumerate(chunk):
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
            mask[j, : len(rows[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (B, T, V)
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
        picked = logp.gather(2, ids[:, 1:, None].to(device)).squeeze(2).cpu()  # (B, T-1)
        for j, i in enumerate(chunk):
            out[i] = picked[j, : len(rows[i]) - 1]
    return out


def implicit_rewards(
    policy_model,
    ref_model,
    tokenizer,
    prompts: list[str],
    solutions: list[str],
    beta: float,
    *,
    step_delimiter: str = "\n",
    eos: bool = False,
    batch_size: int = 64,
) -> list[TokenCredit]:
    """The per-token implicit reward of each ``solutions[i]`` after ``prompts[i]``.

    One batched forward pass of each model (per ``batch_size`` rows). ``eos=True`` also scores the EOS
    token after the solution (as DPO training does; it then belongs to the last step).
    """
    check_same_vocab(policy_model, ref_model)
    encoded = [encode(tokenizer, p, s, eos=eos) for p, s in zip(prompts, solutions, strict=True)]
    rows = [ids for ids, _, _ in encoded]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    logp_pi = token_logprobs(policy_model, rows, pad_id, batch_size)
    # The same model object twice (a policy against itself) gives the same numbers: skip the second pass.
    logp_ref = logp_pi if ref_model is policy_model else token_logprobs(ref_model, rows, pad_id, batch_size)
    out = []
    for solution, (ids, n_context, starts), lp, lr in zip(solutions, encoded, logp_pi, logp_ref, strict=True):
        steps = split_steps(solution, step_delimiter) if solution else [""]
        ends = [0]
        for s in steps:
            ends.append(ends[-1] + len(s))
        step_of = [min(bisect.bisect_right(ends, c) - 1, len(steps) - 1) for c in starts]
        pi, ref = lp[n_context - 1 :].double(), lr[n_context - 1 :].double()
        rewards = (beta * (pi - ref)).tolist()
        bounds = [*starts, len(solution)]
        out.append(TokenCredit(
            solution=solution, steps=steps, beta=beta, token_ids=ids[n_context:],
            tokens=[solution[bounds[i] : bounds[i + 1]] for i in range(len(starts))],
            step_of=step_of, logp_policy=pi.tolist(), logp_ref=ref.tolist(), rewards=rewards,
        ))
    return out


# --- the critic -----------------------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class ImplicitRewardCritic:
    """A DPO policy's implicit reward behind the Critic protocol: put it in any role of
    :class:`~qstar.search.common.Critics` (``Critics(prm=critic)`` for beam search's default role, or MCTS
    with ``b_prm``), beside or instead of trained critics.

    A partial solution is scored by ``aggregate``:

    - ``"cumulative"`` (default): the sum of beta * log pi/pi_ref over all its tokens. By the paper's
      Q-function view this is Q*(prefix) - V*(prompt), so prefixes of one question compare directly
      (the "implicit-reward guided search" of Rafailov et al., 2024);
    - ``"last"``: the sum over the last step's tokens only, the credit of the step just taken (like a
      per-step PRM score);
    - ``"q"``: the cumulative reward plus the reference's own log-likelihood, beta * sum log pi_ref, which
      sums to beta * log pi(prefix): the paper's search, where likelihood search on the DPO policy *is*
      search on its implicit reward, with pi_ref's likelihood keeping it near text the reference would
      write. Measured on arith, this matters: the pure reward ratio of a token the reference finds
      unlikely is unconstrained by DPO (lowering one wrong token's probability raises every untouched
      token's ratio), so ``cumulative`` prefers sampled slips over greedy steps.

    The value is squashed with ``sigmoid`` into (0, 1) so it mixes with critics that estimate
    P(correct); with the reward already scaled by beta, sigmoid(r) is the Bradley-Terry probability that
    the prefix beats one of reward 0 (the reference's own behaviour).
    """

    name = "implicit"

    def __init__(
        self,
        policy_model,
        ref_model,
        tokenizer,
        task: Task,
        beta: float = 0.1,
        *,
        aggregate: Aggregate = "cumulative",
        batch_size: int = 64,
    ):
        if aggregate not in ("cumulative", "last", "q"):
            raise QstarError(f"implicit critic: aggregate must be 'cumulative', 'last' or 'q', not {aggregate!r}")
        self.policy_model, self.ref_model = policy_model.eval(), ref_model.eval()
        self.tokenizer, self.task, self.beta = tokenizer, task, beta
        self.aggregate, self.batch_size = aggregate, batch_size

    def prompt(self, question: str) -> str:
        return self.task.prompt(Problem(id="", question=question, answer=""))

    def credit(self, questions: list[str], steps: list[list[str]]) -> list[TokenCredit]:
        """Token-level credit of each (question, steps taken so far)."""
        return implicit_rewards(
            self.policy_model, self.ref_model, self.tokenizer, [self.prompt(q) for q in questions],
            ["".join(s) for s in steps], self.beta, step_delimiter=self.task.step_delimiter,
            batch_size=self.batch_size,
        )

    def raw_scores(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        """The aggregated implicit reward before the sigmoid."""
        credits = self.credit(questions, steps)
        if self.aggregate == "cumulative":
            return [c.total for c in credits]
        if self.aggregate == "q":
            return [c.total + self.beta * sum(c.logp_ref) for c in credits]
        # The last step's own tokens: those whose first character lies in it (by char offset, not step index,
        # since a step list may contain several delimiter-free pieces the text splitter would join).
        out = []
        for c, s in zip(credits, steps, strict=True):
            start = len(c.solution) - len(s[-1]) if s else len(c.solution)
            bounds = [0]
            for t in c.tokens:
                bounds.append(bounds[-1] + len(t))
            out.append(sum(r for b, r in zip(bounds, c.rewards, strict=False) if b >= start))
        return out

    def score(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        return [_sigmoid(x) for x in self.raw_scores(questions, steps)]


def load_models(policy_dir: str | Path, ref_dir: str | Path, task: str | None = None):
    """``(policy_model, ref_model, tokenizer)`` from two directories ("default": ``task``'s shipped policy),
    after checking they share a tokenizer."""
    from qstar.models.load import load_causal_lm

    policy_model, tok = load_causal_lm(policy_dir, task=task)
    ref_model, ref_tok = load_causal_lm(ref_dir, task=task)
    check_same_tokenizer(tok, ref_tok, (f"policy ({policy_dir})", f"reference ({ref_dir})"))
    return policy_model, ref_model, tok


def load_implicit_critic(
    policy_dir: str | Path, ref_dir: str | Path, task: Task, beta: float = 0.1, *, aggregate: Aggregate = "cumulative"
) -> ImplicitRewardCritic:
    """An :class:`ImplicitRewardCritic` for a DPO policy directory and its reference's."""
    policy_model, ref_model, tok = load_models(policy_dir, ref_dir)
    return ImplicitRewardCritic(policy_model, ref_model, tok, task, beta, aggregate=aggregate)
