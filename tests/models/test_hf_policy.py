"""The KV-cache-tree backend must sample exactly what the model would, with or without cache reuse."""

import pytest
import torch

from qstar.models.hf_policy import HFPolicy
from qstar.models.load import load_causal_lm

PROMPTS = ["Ann has 5 pens. She buys 3.\n", "Bob has 12 cards. She loses 4. She doubles them.\n", "Hi\n"]


@pytest.fixture(scope="module")
def char_lm(char_model_dir):
    return load_causal_lm(char_model_dir)


def _hf_greedy(model, tok, prompt, max_new):
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def test_greedy_to_the_end_matches_generate(char_lm):
    model, tok = char_lm
    pol = HFPolicy(model, tok, "\n")
    opts = pol.extend(pol.root(PROMPTS), 1, temperature=0, until="end", max_new_tokens=30)
    for prompt, (opt,) in zip(PROMPTS, opts, strict=True):
        assert list(opt.token_ids) == _hf_greedy(model, tok, prompt, 30)[: len(opt.token_ids)]
        assert len(opt.token_ids) == 30 or opt.finished


def _walk(pol, prompts, n_steps, n=2, seed=0):
    """Extend every option again and again (a tiny full tree); return all option texts and logprobs."""
    frontier = pol.root(prompts)
    seen = []
    for step in range(n_steps):
        opts = pol.extend(frontier, n, temperature=1.0, until="step", max_new_tokens=12, seed=seed + step)
        frontier = [o.state for group in opts for o in group]
        seen.append([(o.token_ids, round(o.logprob, 4)) for group in opts for o in group])
    return seen


def test_cache_reuse_gives_the_same_samples_and_computes_fewer_tokens(char_lm):
    model, tok = char_lm
    on, off = HFPolicy(model, tok, "\n", reuse_cache=True), HFPolicy(model, tok, "\n", reuse_cache=False)
    assert _walk(on, PROMPTS, 3) == _walk(off, PROMPTS, 3)
    assert on.cost.generated_tokens == off.cost.generated_tokens
    assert on.cost.prompt_tokens < off.cost.prompt_tokens / 2


def test_seed_controls_sampling(char_lm):
    model, tok = char_lm
    a = _walk(HFPolicy(model, tok, "\n"), PROMPTS, 2, seed=1)
    b = _walk(HFPolicy(model, tok, "\n"), PROMPTS, 2, seed=1)
    c = _walk(HFPolicy(model, tok, "\n"), PROMPTS, 2, seed=2)
    assert a == b and a != c


def test_options_stop_at_the_delimiter_and_logprobs_are_the_models(char_lm):
    model, tok = char_lm
    pol = HFPolicy(model, tok, " ")  # a frequent delimiter, so options end early
    root = pol.root(["Ann has 5 pens."])
    opts = pol.extend(root, 4, temperature=1.0, until="step", max_new_tokens=20, seed=0)[0]
    for o in opts:
        assert o.finished or " " in o.text and not o.text.rstrip(" ").count(" ")
        # The option's log-prob is the model's own, recomputed from scratch.
        ids = tok("Ann has 5 pens.")["input_ids"] + list(o.token_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
        start = len(ids) - len(o.token_ids)
        expect = sum(float(logp[start - 1 + i, t]) for i, t in enumerate(o.token_ids))
        assert o.logprob == pytest.approx(expect, abs=1e-3)
    assert pol.text(opts[0].state) == opts[0].text


def test_re_extending_a_state_and_release(char_lm):
    model, tok = char_lm
    pol = HFPolicy(model, tok, "\n")
    root = pol.root(["Ann has 5 pens.\n"])
    first = pol.extend(root, 1, temperature=0, until="step", seed=0)[0][0]
    again = pol.extend(root, 1, temperature=0, until="step", seed=0)[0][0]
    assert first.token_ids == again.token_ids
    pol.release(root)
    assert not pol._entries


def test_bpe_tokenizer_with_delimiter_inside_tokens(bpe_model_dir):
    model, tok = load_causal_lm(bpe_model_dir)
    pol = HFPolicy(model, tok, "\n")
    assert any("\n" in piece and len(piece) > 1 for piece in pol._piece)  # merges hold newlines
    opts = pol.extend(pol.root(["Question: 2+3?\nAnswer:\n"]), 3, temperature=1.0, until="step",
                      max_new_tokens=40, seed=0)[0]
    for o in opts:
        assert o.finished or "\n" in o.text
        # Stopping happens at the first token that contains the delimiter, never later.
        assert o.finished or "\n" not in tok.decode(list(o.token_ids[:-1]))


def test_special_tokens_are_never_sampled(char_lm):
    model, tok = char_lm
    # Make BOS and PAD the model's favourite tokens: the backend must still never emit them.
    with torch.no_grad():
        model.lm_head.weight.data[tok.bos_token_id] *= 50
        model.lm_head.weight.data[tok.pad_token_id] *= 50
    try:
        pol = HFPolicy(model, tok, "\n")
        opts = pol.extend(pol.root(PROMPTS), 8, temperature=1.0, until="end", max_new_tokens=20, seed=0)
        ids = {t for group in opts for o in group for t in o.token_ids}
        assert tok.bos_token_id not in ids and tok.pad_token_id not in ids
    finally:
        with torch.no_grad():
            model.lm_head.weight.data[tok.bos_token_id] /= 50
            model.lm_head.weight.data[tok.pad_token_id] /= 50
