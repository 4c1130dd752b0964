"""The configuration of a self-improvement run; saved as ``RUN/config.json`` and checked on every rerun."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from qstar.errors import QstarError
from qstar.search.mcts import MCTSConfig

FINETUNE_MODES = ("sft+dpo", "sft", "dpo")
KEEP_MODES = ("verified", "orm")
CRITIC_OPTIONS = {"problems": 64, "steps": 50, "report_problems": 0}
RERUN_MAY_CHANGE = ("iterations", "threads")
"""fields a rerun may change: more iterations continue a finished run where it stopped; threads change only
how fast it runs"""


BEFORE_SFT_ORDER = {"sft_order": "by_length", "sft_schedule": "linear"}
"""how a run saved before ``sft_order`` and ``sft_schedule`` existed trained its policy"""


def train_search() -> MCTSConfig:
    """MCTS for data synthesis: hotter than at test time, so trees hold both right and wrong solutions (the
    material of preference pairs); option and rollout budgets sized for arith's short lines."""
    return MCTSConfig(n_simulations=12, temperature=1.0, c_max=4, max_option_tokens=32, max_depth=8,
                      max_rollout_tokens=96, rollout_temperature=1.0, seed=0, final="visits")


def eval_search() -> MCTSConfig:
    """MCTS for the held-out evaluation (only the trained critics; never the verifier). Cooler than the
    training search: a small policy's samples at 0.8 are much worse than its greedy steps. Both loop searches
    answer by visits, as every loop run so far did. MCTS's default answer, the ORM vote, was measured here on
    400 validation problems with the loop's own critics, and did not help consistently: iteration 0 0.580 ->
    0.598, iteration 3 0.730 -> 0.715."""
    return MCTSConfig(n_simulations=8, temperature=0.5, c_max=4, max_option_tokens=32, max_depth=8,
                      max_rollout_tokens=96, seed=0, final="visits")


@dataclass
class ImproveConfig:
    """Everything that determines a self-improvement run (AlphaLLM's loop: search, synthesise, fine-tune,
    retrain the critics, evaluate). The same dataclass feeds ``qstar improve`` and is saved in the run."""

    # --- what to improve ---------------------------------------------------------------------------------
    task: str = "arith"
    """task name"""
    data: str | None = None
    """JSONL file of data tasks (gsm8k, math500, ...); None for generated tasks"""
    policy: str = "default"
    """the starting policy directory (iteration 0), or "default" for the shipped one"""
    critics: str | None = None
    """trained critics to start from; None trains them on the starting policy as iteration 0's first phase"""
    iterations: int = 3
    """self-improvement iterations (a rerun with a larger number continues a finished run)"""
    seed: int = 0
    """seed of every problem stream, sampler and trainer (each phase derives its own from it)"""
    threads: int | None = None
    """torch CPU threads for every phase, critics included; None keeps torch's default (one per core). Alone on
    two cores, two threads run SFT 1.7x and greedy decoding 1.5x faster than one. Set 1 when another job
    shares the cores: OpenMP threads that spin-wait for a busy core make two slower than one"""

    # --- 1. search on fresh training problems ------------------------------------------------------------
    problems_per_iteration: int = 128
    """fresh training problems searched by MCTS per iteration (a new seeded stream each iteration)"""
    search: MCTSConfig = field(default_factory=train_search)
    """MCTS on the training problems"""
    oracle_orm: bool = True
    """on TRAINING problems only, the task's verifier replaces the ORM in the search (an oracle critic for
    data synthesis; rollouts graded by ground truth). Test problems never see references."""
    rejection_samples: int = 8
    """whole solutions sampled per training problem from the current policy (with ``rejection_focus``, per
    problem whose greedy solution is wrong); the verified-correct ones join the SFT set (rejection sampling,
    as in STaR / ReST-EM). MCTS keeps at most one trajectory per problem, and a fine-tuned small policy needs
    more rows than a search can afford: sampling costs a fraction of a search per problem, so it covers more
    problems, and it keeps the SFT set on the policy's own distribution. 0 turns it off (MCTS data only, as
    in the paper)"""
    rejection_problems: int = 9216
    """training problems rejection-sampled per iteration: the searched ones first, then more of the stream.
    SFT gains here are bounded by how many verified rows it sees. Greedy accuracy over 3 iterations on the
    shipped arith policy (test split): 1536 problems (~1250 rows) no rise, 3072 (~2500 rows) +4 points (these
    two before ``rejection_focus`` and the current SFT rate), 5632 (~4950 rows) +9.5 in 26 minutes on one
    thread, 9216 (~8100 rows) +13.5 in 25 minutes with two threads. Chosen on 1000 validation problems (train split, a
    reserved stream): 5632 gained +8.9 there, 9216 +11.7. This default keeps the run inside 30 minutes on
    two cores"""
    rejection_focus: bool = True
    """draw the samples only for problems whose greedy solution is wrong (difficulty-aware rejection
    sampling, as in DART-Math): a problem greedy solves contributes its greedy solution, which samples would
    mostly repeat, and the sampling budget goes where new solutions teach the policy something. "Wrong" is
    the verifier's word (``keep="verified"``) or the ORM's (``keep="orm"``). Needs ``rejection_greedy``"""
    rejection_temperature: float = 0.7
    """sampling temperature of the rejection samples (cooler samples reach right answers through lucky
    slips less often)"""
    rejection_greedy: bool = True
    """add the greedy solution to each problem's samples: when it is right it is the policy's most likely
    right solution, the one the SFT set prefers"""
    max_new_tokens: int = 96
    """token budget of one whole solution (rejection samples and the evaluation's baselines)"""
    batch_problems: int = 64
    """problems searched or sampled together (their forward passes are batched)"""

    # --- 2. synthesis ------------------------------------------------------------------------------------
    keep: Literal["verified", "orm"] = "verified"
    """per problem, the best trajectory by critic score is kept when the verifier says it is correct
    ("verified"), or when the trained ORM scores it above ``gamma`` ("orm": no ground truth needed)"""
    gamma: float = 0.9
    """ORM threshold of ``keep="orm"``; pairs then take solutions scored >= gamma as correct and
    <= 1 - gamma as wrong, and skip the rest"""
    sft_per_problem: int = 1
    """most distinct SFT completions kept per problem (the search's best first, then the most likely correct
    samples). One by default: where a task has one canonical solution (arith), a second distinct solution
    with the right answer usually got there through compensating slips"""
    pairs_per_problem: int = 2
    """most preference pairs per tree (deepest branch point first: it isolates the wrong step)"""
    sample_pairs_per_problem: int = 0
    """most preference pairs per problem from the rejection samples (a wrong sample against the most likely
    correct one; 0: pairs come from search trees only)"""

    # --- 3. fine-tuning ----------------------------------------------------------------------------------
    finetune: Literal["sft+dpo", "sft", "dpo"] = "sft+dpo"
    """SFT on the kept trajectories then DPO on the pairs, or only one of them"""
    sft_epochs: float = 2.0
    """passes over the SFT set"""
    sft_lr: float = 1e-4
    """SFT peak learning rate. On ~5400 rows of the shipped arith policy's own solutions (linear decay, batches
    by length), 2 epochs at 1e-4 or 2e-4 raised greedy accuracy 0.650 -> 0.715, 3 epochs at 5e-5 only to
    0.670, and one epoch at 2e-4 not at all (0.655)"""
    sft_batch_size: int = 64
    """SFT sequences per optimizer step"""
    sft_order: Literal["by_length", "random"] = "by_length"
    """SFT batches of rows of similar length (TRL's grouping: less padding), or drawn at random. Random
    batches with ``sft_schedule="cosine"`` trained a better policy, as they did the critics' trunk: over 3
    iterations, greedy on 1000 validation problems rose 0.633 -> 0.769 against 0.750 by length (test 0.795
    against 0.785), but SFT took 30% longer, ~3 more minutes, which leaves the default run no margin under
    30 minutes; random batches for 1.5 epochs, to spend the same time, reached only 0.732"""
    sft_schedule: Literal["linear", "cosine"] = "linear"
    """SFT learning-rate decay after a warm-up of 5% of the steps"""
    dpo_epochs: float = 1.0
    """passes over the preference pairs"""
    dpo_lr: float = 1e-5
    """DPO peak learning rate (linear decay)"""
    dpo_batch_size: int = 16
    """DPO pairs per optimizer step"""
    dpo_beta: float = 0.1
    """DPO's beta: the strength of the pull towards the reference policy"""
    dpo_sft_weight: float = 1.0
    """weight of an NLL term on the chosen solutions added to the DPO loss (RPO); 0: plain DPO, which lowers
    the chosen solutions' likelihood along with the rejected ones' and costs a small policy greedy accuracy"""
    dpo_reference: Literal["previous", "sft"] = "previous"
    """DPO's reference: the policy this iteration started from, or the policy right after SFT"""

    # --- 4. critics --------------------------------------------------------------------------------------
    retrain_critics: bool = True
    """retrain value, PRM and ORM on fresh samples of each new policy; False keeps iteration 0's critics
    (the paper's static critics: the ablation)"""
    critic_options: dict = field(default_factory=lambda: dict(CRITIC_OPTIONS))
    """overrides of :class:`qstar.critics.train.CriticTrainConfig` fields (``{"data": {...}}`` for its
    DataConfig, ``{"trunk": {...}}`` for its TrunkConfig); the seed is set per iteration. The default trains
    on fewer problems for fewer steps than ``qstar train-critics`` and skips its held-out report: the loop
    trains critics once per iteration. The loop also skips the trunk phase unless ``trunk`` is given here
    (``{"trunk": {"problems": 8192, "samples": 8, "epochs": 2}}``, train-critics' earlier trunk: it alone
    takes ~14 minutes; the current default takes ~41), and the loop's policy is itself
    fine-tuned on verified solutions at every iteration"""

    # --- 5. evaluation -----------------------------------------------------------------------------------
    eval_limit: int | None = None
    """evaluate on the first K problems of the fixed test split (None: all of it)"""
    sc_n: int = 8
    """samples of self-consistency"""
    eval_temperature: float = 0.5
    """sampling temperature of self-consistency (at 0.8 a small policy's votes fall below its greedy answer)"""
    eval_search: MCTSConfig = field(default_factory=eval_search)
    """MCTS on the test problems, guided by the current critics only"""

    def to_dict(self) -> dict:
        """JSON-ready (tuples become lists, as they would after a round trip through the file)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> ImproveConfig:
        d = dict(d)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise QstarError(f"improve: unknown config field(s) {sorted(unknown)}")
        for name in ("search", "eval_search"):
            if isinstance(d.get(name), dict):
                d[name] = MCTSConfig(**d[name])
        return cls(**d)

    @property
    def sft(self) -> bool:
        return self.finetune in ("sft+dpo", "sft")

    @property
    def dpo(self) -> bool:
        return self.finetune in ("sft+dpo", "dpo")


def check_config(cfg: ImproveConfig) -> None:
    """Refuse a configuration that cannot run, before any model is loaded."""
    if cfg.finetune not in FINETUNE_MODES:
        raise QstarError(f"improve: finetune must be one of {', '.join(FINETUNE_MODES)}, not {cfg.finetune!r}")
    if cfg.keep not in KEEP_MODES:
        raise QstarError(f"improve: keep must be one of {', '.join(KEEP_MODES)}, not {cfg.keep!r}")
    if cfg.rejection_focus and cfg.rejection_samples and not cfg.rejection_greedy:
        raise QstarError("improve: rejection_focus samples where the greedy solution is wrong; it needs "
                         "rejection_greedy")
    from qstar.train.finetune import SFT_ORDERS, SFT_SCHEDULES

    if cfg.sft_order not in SFT_ORDERS or cfg.sft_schedule not in SFT_SCHEDULES:
        raise QstarError(f"improve: sft_order must be one of {', '.join(SFT_ORDERS)} and sft_schedule one of "
                         f"{', '.join(SFT_SCHEDULES)}, not {cfg.sft_order!r} / {cfg.sft_schedule!r}")
    if cfg.dpo_reference not in ("previous", "sft"):
        raise QstarError(f"improve: dpo_reference must be 'previous' or 'sft', not {cfg.dpo_reference!r}")
    if not 0.5 < cfg.gamma <= 1:
        raise QstarError(f"improve: gamma must be in (0.5, 1], got {cfg.gamma}")
    positive = {"iterations": cfg.iterations, "problems_per_iteration": cfg.problems_per_iteration,
                "sc_n": cfg.sc_n, "batch_problems": cfg.batch_problems,
                "sft_batch_size": cfg.sft_batch_size, "dpo_batch_size": cfg.dpo_batch_size,
                "sft_per_problem": cfg.sft_per_problem,
                "threads": 1 if cfg.threads is None else cfg.threads}
    for name, value in positive.items():
        if value < 1:
            raise QstarError(f"improve: {name} must be at least 1, got {value}")
    if min(cfg.rejection_samples, cfg.rejection_problems, cfg.pairs_per_problem, cfg.sample_pairs_per_problem,
           cfg.dpo_sft_weight) < 0:
        raise QstarError("improve: rejection_samples, rejection_problems, pairs_per_problem, "
                         "sample_pairs_per_problem and dpo_sft_weight cannot be negative")
