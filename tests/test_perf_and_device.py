"""The perf script runs (no timing assertions: speed is measured by `estbench perf`, not by tests),
and the CUDA path, where a GPU is present."""

from __future__ import annotations

import pytest
import torch

from benchmarks import perf, runner
from benchmarks.sweep import Sweep


def test_perf_functions_run_and_report_positive_times():
    rows = perf.speedups(dim=3, replicates=5, repeats=1, names=["reinforce"])
    assert rows[0]["loop_s_per_estimate"] > 0 and rows[0]["runner_s_per_estimate"] > 0
    vae = perf.vae_estimates(replicates=2, repeats=1, names=["reinforce"])
    assert vae[0]["speedup"] > 0
    o = perf.vae_training_overhead(steps=2, repeats=1)
    assert o["suite_s_per_step"] > 0 and o["inline_s_per_step"] > 0


def test_naive_loop_and_runner_estimate_the_same_gradient():
    """The perf baseline is the same estimator: both means agree with the truth (z-test on the loop)."""
    from benchmarks.problems import Context, GaussianSetting, get

    from .statutil import z_bound

    problem = get("gaussian-quadratic")
    s = GaussianSetting(mu=1.5, sigma=1.0, k=0.0, dim=2)
    torch.manual_seed(0)
    g = perf.naive_loop(problem, perf.estimators.get("reinforce"), s, 4, 2000, Context(dtype=torch.float64))
    truth = 2 * (s.mu - s.k)
    z = (g.mean(0) - truth) / (g.std(0) / g.shape[0] ** 0.5)
    assert z.abs().max() <= z_bound(2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_runs_toy_and_vae_cells():
    sweep = Sweep(problem=["gaussian-cos", "vae-digits"], estimator=["reparameterization", "reinforce"],
                  checkpoint=["untrained"], replicates=50, train_steps=5, device="cuda")
    rows = runner.run(sweep)
    assert rows and {r["status"] for r in rows} == {"ok"} and {r["device"] for r in rows} == {"cuda"}
