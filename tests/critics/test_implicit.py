"""The implicit reward beta*log(pi/pi_ref): exact where it must be, batching-invariant, BPE-safe, and a
critic that every search strategy accepts."""

import math

import pytest
import torch

from qstar.critics.implicit import (
    ImplicitRewardCritic,
    check_same_tokenizer,
    encode,
    implicit_rewards,
    load_models,
)
from qstar.errors import QstarError
from qstar.models.load import load_causal_lm
from qstar.search.common import Critics
from qstar.tasks import get_task
from tests.conftest import save_tiny_llama

QUESTION = "Ann has 23 pens. She buys 15. She loses 9. How many now?"
PROMPTS = [QUESTION + "\n", "Bob has 5 cards. She buys 3. How many now?\n", "Cal has 7 eggs. How many now?\n"]
SOLUTIONS = ["23+15=38\n38-9=29\n#### 29", "5+3=8\n#### 8", "#### 7"]
BETA = 0.5



@pytest.fixture(scope="module")
def char_ref_dir(tmp_path_factory):
    """A second tiny char model (another seed): the 'reference' beside ``char_model_dir``'s 'policy'."""
    from qstar.models.tokenizer import build_char_tokenizer

    return save_tiny_llama(build_char_tokenizer(), tmp_path_factory.mktemp("char-ref"), seed=1)


@pytest.fixture(scope="module")
def bpe_ref_dir(tmp_path_factory, bpe_tokenizer):
    return save_tiny_llama(bpe_tokenizer, tmp_path_factory.mktemp("bpe-ref"), seed=1)


def _hand_logp(model, ids: list[int], t: int) -> float:
    """log p(ids[t] | ids[:t]) from one unbatched forward pass."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]  # (T, V)
    return float(torch.log_softmax(logits[t - 1].float(), dim=-1)[ids[t]])


def test_a_model_against_itself_scores_exactly_zero(char_model_dir):
    a, tok = load_causal_lm(char_model_dir)
    b, _ = load_causal_lm(char_model_dir)  # a separate copy: two real forward passes
    for ref in (a, b):
        credits = implicit_rewards(a, ref, tok, PROMPTS, SOLUTIONS, BETA)
        for c in credits:
            assert c.rewards and all(r == 0.0 for r in c.rewards)
            assert c.total == 0.0 and all(s == 0.0 for s in c.step_rewards())


def test_reward_is_beta_times_the_log_ratio_computed_by_hand(char_model_dir, char_ref_dir):
    pi, tok = load_causal_lm(char_model_dir)
    ref, _ = load_causal_lm(char_ref_dir)
    credit = implicit_rewards(pi, ref, tok, PROMPTS[:1], SOLUTIONS[:1], BETA)[0]
    ids = tok(PROMPTS[0] + SOLUTIONS[0])["input_ids"]
    n_context = len(tok(PROMPTS[0])["input_ids"])
    assert credit.token_ids == ids[n_context:]
    for k in (0, 6, len(credit.rewards) - 1):  # first token, the first result digit, the last digit
        t = n_context + k
        lp, lr = _hand_logp(pi, ids, t), _hand_logp(ref, ids, t)
        assert credit.logp_policy[k] == pytest.approx(lp, abs=1e-5)
        assert credit.logp_ref[k] == pytest.approx(lr, abs=1e-5)
        assert credit.rewards[k] == pytest.approx(BETA * (lp - lr), abs=1e-5)
    assert any(abs(r) > 1e-3 for r in credit.rewards)  # two different models: a real signal


def test_step_sums_add_up_to_the_total_and_tokens_rebuild_the_text(char_model_dir, char_ref_dir):
    pi, tok = load_causal_lm(char_model_dir)
    ref, _ = load_causal_lm(char_ref_dir)
    for c in implicit_rewards(pi, ref, tok, PROMPTS, SOLUTIONS, BETA):
        assert "".join(c.tokens) == c.solution and "".join(c.steps) == c.solution
        assert sum(c.step_rewards()) == pytest.approx(c.total, abs=1e-12)
        assert c.total == pytest.approx(BETA * (sum(c.logp_policy) - sum(c.logp_ref)), abs=1e-9)
        assert sum(c.step_sums(c.logp_ref)) == pytest.approx(sum(c.logp_ref), abs=1e-9)
    c = implicit_rewards(pi, ref, tok, PROMPTS[:1], SOLUTIONS[:1], BETA)[0]
    assert c.steps == ["23+15=38\n", "38-9=29\n", "#### 29"]
    # one token per character here: step k holds exactly its own characters
    assert c.step_of == [0] * 9 + [1] * 8 + [2] * 7
    lr = c.logp_ref
    assert c.step_sums(lr) == pytest.approx([sum(lr[:9]), sum(lr[9:17]), sum(lr[17:])], abs=1e-9)


def test_batched_equals_one_by_one(char_model_dir, char_ref_dir):
    pi, tok = load_causal_lm(char_model_dir)
    ref, _ = load_causal_lm(char_ref_dir)
    batched = implicit_rewards(pi, ref, tok, PROMPTS, SOLUTIONS, BETA)
    for p, s, b in zip(PROMPTS, SOLUTIONS, batched, strict=True):
        alone = implicit_rewards(pi, ref, tok, [p], [s], BETA)[0]
        assert alone.token_ids == b.token_ids
        assert alone.rewards == pytest.approx(b.rewards, abs=1e-5)


def test_eos_is_scored_on_the_last_step(char_model_dir, char_ref_dir):
    pi, tok = load_causal_lm(char_model_dir)
    ref, _ = load_causal_lm(char_ref_dir)
    plain, with_eos = (implicit_rewards(pi, ref, tok, PROMPTS[1:2], SOLUTIONS[1:2], BETA, eos=e)[0]
                       for e in (False, True))
    assert with_eos.token_ids == [*plain.token_ids, tok.eos_token_id]
    assert with_eos.tokens[-1] == "" and with_eos.step_of[-1] == len(with_eos.steps) - 1
    assert with_eos.rewards[:-1] == pytest.approx(plain.rewards, abs=1e-9)


def test_bpe_tokens_go_to_the_step_holding_their_first_character(bpe_model_dir, bpe_ref_dir, bpe_tokenizer):
    pi, tok = load_causal_lm(bpe_model_dir)
    ref, _ = load_causal_lm(bpe_ref_dir)
    prompt = "Natalia sold clips to 48 of her friends in April. How many clips did she sell?\n"
    solution = "She sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 in May.\n#### 72"
    c = implicit_rewards(pi, ref, tok, [prompt], [solution], BETA)[0]
    assert len(c.tokens) < len(solution)  # multi-character tokens
    assert "".join(c.tokens) == solution
    ends = [len(c.steps[0]), len(c.steps[0]) + len(c.steps[1])]
    starts = [sum(len(t) for t in c.tokens[:i]) for i in range(len(c.tokens))]
    assert c.step_of == [sum(s >= e for e in ends) for s in starts]
    # this tokenizer has a token ".\n#### " that crosses a step boundary: it sits on the step of its first character
    crossing = [i for i, (s, t) in enumerate(zip(starts, c.tokens, strict=True))
                if any(s < e < s + len(t) for e in ends)]
    assert crossing and all(c.step_of[i] == (0 if starts[i] < ends[0] else 1) for i in crossing)
    # the reward is still the log-ratio of the very token ids, batched or not
    again = implicit_rewards(pi, ref, tok, [prompt, "Q?\n"], [solution, "#### 1"], BETA)[0]
    assert again.rewards == pytest.approx(c.rewards, abs=1e-5)
    ids, n_context, _ = encode(tok, prompt, solution)
    k = len(c.rewards) // 2
    lp, lr = _hand_logp(pi, ids, n_context + k), _hand_logp(ref, ids, n_context + k)
    assert c.rewards[k] == pytest.approx(BETA * (lp - lr), abs=1e-5)


def test_a_token_straddling_prompt_and_solution_opens_the_solution(bpe_tokenizer):
    """As in TRL: the solution starts where the joint encoding parts from the prompt's own encoding."""
    prompt, solution = "She sold 24 clips in May.\n", "#### 24"
    ids, n_context, starts = encode(bpe_tokenizer, prompt, solution)
    prompt_ids = bpe_tokenizer(prompt)["input_ids"]
    assert ids == bpe_tokenizer(prompt + solution)["input_ids"]
    assert n_context < len(prompt_ids) and ids[:n_context] == prompt_ids[:n_context]  # ".\n#### " is one token
    assert bpe_tokenizer.decode(ids[n_context:]) == ".\n" + solution
    assert starts[0] == 0 and starts == sorted(starts)


def test_mismatched_tokenizers_fail_clearly(char_model_dir, bpe_model_dir, char_ref_dir, bpe_tokenizer):
    with pytest.raises(QstarError, match="tokenizers differ"):
        load_models(char_model_dir, bpe_model_dir)
    from qstar.models.tokenizer import build_char_tokenizer

    with pytest.raises(QstarError, match="tokenizers differ"):
        check_same_tokenizer(build_char_tokenizer(), build_char_tokenizer(chars="0123456789+-=\n# "))
    load_models(char_model_dir, char_ref_dir)  # same tokenizer, different weights: fine
    char, tok = load_causal_lm(char_model_dir)
    bpe, _ = load_causal_lm(bpe_model_dir)
    with pytest.raises(QstarError, match="vocabularies of"):  # models passed in directly are checked too
        implicit_rewards(char, bpe, tok, PROMPTS[:1], SOLUTIONS[:1], BETA)


def test_critic_scores_are_the_squashed_cumulative_last_step_or_q_reward(char_model_dir, char_ref_dir):
    pi, ref, tok = load_models(char_model_dir, char_ref_dir)
    task = get_task("arith")
    steps = [["23+15=38\n", "38-9=29\n"], ["23+15=38\n"]]
    cum = ImplicitRewardCritic(pi, ref, tok, task, BETA)
    last = ImplicitRewardCritic(pi, ref, tok, task, BETA, aggregate="last")
    q = ImplicitRewardCritic(pi, ref, tok, task, BETA, aggregate="q")
    credits = cum.credit([QUESTION] * 2, steps)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert cum.score([QUESTION] * 2, steps) == pytest.approx([sig(c.total) for c in credits], abs=1e-12)
    assert last.score([QUESTION] * 2, steps) == pytest.approx([sig(c.step_rewards()[-1]) for c in credits],
                                                              abs=1e-12)
    assert all(0 < s < 1 for s in cum.score([QUESTION] * 2, steps))
    # "q": reward + beta log pi_ref = beta * the DPO policy's own log-likelihood of the prefix
    assert q.raw_scores([QUESTION] * 2, steps) == pytest.approx([BETA * sum(c.logp_policy) for c in credits],
                                                                abs=1e-9)
    same = ImplicitRewardCritic(pi, pi, tok, task, BETA)
    assert same.score([QUESTION], [steps[0]]) == [0.5]
    with pytest.raises(QstarError, match="aggregate"):
        ImplicitRewardCritic(pi, ref, tok, task, BETA, aggregate="mean")


@pytest.mark.parametrize("method", ["beam", "mcts", "best-of-n"])
def test_the_critic_plugs_into_search(char_model_dir, char_ref_dir, method):
    from qstar.models.hf_policy import HFPolicy
    from qstar.search import METHODS

    pi, ref, tok = load_models(char_model_dir, char_ref_dir)
    task = get_task("arith")
    critic = ImplicitRewardCritic(pi, ref, tok, task, BETA)
    strategy, cfg_cls = METHODS[method]
    options = {
        "beam": dict(beam_width=2, expansions_per_beam=2, max_steps=2, max_option_tokens=6),
        "mcts": dict(n_simulations=3, c_max=2, max_depth=2, max_option_tokens=6, b_value=0, b_orm=0, b_prm=1),
        "best-of-n": dict(n=3, max_new_tokens=12, critic="prm"),
    }[method]
    problems = task.problems("test", 2)
    results = strategy(problems, task, HFPolicy(pi, tok, "\n"), Critics(prm=critic), cfg_cls(**options))
    assert len(results) == 2
    if method == "best-of-n":  # every candidate ranked by the critic's score of its whole solution
        for p, r in zip(problems, results, strict=True):
            want = critic.score([p.question] * len(r.candidates), [c.steps for c in r.candidates])
            assert [c.score for c in r.candidates] == pytest.approx(want, abs=1e-6)
        return
    for p, r in zip(problems, results, strict=True):
        scored = [i for i, n in enumerate(r.tree.nodes) if "prm" in n.scores]
        assert scored
        want = critic.score([p.question] * len(scored), [r.tree.steps(i) for i in scored])
        assert [r.tree.nodes[i].scores["prm"] for i in scored] == pytest.approx(want, abs=1e-6)


def test_a_special_token_written_in_the_text_is_scored():
    """A policy may emit "<s>" mid-solution; it is one of the solution's tokens, not dropped as an added one."""
    from qstar.models.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    ids, n_context, starts = encode(tok, "Q?\n", "1<s>=1")
    assert n_context == 4  # BOS + "Q?\n"
    assert ids[n_context:] == [*tok("1", add_special_tokens=False)["input_ids"], tok.bos_token_id,
                               *tok("=1", add_special_tokens=False)["input_ids"]]
    assert starts == [0, 1, 4, 5]
