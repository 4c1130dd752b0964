"""MCTS over the real Hugging Face backend (a tiny random model): cache reuse must not change the search."""

from qstar.models.hf_policy import HFPolicy
from qstar.models.load import load_causal_lm
from qstar.search.common import Critics
from qstar.search.mcts import MCTSConfig, mcts
from qstar.search.tree import trees_match
from qstar.tasks.arith import ArithTask


def _search(model_dir, reuse: bool, seed: int = 0):
    model, tok = load_causal_lm(model_dir)
    policy = HFPolicy(model, tok, "\n", reuse_cache=reuse)
    task = ArithTask()
    cfg = MCTSConfig(n_simulations=8, b_prior=1.0, max_option_tokens=12, max_rollout_tokens=24, seed=seed,
                     leaves_per_step=2)
    return mcts(task.problems("test", 2), task, policy, Critics(), cfg), policy


def test_reuse_on_and_off_build_the_same_tree(char_model_dir):
    (on, pol_on), (off, pol_off) = _search(char_model_dir, True), _search(char_model_dir, False)
    for a, b in zip(on, off, strict=True):
        assert len(a.tree.nodes) > 3
        assert trees_match(a.tree.to_dict(), b.tree.to_dict())
    assert pol_on.cost.generated_tokens == pol_off.cost.generated_tokens
    assert pol_on.cost.prompt_tokens < pol_off.cost.prompt_tokens
    assert not pol_on._entries and not pol_off._entries  # every state was released


def test_another_seed_builds_another_tree(char_model_dir):
    a, _ = _search(char_model_dir, True, seed=0)
    b, _ = _search(char_model_dir, True, seed=1)
    assert not trees_match(a[0].tree.to_dict(), b[0].tree.to_dict())
