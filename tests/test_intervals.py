"""The variance's standard error and 95% interval (benchmarks.stats, batch means): against brute-force
repetition, and their coverage of the exact variance over many independent cells."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import estimators
from benchmarks import problems, runner
from benchmarks.problems import Context, GaussianSetting
from benchmarks.stats import VARIANCE_BATCH, GradientStats, cell_batch

from .statutil import z_bound
from .test_statistics import quadratic_variances

CTX = Context(dtype=torch.float64)
QUAD = problems.get("gaussian-quadratic")


def cells(estimator: str, setting: GaussianSetting, group: str, n_cells: int, R: int, seed: int) -> torch.Tensor:
    """n_cells independent cells of R single-draw estimates each, [n_cells, R, 1] (one chunk, split)."""
    torch.manual_seed(seed)
    g = QUAD.chunk(estimators.get(estimator), setting, None, 1, n_cells * R, None, CTX).grads[group]
    return g.reshape(n_cells, R, -1)


def summaries(g: torch.Tensor, chunk: int, truth: torch.Tensor | None = None) -> list:
    """Each cell of ``g`` [n_cells, R, P] summarized (against ``truth`` [P] where given), fed in chunks with the
    runner's batches for that chunk (stats.cell_batch: VARIANCE_BATCH from chunks of 16 on)."""
    out = []
    for cell in g:
        stats = GradientStats(cell_batch(chunk))
        for part in cell.split(chunk):
            stats.update(part)
        out.append(stats.summary(truth))
    return out


def test_standard_error_matches_the_spread_over_repetitions():
    """Over 400 repetitions of a cell (R = 1024, correlated coordinates), the mean reported standard error
    equals the standard deviation of the variance estimates, within the sampling error of both."""
    torch.manual_seed(0)
    n_cells, R, P = 400, 1024, 5
    mix = torch.randn(P, P, dtype=torch.float64)
    g = torch.randn(n_cells, R, P, dtype=torch.float64) @ mix  # coordinates correlated through mix
    s = summaries(g, chunk=256)
    v = torch.tensor([x.variance for x in s])
    se = torch.tensor([x.variance_se for x in s])
    spread = v.std().item()
    # the spread's own relative error ~ 1/sqrt(2 (n - 1)); batch means are conservative by at most
    # sqrt(m / (m - 1)) for normal estimates (m = 16: 3%)
    rel = z_bound(n_assertions=2) / math.sqrt(2 * (n_cells - 1))
    assert spread * (1 - rel) <= se.mean().item() <= spread * (1 + rel) * math.sqrt(16 / 15), (spread, se.mean())
    # and the pooled variance is unbiased for the exact one, trace(mix^T mix) / P
    exact = (mix.T @ mix).diagonal().mean().item()
    assert abs(v.mean().item() - exact) <= z_bound(n_assertions=2) * spread / math.sqrt(n_cells)


def test_exact_zero_variance_has_a_zero_interval_and_too_few_batches_none():
    stats = GradientStats()
    stats.update(torch.ones(64, 3))
    s = stats.summary(None)
    assert (s.variance, s.variance_se, s.variance_lo, s.variance_hi) == (0.0, 0.0, 0.0, 0.0)
    few = GradientStats()
    few.update(torch.randn(VARIANCE_BATCH + 3, 2))  # one whole batch: no spread to measure
    assert math.isnan(few.summary(None).variance_se)


#: measured: at R = 1000 the interval of a score-function estimate whose tail is heavy (sigma eps^3 at
#: mu = k) holds the exact variance in 90-91% of cells (two runs of 1000 cells, the t quantile of the
#: batches): too few replicates see the rare large estimates that set the variance, so the estimate and its
#: standard error are both low together. Larger batches or a kurtosis-based error did not do better.
#: At mu - k = -3, sigma 0.7 the t quantile brought it to 93-96% (1000 cells each, two seeds).
UNDERCOVERS = pytest.mark.xfail(strict=True, reason="batch-means interval undercovers a heavy tail at R = 1000 "
                                "(90-91% measured); an open part of the uncertainty issue")
COVERAGE = [
    # (estimator, mu, k, sigma, gradient): the pathwise one, the score function near and far from k
    ("reparameterization", 0.0, 0.0, 1.0, "mu"),
    ("reparameterization", 0.5, 0.0, 0.7, "sigma"),
    pytest.param("reinforce", 0.0, 0.0, 1.0, "mu", marks=UNDERCOVERS),
    ("reinforce", 2.5, 0.0, 1.0, "mu"),  # |mu - k| >= 2
    ("reinforce", 0.0, 3.0, 0.7, "mu"),  # |mu - k| >= 2
]


@pytest.mark.parametrize("estimator,mu,k,sigma,group", COVERAGE)
def test_the_95_percent_interval_covers_the_exact_variance(estimator, mu, k, sigma, group):
    """400 independent cells of R = 1000 (chunks of 250, as a runner would cut them): the fraction whose
    interval holds the exact variance (closed form, tests/test_statistics.py) is 95% within a
    binomial bound (Bonferroni over the cases)."""
    n_cells, R = 400, 1000
    exact = quadratic_variances(mu - k, sigma, 1, 1)[estimator][group]
    s = summaries(cells(estimator, GaussianSetting(mu, sigma, k, 1), group, n_cells, R, seed=11), chunk=250)
    hits = sum(x.variance_lo <= exact <= x.variance_hi for x in s)
    bound = z_bound(n_assertions=len(COVERAGE)) * math.sqrt(n_cells * 0.95 * 0.05)
    assert abs(hits - 0.95 * n_cells) <= bound, (estimator, group, hits / n_cells)


def test_a_cell_of_few_estimates_has_batches_and_its_interval_covers_at_the_nominal_rate():
    """A cell of R = 50 in chunks of 10 (the runner's plan for R = 50: the quick report's VAE cells) has batches of
    8 (stats.cell_batch), so an interval; for normal estimates it holds the exact variance in 95% of 400 cells
    within the binomial bound (the interval takes the t quantile of its 5 batches), and the runner's own cell
    of R = 50 reports one."""
    n_cells, R, chunk = 400, 50, 10
    assert cell_batch(chunk) == 8 and cell_batch(16) == VARIANCE_BATCH and cell_batch(1) == 2
    exact = quadratic_variances(0.0, 1.0, 1, 1)["reparameterization"]["mu"]
    s = summaries(cells("reparameterization", GaussianSetting(0.0, 1.0, 0.0, 1), "mu", n_cells, R, seed=5), chunk)
    hits = sum(x.variance_lo <= exact <= x.variance_hi for x in s)
    assert abs(hits - 0.95 * n_cells) <= z_bound(n_assertions=1) * math.sqrt(n_cells * 0.95 * 0.05), hits / n_cells
    stats, _ = runner.estimate_cell(QUAD, estimators.get("reinforce"), GaussianSetting(0.5, 1.0, 0.0, 3), None, 4,
                                    R, CTX)
    summary = stats["mu"].summary(None)
    assert 0 < summary.variance_lo < summary.variance < summary.variance_hi < math.inf


def test_a_variance_zero_up_to_rounding_is_reported_as_exactly_zero_with_the_reason():
    """measure-valued's mu-gradient of the quadratic at mu = k: every estimate is the true gradient 0, up to
    float32 rounding of terms of size ~1 (standard deviation ~4e-8). It is reported as exactly 0, with its
    reason; a small but real variance (reinforce-ema on the Bernoulli toy, ~1e-7 at mean 0.025: standard
    deviation ~4e-4, far above 64 ulps of 0.025 = 1e-7) is not."""
    import estbench

    df = estbench.run(["gaussian-quadratic", "bernoulli-quadratic"], ["measure-valued", "reinforce-ema"], mu=[1.0],
                      k=[1.0], theta=[0.0], t=[0.45], replicates=400, seed=0)
    ok = df[df["status"] == "ok"].set_index(["estimator", "parameter"])
    mv = ok.loc[("measure-valued", "mu")]
    assert (mv["variance"], mv["total_variance"], mv["variance_lo"], mv["variance_hi"]) == (0, 0, 0, 0)
    assert mv["variance_note"].startswith("zero up to rounding") and "largest standard deviation" in mv["variance_note"]
    assert ok.loc[("measure-valued", "sigma"), "variance"] > 0.5  # its sigma-gradient is a real estimator
    ema = ok.loc[("reinforce-ema", "theta")]
    assert 0 < ema["variance"] < 1e-5 and pd.isna(ema["variance_note"])


def test_precision_draws_each_cell_until_its_variance_is_that_precise():
    """--precision 0.1: each cell stops at the first chunk after 400 estimates where every parameter's
    variance has relative standard error <= 0.1, or at --replicates; the rows record the R used. The
    pathwise estimator's light tail stops early; the score function far from k needs far more."""
    import estbench
    from benchmarks.engine import PRECISION_MIN_REPLICATES

    df = estbench.run("gaussian-quadratic", ["reparameterization", "reinforce"], mu=[1.0, 3.5], precision=0.1,
                      replicates=20_000, seed=0)
    assert (df["status"] == "ok").all() and (df["precision"] == 0.1).all() and (df["replicates"] == 20_000).all()
    used = df["replicates_used"]
    assert used.between(PRECISION_MIN_REPLICATES, 20_000).all()
    stopped = df[used < 20_000]
    assert (stopped["variance_se"] <= 0.1 * stopped["variance"]).all()
    r = df.groupby(["estimator", "mu"])["replicates_used"].first()
    assert r[("reparameterization", 3.5)] < r[("reinforce", 3.5)] / 3, r


@pytest.mark.slow
def test_the_stopping_rule_leaves_the_pathwise_variance_unbiased():
    """A sequential rule can bias the variance it stops on. For the pathwise mu-gradient of the quadratic
    (exact variance 4 sigma^2 = 4), the mean over 100 cells of variance / exact is 1 within its own
    sampling error (tools/precision_bias.py measures this and the score function's -0.5% to -1.1%)."""
    from benchmarks.engine import PRECISION_MIN_REPLICATES, CellEngine

    ctx = Context(dtype=torch.float64, precision=0.1)
    ratios = []
    for i in range(100):
        torch.manual_seed(i)
        engine = CellEngine(QUAD, estimators.get("reparameterization"), GaussianSetting(0.0, 1.0, 0.0, 1), None, 1,
                            20_000, ctx)
        ratios.append(engine.measure(0.1, PRECISION_MIN_REPLICATES)["mu"].summary(None).variance / 4.0)
    r = torch.tensor(ratios, dtype=torch.float64)
    assert abs(r.mean().item() - 1) <= z_bound(n_assertions=1) * r.std().item() / math.sqrt(len(r)), r.mean()


@pytest.mark.parametrize("shared", [0.0, 3.0])
def test_the_snr_interval_covers_the_true_snr_at_its_nominal_rate(shared):
    """The SNR's 95% interval (delete-a-group jackknife over batches, t quantile) holds the true coordinate-
    averaged SNR 0.5 in about 95% of 400 independent cells (R = 480, in chunks of 100), whether the five
    coordinates are nearly independent or share a common factor (``shared``: a per-coordinate formula
    would undercover the second)."""
    torch.manual_seed(1)
    n_cells, R, P = 400, 480, 5
    mix = torch.eye(P, dtype=torch.float64) + shared * torch.ones(P, P, dtype=torch.float64) / P
    std = (mix.T @ mix).diagonal().sqrt()
    true_mean = 0.5 * std * torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    g = torch.randn(n_cells, R, P, dtype=torch.float64) @ mix + true_mean
    s = summaries(g, chunk=100)
    covered = sum(x.snr_lo <= 0.5 <= x.snr_hi for x in s) / n_cells
    # binomial spread of the coverage of 400 cells around 0.95, at the suite's false-failure rate
    assert abs(covered - 0.95) <= z_bound(n_assertions=2) * math.sqrt(0.95 * 0.05 / n_cells), covered


@pytest.mark.parametrize("shared, bias", [(0.0, 0.0), (3.0, 0.0), (3.0, 0.4), (0.0, 1.5)])
def test_the_mse_interval_covers_the_true_mse_at_its_nominal_rate(shared, bias):
    """The MSE's 95% interval (delete-a-group jackknife, t quantile, log scale) holds the true per-estimate MSE,
    the coordinate average of variance + bias^2, in about 95% of 400 independent cells (R = 480, in chunks of
    100): unbiased or biased (``bias`` standard deviations per coordinate: at 1.5 the bias makes most of the
    MSE), the five coordinates nearly independent or sharing a common factor (``shared``)."""
    torch.manual_seed(2)
    n_cells, R, P = 400, 480, 5
    mix = torch.eye(P, dtype=torch.float64) + shared * torch.ones(P, P, dtype=torch.float64) / P
    cov = mix.T @ mix
    offset = bias * cov.diagonal().sqrt() * torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    truth = torch.linspace(-1, 1, P, dtype=torch.float64)
    g = torch.randn(n_cells, R, P, dtype=torch.float64) @ mix + truth + offset
    true_mse = (cov.diagonal() + offset.square()).mean().item()
    s = summaries(g, chunk=100, truth=truth)
    assert all(x.mse_lo < x.mse < x.mse_hi for x in s)
    covered = sum(x.mse_lo <= true_mse <= x.mse_hi for x in s) / n_cells
    # binomial spread of the coverage of 400 cells around 0.95, at the suite's false-failure rate
    assert abs(covered - 0.95) <= z_bound(n_assertions=4) * math.sqrt(0.95 * 0.05 / n_cells), covered


def test_an_mse_of_zero_has_a_zero_interval_and_too_few_batches_none():
    """All estimates equal to the truth: MSE 0 with the interval [0, 0]; fewer than two jackknife groups of
    batches (R = 16, one batch): no interval."""
    truth = torch.tensor([1.0, -2.0], dtype=torch.float64)
    stats = GradientStats()
    stats.update(truth.expand(64, 2).clone())
    s = stats.summary(truth)
    assert (s.mse, s.mse_lo, s.mse_hi) == (0.0, 0.0, 0.0)
    stats = GradientStats()
    stats.update(torch.randn(VARIANCE_BATCH, 2, dtype=torch.float64))
    s = stats.summary(truth)
    assert s.mse > 0 and math.isnan(s.mse_lo) and math.isnan(s.mse_hi)


def test_an_mse_of_estimates_equal_up_to_rounding_has_a_finite_interval():
    """Estimates of a gradient 0 that differ only by rounding (sd 4e-8: measure-valued's mu-gradient of the
    quadratic at mu = k in float32), the variance reported as 0: the MSE is the squared error of the mean, about
    var / R, and its interval is that of the squared error (the jackknife of variance + error^2 had a standard
    error about R / 10 times that MSE, and exp overflowed)."""
    torch.manual_seed(3)
    truth = torch.zeros(4, dtype=torch.float64)
    stats = GradientStats()
    for _ in range(4):
        stats.update(4e-8 * torch.randn(1000, 4, dtype=torch.float64))
    s = stats.summary(truth, zero_below=1e-7)
    assert s.variance == 0 and s.variance_note
    assert s.mse == pytest.approx((stats.coords.mean - truth).square().mean().item(), rel=1e-12)
    assert 0 < s.mse_lo <= s.mse <= s.mse_hi < 100 * s.mse
