"""The torch.compile path of the replicate engine, its switch and its fallback.

Compiling costs seconds per cell, so these tests compile few, small cells.
"""

from __future__ import annotations

import math

import pytest
import torch

import estimators
from benchmarks import compiling, runner
from benchmarks.problems import Context, GaussianSetting, get
from benchmarks.sweep import Sweep, SweepError

from .statutil import z_bound


@pytest.mark.slow
def test_compiled_toy_cells_are_unbiased_and_have_the_closed_form_variance():
    """Compiled cells (a stateless and a stateful estimator; an uneven last chunk that runs
    eagerly) against the closed forms of the quadratic: mean 2(mu - k) and, for the pathwise
    estimator with n draws, per-coordinate variance Var[2(x - k)] / n = 4 sigma^2 / n. Each chunk compiles
    into one graph: a graph break (dynamo running part of the chunk eagerly, as creating the leaves with
    ``requires_grad=True`` did) made compiled estimates 1.06-1.31x dearer."""
    from torch._dynamo.utils import counters

    counters.clear()
    problem = get("gaussian-quadratic")
    s = GaussianSetting(mu=0.5, sigma=1.5, k=-1.0, dim=3)
    ctx = Context(dtype=torch.float64, compile="on")
    n, R = 2, 3001
    z = z_bound(n_assertions=4)
    orig = problem.chunk_size
    problem.chunk_size = lambda *_: 1000  # several chunks, the last one shorter
    try:
        for name in ("reparameterization", "reinforce-ema"):
            torch.manual_seed(0)
            stats, timing = runner.estimate_cell(problem, estimators.get(name), s, None, n, R, ctx)
            assert timing.compiled and timing.compile_s > 0, timing
            summary = stats["mu"].summary(problem.true_gradient(s, ctx)["mu"])
            assert stats["mu"].n == R
            assert abs(summary.bias_z) <= z, (name, summary)
            if name == "reparameterization":
                # Var of the sample variance of normal data: 2 sigma_g^4 / (R - 1), per coordinate,
                # averaged over 3 independent coordinates
                var_g = 4 * s.sigma**2 / n
                se = math.sqrt(2 * var_g**2 / (R - 1) / s.dim)
                assert abs(summary.variance - var_g) <= z * se, (summary.variance, var_g, se)
    finally:
        problem.chunk_size = orig
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_chunk_plan_is_even_with_at_most_one_shorter_chunk():
    for R, m in ((1000, 1000), (1001, 1000), (10_000, 512), (7, 3), (5, 100)):
        sizes = runner.chunk_plan(R, m)
        assert sum(sizes) == R and max(sizes) <= max(m, 1)
        assert len(set(sizes[:-1])) <= 1 and sizes[-1] <= sizes[0]
    for R, m, want in ((1000, 100, [96] * 10 + [40]), (50_000, 10_485, [10_000] * 5), (52_425, 10_485, [8752] * 5 + [8665]),
                       (50, 10, [10] * 5), (130, 70, [48, 48, 34]), (5, 100, [5])):
        assert list(runner.chunk_plan(R, m, 16)) == want  # whole batches of 16 where chunks may hold 64


@pytest.mark.slow
def test_compiled_vae_cells_agree_with_the_pathwise_mean():
    """Compiled VAE cells, pathwise and score-function: the runner's agreement_z (largest |z|
    over encoder coordinates between the two mean gradients) within the Bonferroni bound."""
    sweep = Sweep(problem=["vae-digits"], estimator=["reparameterization", "reinforce-loo"], checkpoint=["untrained"],
                  hidden=[32], latent=[4], batch=[16], replicates=300, train_steps=0, n_samples=[4],
                  dtype="float64", compile="on")
    rows = runner.run(sweep)
    assert [r["compiled"] for r in rows] == [True, True] and {r["status"] for r in rows} == {"ok"}
    assert all(r["compile_time_s"] > 0 for r in rows)
    n_params = 64 * 32 + 32 + 32 * 8 + 8
    loo = next(r for r in rows if r["estimator"] == "reinforce-loo")
    assert loo["agreement_z"] <= z_bound(n_assertions=n_params), loo["agreement_z"]


def test_auto_does_not_compile_short_cells():
    rows = runner.run(Sweep(problem=["gaussian-cos"], estimator=["reinforce"], replicates=200, compile="auto"))
    assert rows and all(r["compiled"] is False and math.isnan(r["compile_time_s"]) for r in rows)


@pytest.mark.slow  # torch.compile: 3-16 s in a fresh clone, whose compile cache is cold
def test_auto_compiles_a_cell_predicted_to_run_long(monkeypatch):
    monkeypatch.setattr(compiling, "AUTO_MIN_BYTES", 1)
    rows = runner.run(Sweep(problem=["gaussian-cos"], estimator=["reinforce"], replicates=200, compile="auto"))
    assert rows and all(r["compiled"] is True and r["compile_time_s"] > 0 for r in rows)


def test_a_failed_compile_falls_back_to_eager_and_says_so(monkeypatch):
    def broken(step):
        def call(*args):
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(compiling, "compile_chunk", broken)
    rows = runner.run(Sweep(problem=["gaussian-quadratic"], estimator=["reparameterization"], replicates=100,
                            compile="on"))
    assert {r["status"] for r in rows} == {"ok"}
    assert all(r["compiled"] is False for r in rows)
    assert all("torch.compile failed, ran eagerly" in r["error"] and "no C++ compiler" in r["error"] for r in rows)


def test_bad_compile_value_is_refused_with_the_choices():
    with pytest.raises(SweepError, match=r"compile must be one of auto, on, off; got 'fast'"):
        Sweep(compile="fast").validate()
    with pytest.raises(ValueError, match="compile must be one of auto, on, off"):
        compiling.check_mode("yes")


@pytest.mark.slow  # torch.compile: 3-16 s in a fresh clone, whose compile cache is cold
def test_compiled_runs_are_reproducible_from_the_seed():
    """Inductor draws its own random numbers, seeded from torch's generator: the same sweep
    compiled twice gives the same rows (apart from timing)."""
    sweep = Sweep(problem=["gaussian-cos"], estimator=["reinforce", "reparameterization"], replicates=500,
                  dim=[5], compile="on")
    keep = ("estimator", "parameter", "mean", "variance", "bias_z", "compiled")
    first, second = ([{k: r[k] for k in keep} for r in runner.run(sweep)] for _ in range(2))
    assert first == second and all(r["compiled"] for r in first)


def test_cell_engine_measures_again_with_new_draws():
    """CellEngine.measure() may be called again (the benchmarks do): each call draws R new
    estimates, so two calls give different means of the same gradient."""
    problem = get("gaussian-quadratic")
    s = GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=4)
    engine = runner.CellEngine(problem, estimators.get("reinforce-ema"), s, None, 2, 300,
                               Context(dtype=torch.float64, compile="off"))
    first, second = engine.measure(), engine.measure()
    assert first["mu"].n == second["mu"].n == 300
    assert not torch.equal(first["mu"].coords.mean, second["mu"].coords.mean)
    assert engine.timing.elapsed > 0 and not engine.timing.compiled


@pytest.mark.slow  # torch.compile: 3-16 s in a fresh clone, whose compile cache is cold
def test_vae_tanh_compiled_is_within_a_few_ulp_of_tanh():
    """The VAE's Tanh compiled on the CPU: 2 sigmoid(2x) - 1 in plain ops, fused by inductor, held to
    the bounds of the eager form (tests/test_vae.py: value < 10u, derivative < 48u, u = 2^-24)."""
    from benchmarks.problems.activations import Tanh

    u = 2.0**-24
    x = torch.cat([torch.linspace(-12, 12, 200_001), torch.tensor([0.0, 1e-30, -1e-30, 1e-6, 40.0, -40.0])])
    x = x.requires_grad_(True)
    compiled_act = torch.compile(Tanh(), dynamic=False)
    y = compiled_act(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    truth = torch.tanh(x.detach().double())
    assert (y.detach().double() - truth).abs().max().item() < 10 * u
    assert (g.double() - (1 - truth**2)).abs().max().item() < 48 * u
    # and it is not torch.tanh there (the bounds above are what the compiled form is held to)
    assert not torch.equal(y.detach(), torch.tanh(x.detach()))


@pytest.mark.slow
def test_compiled_discrete_cells_are_unbiased():
    """The discrete estimators' compiled path (issue 31): reinforce-loo and disarm on bernoulli-quadratic, compiled,
    against the closed-form gradient, in several chunks with an uneven last one (which runs eagerly); each chunk
    one graph, with no graph break."""
    from torch._dynamo.utils import counters

    from benchmarks.problems.discrete import BernoulliSetting

    counters.clear()
    problem = get("bernoulli-quadratic")
    s = BernoulliSetting(theta=(-1.0, 0.5, 2.0), t=0.45, dim=3)
    ctx = Context(dtype=torch.float64, compile="on")
    z = z_bound(n_assertions=2)
    orig = problem.chunk_size
    problem.chunk_size = lambda *_: 1000
    try:
        for name in ("reinforce-loo", "disarm"):
            torch.manual_seed(0)
            stats, timing = runner.estimate_cell(problem, estimators.get(name), s, None, 2, 3001, ctx)
            assert timing.compiled and timing.compile_s > 0, (name, timing)
            assert stats["theta"].n == 3001
            summary = stats["theta"].summary(problem.true_gradient(s, ctx)["theta"])
            assert summary.variance > 0 and abs(summary.bias_z) <= z, (name, summary)
    finally:
        problem.chunk_size = orig
    assert not counters["graph_break"], dict(counters["graph_break"])


@pytest.mark.slow
def test_estbench_perf_times_the_discrete_compiled_path():
    from benchmarks.perf import discrete_speeds

    (row,) = discrete_speeds(("disarm",), dim=10, repeats=1, budget_s=0.05, compile=True)
    assert "compile_failed" not in row, row["compile_failed"][:300]
    assert row["compiled_per_s"] > 0 and row["compile_s"] > 0 and row["compiled_speedup"] > 0


@pytest.mark.slow
def test_compiled_gumbel_rao_has_the_eager_distribution():
    """gumbel-rao's categorical point (conditional_softmax and the MeanRelaxation autograd Function) compiles, and
    its compiled cells agree with its eager ones in mean, coordinate by coordinate (two-sample z-tests); eager, its
    float32 uniforms come two per 64-bit word, compiled from the compiler's generator: the same distribution."""
    from benchmarks.problems.discrete import CategoricalSetting

    problem = get("categorical-quadratic")
    s = CategoricalSetting(theta=1.0, t=0.45, K=5, dim=2)
    est = estimators.get("gumbel-rao")
    cells = {}
    for mode in ("off", "on"):
        torch.manual_seed(1)
        stats, timing = runner.estimate_cell(problem, est, s, None, 1, 4000, Context(compile=mode))
        assert timing.compiled == (mode == "on"), timing.note
        cells[mode] = stats["theta"].coords
    eager, compiled = cells["off"], cells["on"]
    se = ((eager.var / eager.n + compiled.var / compiled.n) ** 0.5).double()
    z = ((eager.mean - compiled.mean).double() / se).abs()
    assert se.min() > 0 and z.max() <= z_bound(n_assertions=z.numel()), z
