"""The score-function estimators' Normal score (estimators.scores) against differentiating torch's
log-density, side by side in one process (for docs/performance.md): one eager cell of the runner, timed
with each form in turn, ``pairs`` times; prints each pair's ratio and their median and range.

    .venv/bin/python tools/score_ab.py PROBLEM ESTIMATOR DIM [N_SAMPLES [PAIRS]]
    .venv/bin/python tools/score_ab.py gaussian-quadratic reinforce 10000 1
    .venv/bin/python tools/score_ab.py gaussian-iwae vimco 100
"""

from __future__ import annotations

import statistics
import sys

import torch

import estimators
import estimators.builtin
import estimators.scores
from benchmarks.allocator import keep_freed_memory
from benchmarks.plan import make_plan
from benchmarks.rows import prepare
from benchmarks.runner import CellEngine
from benchmarks.sweep import Sweep

SCORE_DELTA = estimators.scores.score_delta


def log_density_delta(dist, x: torch.Tensor) -> torch.Tensor:
    log_prob = dist.log_prob(x)
    return log_prob - log_prob.detach()


def use(delta) -> None:
    """``delta`` wherever score_delta is called: the single-sample estimators and score_term (multi-sample)."""
    estimators.builtin.score_delta = estimators.scores.score_delta = delta


def main(problem: str, name: str, dim: int, n_samples: int = 4, pairs: int = 7) -> None:
    keep_freed_memory()  # as the estbench commands do
    plan = make_plan(Sweep(problem=[problem], estimator=[name], dim=[dim], n_samples=[n_samples], replicates=1000,
                           compile="off"))
    cell, sweep = plan.cells[0]
    ctx = sweep.context()
    prep = prepare(cell, ctx)
    R = max(1000, (1 << 22) // (dim * cell.n_samples))

    def seconds(delta) -> float:
        use(delta)
        engine = CellEngine(cell.problem, estimators.get(name), cell.setting, prep, cell.n_samples, R, ctx)
        engine.measure()
        return engine.timing.elapsed

    ratios = []
    for _ in range(pairs):
        ratios.append(seconds(log_density_delta) / seconds(SCORE_DELTA))
        print(f"log-density / score: {ratios[-1]:.2f}", flush=True)
    print(f"{problem} {name} dim {dim}, n {cell.n_samples}, R {R}: median {statistics.median(ratios):.2f}x "
          f"({min(ratios):.2f}-{max(ratios):.2f}, {pairs} pairs)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:6]))
