"""``qstar improve``: AlphaLLM's self-improvement loop as a resumable sequence of phases.

Iteration 0 trains critics on the starting policy (unless given) and evaluates it. Each iteration k then

1. ``search``: MCTS with the current critics on fresh training problems (with ``oracle_orm`` the verifier
   grades the search's rollouts: an oracle critic for data synthesis, never used on test problems), plus
   the policy's own whole-solution samples (rejection sampling: its greedy solution, then samples where
   that is wrong);
2. ``synthesise``: SFT rows and preference pairs (:mod:`qstar.improve.synthesise`), saved as JSONL;
3. ``sft`` then ``dpo``: fine-tune the policy with TRL (:mod:`qstar.train.finetune`);
4. ``critics``: retrain value, PRM and ORM on fresh samples of the new policy (off: static critics);
5. ``eval``: greedy, self-consistency and MCTS on the fixed test split; a row of ``RUN/results.json``.

Every phase writes into ``RUN/iter-KK/.PHASE.tmp`` and is committed by renaming that directory to
``RUN/iter-KK/PHASE`` with its ``summary.json`` inside: a phase is done exactly when its directory exists.
A kill at any moment leaves at worst a temporary directory, which the rerun removes before redoing that
phase (the critics' work directory is kept instead: the critics trainer resumes its own sub-phases).
Phases read their inputs only from disk and draw their seeds from (seed, iteration), so a resumed run
computes what an uninterrupted one would. ``RUN/state.json`` logs each phase's start and commit.
"""

from __future__ import annotations

import inspect
import json
import random
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from qstar.errors import QstarError
from qstar.improve.config import BEFORE_SFT_ORDER, RERUN_MAY_CHANGE, ImproveConfig, check_config
from qstar.search.common import Critics
from qstar.tasks.base import Problem, Task
from qstar.train.pretrain import config_differences, write_json_atomic

IMPROVE_STREAM = 7_000
"""offset of the training-problem streams (pretraining, critics and their reports use others)"""
LOCK = ".lock"
"""held by the process running the run"""
CRITICS_WORK = ".critics.work"
"""the critics phase's work directory: kept across a kill, since the critics trainer resumes inside it"""


@dataclass(frozen=True)
class Step:
    """One phase of one iteration."""

    iteration: int
    phase: str

    @property
    def name(self) -> str:
        return f"iter-{self.iteration:02d}/{self.phase}"


def plan(cfg: ImproveConfig) -> list[Step]:
    """Every phase of the run, in order."""
    steps = [Step(0, "critics")] if cfg.critics is None else []
    steps.append(Step(0, "eval"))
    for k in range(1, cfg.iterations + 1):
        phases = ["search", "synthesise"] + ["sft"] * cfg.sft + ["dpo"] * cfg.dpo
        phases += ["critics"] * cfg.retrain_critics + ["eval"]
        steps += [Step(k, p) for p in phases]
    return steps


# --- critics: the one place that knows the critics package's signatures ----------------------------------


def train_critics(policy_dir: Path, task: Task, out: Path, seed: int, options: dict) -> None:
    """Train value, PRM and ORM of ``policy_dir`` into ``out`` (resumable inside ``out``)."""
    from qstar.critics.train import CriticTrainConfig
    from qstar.critics.train import train_critics as _train

    base = CriticTrainConfig().to_dict()
    base["trunk"]["problems"] = 0  # no trunk phase unless the options ask for one (see critic_options)
    nested = {key: {**base[key], **options.get(key, {})} for key in ("data", "trunk")}
    merged = {**base, **options, **nested, "seed": seed}
    _train(policy_dir, task, out, CriticTrainConfig.from_dict(merged))


def load_critics(path: Path) -> Critics:
    from qstar.critics.load import load_critics as _load

    return _load(Path(path))


@dataclass
class CriticsBackend:
    """How the loop trains and loads critics; tests pass fast fakes."""

    train: Callable[[Path, Task, Path, int, dict], None] = train_critics
    load: Callable[[Path], Critics] = load_critics


class OracleORM:
    """The task's verifier behind the Critic protocol. It reads reference answers, so the loop gives it
    only the training problems it searches, for data synthesis."""

    name = "oracle-orm"

    def __init__(self, task: Task, problems: list[Problem]):
        self.task = task
        self.by_question = {p.question: p for p in problems}

    def score(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        return [float(self.task.is_correct("".join(s), self.by_question[q]))
                for q, s in zip(questions, steps, strict=True)]


Hook = Callable[[str, Step, Path], None]
"""called as ``hook(event, step, path)``: "start" before a phase runs, "commit" when its temporary
directory is complete and about to be renamed (tests raise there to simulate a kill)"""


# --- the run -----------------------------------------------------------------------------------------------


class Run:
    """A run directory: paths of each phase's output, the phase log, and the phases themselves."""

    def __init__(self, cfg: ImproveConfig, out: str | Path, backend: CriticsBackend | None = None,
                 hook: Hook | None = None, progress: bool = True):
        from qstar.tasks import get_task

        self.cfg, self.out = cfg, Path(out)
        self.task = get_task(cfg.task, cfg.data)
        self.backend = backend or CriticsBackend()
        self.hook = hook or (lambda event, step, path: None)
        self.progress = progress

    # -- paths ----------------------------------------------------------------------------------------
    def path(self, step: Step) -> Path:
        return self.out / f"iter-{step.iteration:02d}" / step.phase

    def done(self, step: Step) -> bool:
        return (self.path(step) / "summary.json").is_file()

    def summary(self, step: Step) -> dict | None:
        file = self.path(step) / "summary.json"
        return json.loads(file.read_text()) if file.is_file() else None

    def policy_dir(self, k: int) -> Path:
        """The policy after iteration ``k`` (0: the starting one)."""
        from qstar.models.load import resolve_model_dir

        if k == 0:
            return resolve_model_dir(self.cfg.policy, self.cfg.task)  # "default": the shipped one for the task
        return self.path(Step(k, "dpo" if self.cfg.dpo else "sft"))

    def critics_dir(self, k: int) -> Path:
        """The critics in use after iteration ``k``: retrained on its policy, or iteration 0's."""
        if self.cfg.retrain_critics and k >= 1:
            return self.path(Step(k, "critics"))
        return Path(self.cfg.critics) if self.cfg.critics is not None else self.path(Step(0, "critics"))

    # -- opening and the phase log --------------------------------------------------------------------
    def open(self) -> None:
        """Create the run, or check that the existing one has the same configuration (then it resumes)."""
        file = self.out / "config.json"
        if not file.is_file() and self.out.is_dir() and any(p.name != LOCK for p in self.out.iterdir()):
            raise QstarError(f"{self.out} is not empty and holds no improve run (no config.json); "
                             "choose a new --out")
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock()
        wanted = self.cfg.to_dict()
        if file.is_file():
            saved = BEFORE_SFT_ORDER | json.loads(file.read_text())  # an older run trained as it did then
            diffs = config_differences(saved, wanted, ignore=RERUN_MAY_CHANGE)
            if diffs:
                raise QstarError(f"{self.out} holds an improve run with another configuration ("
                                 + "; ".join(diffs) + "); rerun with its options or choose a new --out")
        write_json_atomic(file, wanted)  # a grown ``iterations`` is recorded
        self._recover_log()

    def _lock(self) -> None:
        """Hold ``RUN/.lock`` while this Run lives, so two processes never run phases of one run at once (the
        kernel drops the lock when its process dies, even by SIGKILL)."""
        import fcntl

        self._lock_file = open(self.out / LOCK, "w")  # held open: closing it drops the lock
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise QstarError(f"{self.out} is in use by another qstar improve process") from None

    def close(self) -> None:
        """Release the lock."""
        lock = getattr(self, "_lock_file", None)
        if lock is not None:
            lock.close()
            self._lock_file = None

    def log(self) -> list[dict]:
        file = self.out / "state.json"
        return json.loads(file.read_text())["log"] if file.is_file() else []

    def _append(self, step: Step, event: str, **extra) -> None:
        entries = self.log() + [{"step": step.name, "event": event,
                                 "at": datetime.now(UTC).isoformat(timespec="seconds"), **extra}]
        write_json_atomic(self.out / "state.json", {"log": entries})

    def _recover_log(self) -> None:
        """A kill between a commit and its log entry: the phase is done; log it, never redo it."""
        logged = {e["step"] for e in self.log() if e["event"] == "done"}
        for step in plan(self.cfg):
            if self.done(step) and step.name not in logged:
                self._append(step, "done", recovered=True)

    # -- running one phase ----------------------------------------------------------------------------
    def execute(self, step: Step) -> dict:
        """Run one phase into its temporary directory, then commit it with one rename."""
        parent = self.path(step).parent
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.iterdir():  # left by a kill inside this phase
            if stale.name.startswith(".") and f"{step.phase}.tmp" in stale.name:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        tmp = parent / (CRITICS_WORK if step.phase == "critics" else f".{step.phase}.tmp")
        tmp.mkdir(exist_ok=True)
        self._append(step, "start")
        self.hook("start", step, tmp)
        self._say(f"== {step.name}")
        t0 = time.perf_counter()
        summary = PHASES[step.phase](self, step.iteration, tmp)
        summary["wall_s"] = time.perf_counter() - t0
        write_json_atomic(tmp / "summary.json", summary)
        self.hook("commit", step, tmp)
        tmp.rename(self.path(step))
        self._append(step, "done", wall_s=round(summary["wall_s"], 2))
        self._say(f"   {step.name} done in {summary['wall_s']:.0f}s")
        return summary

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    # -- helpers shared by phases ---------------------------------------------------------------------
    def seed(self, k: int) -> int:
        """The seed of iteration ``k``'s samplers and trainers."""
        return self.cfg.seed * 1_000 + k

    def train_problems(self, k: int) -> list[Problem]:
        """Iteration ``k``'s fresh training problems: a new seeded stream (generated tasks), or the next
        slice of the shuffled train split (data tasks). The search takes the first ones, sampling as many
        as it is configured for."""
        n = max(self.cfg.problems_per_iteration, self.cfg.rejection_problems)
        if "seed" in inspect.signature(self.task.problems).parameters:
            return self.task.problems("train", n, seed=IMPROVE_STREAM + 100 * self.cfg.seed + k)
        pool = list(self.task.problems("train"))
        if not pool:
            raise QstarError(f"task {self.task.name} has no train problems to improve on")
        random.Random(self.cfg.seed).shuffle(pool)
        start = (k - 1) * n
        return [pool[(start + i) % len(pool)] for i in range(min(n, len(pool)))]

    def load_critics(self, k: int) -> Critics:
        return self.backend.load(self.critics_dir(k))

    def policy(self, k: int):
        from qstar.evaluate import load_policy

        return load_policy(str(self.policy_dir(k)), self.task)


# --- the phases --------------------------------------------------------------------------------------------


def _with_fallback(mcts_cfg, critics: Critics):
    """Without any critic, MCTS evaluates nodes by the policy's mean token probability (as ``qstar search``)."""
    if critics.value or critics.prm or critics.orm:
        return mcts_cfg
    return replace(mcts_cfg, b_prior=max(mcts_cfg.b_prior, 1.0))


def phase_search(run: Run, k: int, out: Path) -> dict:
    """MCTS on the iteration's first training problems and rejection samples on (usually more of) them;
    ``trees.jsonl`` and ``samples.jsonl``."""
    from qstar.evaluate import evaluate
    from qstar.search.mcts import mcts

    cfg, task = run.cfg, run.task
    problems = run.train_problems(k)
    searched, sampled = problems[: cfg.problems_per_iteration], problems[: cfg.rejection_problems]
    policy, critics = run.policy(k - 1), run.load_critics(k - 1)
    if cfg.oracle_orm:
        critics = replace(critics, orm=OracleORM(task, searched))
    mcfg = _with_fallback(replace(cfg.search, seed=run.seed(k)), critics)
    results = evaluate(searched, task, policy, critics, mcts, mcfg, cfg.batch_problems, run.progress)
    _write_jsonl(out / "trees.jsonl", [{"id": p.id, "tree": r.tree.to_dict()}
                                       for p, r in zip(searched, results, strict=True)])
    summary = {"searched": len(searched), "sampled": len(sampled) if cfg.rejection_samples else 0,
               "oracle_orm": cfg.oracle_orm,
               "search_accuracy": _share(task, searched, [[r.trajectory.text] for r in results]),
               "search_pass": _share(task, searched, [[c.text for c in r.candidates] for r in results])}
    if cfg.rejection_samples:
        drawn = _rejection_samples(run, k, policy, sampled)
        _write_jsonl(out / "samples.jsonl", [{"id": p.id, "samples": [[t.text, t.logprob] for t in ts]}
                                             for p, ts in zip(sampled, drawn, strict=True)])
        summary["samples_pass"] = _share(task, sampled, [[t.text for t in ts] for ts in drawn])
        summary["sampled_beyond_greedy"] = sum(len(ts) > cfg.rejection_greedy for ts in drawn)
    return summary


def _rejection_samples(run: Run, k: int, policy, problems: list[Problem]) -> list[list]:
    """Whole solutions per problem: the greedy one first (``rejection_greedy``), then ``rejection_samples``
    samples; with ``rejection_focus`` only for the problems whose greedy solution is wrong."""
    from qstar.evaluate import evaluate
    from qstar.search.baselines import SampleConfig, greedy, sample

    cfg = run.cfg
    scfg = SampleConfig(n=cfg.rejection_samples, temperature=cfg.rejection_temperature,
                        max_new_tokens=cfg.max_new_tokens, seed=run.seed(k))
    drawn: list[list] = [[] for _ in problems]
    if cfg.rejection_greedy:
        modes = evaluate(problems, run.task, policy, Critics(), greedy, scfg, cfg.batch_problems, run.progress)
        drawn = [[m.trajectory] for m in modes]
    todo = list(range(len(problems)))
    if cfg.rejection_focus and cfg.rejection_greedy:
        right = _judged_right(run, k, problems, [d[0].text for d in drawn])
        todo = [i for i in todo if not right[i]]
    results = evaluate([problems[i] for i in todo], run.task, policy, Critics(), sample, scfg,
                       cfg.batch_problems, run.progress)
    for i, r in zip(todo, results, strict=True):
        drawn[i] += r.candidates
    return drawn


def _judged_right(run: Run, k: int, problems: list[Problem], texts: list[str]) -> list[bool]:
    """Whether each text solves its problem, as the synthesis will judge it: by the verifier, or by the
    ORM's score reaching ``gamma`` (``keep="orm"``: no ground truth)."""
    from qstar.improve.synthesise import orm_label

    if run.cfg.keep == "verified":
        return [run.task.is_correct(t, p) for t, p in zip(texts, problems, strict=True)]
    scores = _trained_orm(run, k).score([p.question for p in problems], [[t] for t in texts])
    return [orm_label(score, run.cfg.gamma) is True for score in scores]


def _trained_orm(run: Run, k: int):
    """The ORM that judges iteration ``k``'s data with ``keep="orm"``: the one of the policy that drew it."""
    orm = run.load_critics(k - 1).orm
    if orm is None:
        raise QstarError("improve: keep='orm' needs a trained ORM among the critics")
    return orm


def _share(task: Task, problems: list[Problem], solutions: list[list[str]]) -> float:
    """The share of problems with at least one correct solution."""
    ok = [any(task.is_correct(t, p) for t in ts) for p, ts in zip(problems, solutions, strict=True)]
    return sum(ok) / max(len(ok), 1)


def _searched(run: Run, k: int) -> list:
    """The search phase's outputs read back: one Searched per problem (labels still empty), in stream order."""
    from qstar.improve.synthesise import Searched
    from qstar.search.tree import Tree

    folder = run.path(Step(k, "search"))
    trees = {r["id"]: Tree.from_dict(r["tree"]) for r in _read_jsonl(folder / "trees.jsonl")}
    samples = {r["id"]: r["samples"] for r in _read_jsonl(folder / "samples.jsonl")} if (
        folder / "samples.jsonl").is_file() else {}
    return [(p, Searched(run.task.prompt(p), trees.get(p.id), samples=[t for t, _ in samples.get(p.id, [])],
                         sample_logprobs=[lp for _, lp in samples.get(p.id, [])]))
            for p in run.train_problems(k) if p.id in trees or p.id in samples]


def _label(run: Run, k: int, searched: list) -> None:
    """Label every finished leaf and sample: by the verifier, or by the trained ORM with threshold gamma."""
    from qstar.improve.synthesise import label_leaves, orm_label

    task, cfg = run.task, run.cfg
    if cfg.keep == "verified":
        for p, item in searched:
            if item.tree is not None:
                item.labels = label_leaves(item.tree, lambda t, p=p: task.is_correct(t, p))
            item.sample_labels = [task.is_correct(t, p) for t in item.samples]
        return
    orm = _trained_orm(run, k)
    questions, texts, owners = [], [], []
    for p, item in searched:
        item.sample_labels = [None] * len(item.samples)
        for i in item.tree.terminal_leaves() if item.tree is not None else []:
            questions.append(p.question), texts.append(item.tree.steps(i)), owners.append((item.labels, i))
        for i, t in enumerate(item.samples):
            questions.append(p.question), texts.append([t]), owners.append((item.sample_labels, i))
    scores = orm.score(questions, texts) if texts else []
    for (labels, i), score in zip(owners, scores, strict=True):
        labels[i] = orm_label(score, cfg.gamma)


def phase_synthesise(run: Run, k: int, out: Path) -> dict:
    """SFT rows and preference pairs from the search and the samples, as TRL-format JSONL."""
    from qstar.improve.synthesise import synthesise

    searched = _searched(run, k)
    _label(run, k, searched)
    data = synthesise([item for _, item in searched], run.cfg.sft_per_problem, run.cfg.pairs_per_problem,
                      run.cfg.sample_pairs_per_problem)
    _write_jsonl(out / "sft.jsonl", data.sft)
    _write_jsonl(out / "pairs.jsonl", data.pairs)
    summary = data.summary()
    if run.cfg.keep == "orm":  # how often the ORM's choice was right, by the verifier
        by_prompt = {item.prompt: p for p, item in searched}
        ok = [run.task.is_correct(r["completion"], by_prompt[r["prompt"]]) for r in data.sft]
        summary["kept_correct"] = sum(ok) / len(ok) if ok else None
    return summary


def _read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    """Plain writes are enough here: ``path`` is inside a phase's temporary directory, committed whole."""
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def phase_sft(run: Run, k: int, out: Path) -> dict:
    from qstar.train.finetune import batch_settings, sft

    cfg = run.cfg
    rows = _read_jsonl(run.path(Step(k, "synthesise")) / "sft.jsonl")
    return sft(run.policy_dir(k - 1), rows, out, epochs=cfg.sft_epochs, lr=cfg.sft_lr,
               batch_size=cfg.sft_batch_size, seed=run.seed(k),
               overrides=batch_settings(cfg.sft_order, cfg.sft_schedule))


def phase_dpo(run: Run, k: int, out: Path) -> dict:
    from qstar.train.finetune import dpo

    cfg = run.cfg
    start = run.path(Step(k, "sft")) if cfg.sft else run.policy_dir(k - 1)
    reference = run.policy_dir(k - 1) if cfg.dpo_reference == "previous" else start
    pairs = _read_jsonl(run.path(Step(k, "synthesise")) / "pairs.jsonl")
    return dpo(start, reference, pairs, out, epochs=cfg.dpo_epochs, lr=cfg.dpo_lr, batch_size=cfg.dpo_batch_size,
               beta=cfg.dpo_beta, seed=run.seed(k), sft_weight=cfg.dpo_sft_weight)


def phase_critics(run: Run, k: int, out: Path) -> dict:
    """Value, PRM and ORM trained on fresh samples of iteration ``k``'s policy."""
    run.backend.train(run.policy_dir(k), run.task, out, run.seed(k), run.cfg.critic_options)
    return {"policy": str(run.policy_dir(k))}


def phase_eval(run: Run, k: int, out: Path) -> dict:
    """Greedy, self-consistency and MCTS (current critics only) on the fixed test split."""
    from qstar.evaluate import evaluate, summarise
    from qstar.search.baselines import SampleConfig, greedy, self_consistency
    from qstar.search.mcts import mcts

    cfg, task = run.cfg, run.task
    problems = task.problems("test", cfg.eval_limit)
    policy, critics = run.policy(k), run.load_critics(k)
    methods = {
        "greedy": (greedy, SampleConfig(n=1, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)),
        "self_consistency": (self_consistency, SampleConfig(n=cfg.sc_n, temperature=cfg.eval_temperature,
                                                            max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)),
        "mcts": (mcts, _with_fallback(replace(cfg.eval_search, seed=cfg.seed), critics)),
    }
    summary = {}
    for name, (strategy, mcfg) in methods.items():
        t0 = time.perf_counter()
        results = evaluate(problems, task, policy, critics, strategy, mcfg, cfg.batch_problems, run.progress)
        report = summarise(problems, task, results, time.perf_counter() - t0, getattr(mcfg, "n", 1))
        summary[name] = report["summary"]
        _write_jsonl(out / f"{name}.jsonl", report["records"])
    return summary


PHASES: dict[str, Callable[[Run, int, Path], dict]] = {
    "search": phase_search,
    "synthesise": phase_synthesise,
    "sft": phase_sft,
    "dpo": phase_dpo,
    "critics": phase_critics,
    "eval": phase_eval,
}


# --- entry points ------------------------------------------------------------------------------------------


@contextmanager
def _no_loading_bars():
    """The loop loads a model in every phase; transformers' per-load progress bars would bury its own output."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def run_improve(cfg: ImproveConfig, out: str | Path, *, backend: CriticsBackend | None = None,
                hook: Hook | None = None, progress: bool = True) -> dict:
    """Run (or resume) the loop in ``out``; prints the table and returns ``results.json``'s content."""
    import torch

    from qstar.improve.report import format_rows, write_report

    check_config(cfg)
    run = Run(cfg, out, backend, hook, progress)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or threads)
    try:
        run.open()
        with _no_loading_bars():
            for step in plan(cfg):
                if run.done(step):
                    continue
                run.execute(step)
                if step.phase == "eval":
                    write_report(run)
        results = write_report(run)
    finally:
        torch.set_num_threads(threads)
        run.close()
    if progress:
        print("\n" + format_rows(results["rows"], title=f"qstar improve: {cfg.task} ({run.out})"))
        print(f"\nresults: {run.out / 'results.json'}\nplot: {run.out / 'progress.png'}")
    return results
