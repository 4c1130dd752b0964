"""How many candidate programs the sandbox verifies per second on this machine's cores.

    .venv/bin/python bench/sandbox.py [--trivial 400] [--workers N] [--data PATH]

Verifies N trivial candidates (``assert f(2) == 4``-style) and all 164 HumanEval canonical solutions
with ``run_batch``, after warming the worker pool, and compares with the naive design (one fresh
``python -I -S`` per candidate) on a smaller sample. Prints a table; the last line is one JSON object
with ``verified_per_s`` (trivial), ``humaneval_per_s``, ``target_per_s`` (50) and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from qstar.tasks.humaneval import HumanEvalTask, build_program
from qstar.tasks.sandbox import SandboxConfig, run_batch

TARGET_PER_S = 50
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/humaneval/HumanEval.jsonl.gz"


def trivial_programs(n: int) -> list[str]:
    """Distinct small candidates with one test each, all correct."""
    return [f"def f(x):\n    return x * {i % 7 + 1}\n\nassert f(2) == {2 * (i % 7 + 1)}\n" for i in range(n)]


def timed_batch(programs: list[str], config: SandboxConfig) -> tuple[float, int, list[str]]:
    """(candidates per second, number passed, guards seen) for one run_batch call."""
    start = time.perf_counter()
    results = run_batch(programs, config)
    rate = len(programs) / (time.perf_counter() - start)
    guards = sorted({guard for result in results for guard in result.guards})
    return rate, sum(result.passed for result in results), guards


def fresh_interpreter_rate(programs: list[str], workers: int) -> float:
    """The naive design for comparison: a new ``python -I -S`` per candidate, no limits at all."""

    def one(program: str) -> int:
        return subprocess.run([sys.executable, "-I", "-S", "-c", program], capture_output=True).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        codes = list(pool.map(one, programs))
    assert codes == [0] * len(programs)
    return len(programs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trivial", type=int, default=400)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args()
    config = SandboxConfig(workers=args.workers)

    run_batch(trivial_programs(2 * args.workers), config)  # start the workers outside the timing
    trivial_rate, trivial_ok, guards = timed_batch(trivial_programs(args.trivial), config)
    naive_rate = fresh_interpreter_rate(trivial_programs(min(args.trivial, 60)), args.workers)

    humaneval_rate, humaneval_ok, humaneval_n = None, 0, 0
    if Path(args.data).exists():
        task = HumanEvalTask(args.data, sandbox=config)
        problems = task.problems("test")
        programs = [build_program(task.format_solution(p), p) for p in problems]
        humaneval_rate, humaneval_ok, _ = timed_batch(programs, config)
        humaneval_n = len(programs)

    print(f"cores {os.cpu_count()}, workers {args.workers}, guards {','.join(guards)}")
    print(f"{'workload':<34} {'n':>5} {'passed':>7} {'per s':>8} {'x target':>9}")
    rows = [("trivial (sandboxed)", args.trivial, trivial_ok, trivial_rate)]
    if humaneval_rate is not None:
        rows.append(("HumanEval canonical (sandboxed)", humaneval_n, humaneval_ok, humaneval_rate))
    rows.append(
        ("trivial, fresh python -I -S (naive)", min(args.trivial, 60), min(args.trivial, 60), naive_rate)
    )
    for name, n, ok, rate in rows:
        print(f"{name:<34} {n:>5} {ok:>7} {rate:>8.1f} {rate / TARGET_PER_S:>9.2f}")

    figures = {
        "verified_per_s": round(trivial_rate, 1),
        "humaneval_per_s": None if humaneval_rate is None else round(humaneval_rate, 1),
        "target_per_s": TARGET_PER_S,
        "ratio": round(trivial_rate / TARGET_PER_S, 2),
        "humaneval_ratio": None if humaneval_rate is None else round(humaneval_rate / TARGET_PER_S, 2),
        "all_passed": trivial_ok == args.trivial and humaneval_ok == humaneval_n,
        "naive_fresh_interpreter_per_s": round(naive_rate, 1),
        "workers": args.workers,
        "cores": os.cpu_count(),
        "guards": guards,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
