"""Streaming statistics of gradient estimates, in constant memory.

Replicates arrive a chunk at a time as [r, P] tensors. Per coordinate we keep
the count, mean and sum of squared deviations (M2) in float64 and merge chunks
with the numerically stable pairwise update of Chan, Golub & LeVeque (1979):

    n = n_a + n_b,  delta = mean_b - mean_a
    mean = mean_a + delta * n_b / n
    M2   = M2_a + M2_b + delta^2 * n_a * n_b / n

The same is kept for the coordinate average of each replicate, which gives an
exact standard error for the coordinate-averaged bias even when coordinates
of one estimate are correlated.

**The variance's standard error: batch means.** The reported variance is the
coordinate average of the per-coordinate unbiased variances over all R
estimates. Coordinates of one estimate are correlated (a VAE's thousands of
encoder coordinates share each draw), so the standard error cannot come from
per-coordinate fourth moments alone. Instead each chunk is cut into batches of
``VARIANCE_BATCH`` consecutive estimates; each batch gives its own
coordinate-averaged unbiased variance V_b, independent of the other batches'
and with mean the true variance, whatever the correlation between coordinates.
The running mean and M2 of the V_b (three numbers, memory independent of R)
give SE = sd(V_b) / sqrt(B) over the B batches: the standard error of the mean
of the batch variances. It is slightly larger than the pooled estimate's own
(for normal estimates by sqrt(m / (m - 1)), 3% at m = 16; for heavy tails the
two agree), so the interval errs on the wide side. The 95% interval is taken on
the log scale, variance x exp(+-t SE / variance), t the 95% quantile of Student's t
with B - 1 degrees of freedom (``t95``), which stays positive and follows the right
skew of a variance estimate (the coverage tests in tests/test_intervals.py measure it,
heavy-tailed cells and a cell of 50 estimates included). A cell whose chunks are
smaller than VARIANCE_BATCH has smaller batches (``cell_batch``: 8 for chunks of 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .jackknife import T95, BatchGroups


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, M2) over dim 0 of ``x`` [r, *P], in float64: two passes, exact.

    A pure function of one chunk, so that torch.compile can fuse it with the
    computation of the estimates (torch.var_mean over dim 0 measured 2-5x slower).
    """
    x = x.detach().to(dtype=torch.float64)  # no copy if it already is
    mean = x.mean(0)
    return mean, (x - mean).square().sum(0)


#: estimates per batch of the variance's standard error (batch means, see the module docstring)
VARIANCE_BATCH = 16
#: the two-sided 95% normal quantile of the intervals
Z95 = 1.959963984540054


def cell_batch(chunk: int) -> int:
    """Estimates per batch of a cell whose chunks hold ``chunk`` estimates (all but perhaps a shorter last one):
    VARIANCE_BATCH, or for smaller chunks the largest power of two within one (at least 2), so that a cell
    of few estimates (the quick report's VAE cells, R = 50 in chunks of 10) still has batches, and an interval.
    A batch of m normal estimates makes the standard error larger than the pooled estimate's own by about
    sqrt(m / (m - 1)): 3% at 16, 7% at 8 (the interval errs on the wide side)."""
    if chunk >= VARIANCE_BATCH:
        return VARIANCE_BATCH
    return max(2, 1 << (max(chunk, 2).bit_length() - 1))


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` >= 1 degrees of freedom: the table to 9, then the
    Cornish-Fisher expansion about the normal quantile (within 2e-4 of the exact quantile from df = 10 on)."""
    if df <= len(T95):
        return T95[df - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2) + \
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)


def _batch_sums(x: torch.Tensor) -> torch.Tensor:
    """Sums over dim 1 of ``x`` [b, m, P] (m a power of two) by halves (a pairwise tree), in its own dtype: exact
    where a batch's values are equal (each level doubles them), and within log2(m) roundings elsewhere
    (torch's own sum over that dimension adds one row after another)."""
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        x = x[:, :half] + x[:, half:]
    return x[:, 0]


def chunk_moments(g: torch.Tensor, batch: int = VARIANCE_BATCH) -> tuple[torch.Tensor, ...]:
    """Everything GradientStats needs from one chunk of estimates [r, P]: (mean, M2) of the coordinate average of
    each replicate; (mean, M2) of the coordinate-averaged variances of the chunk's b = r // batch whole batches of
    ``batch`` (a power of two; zeros when it has none, which the merge then skips); those batches'
    per-coordinate means and M2s [b, P]; and where rows follow the last whole batch, their per-coordinate
    (mean, M2) [P]. The per-coordinate mean and M2 of all the estimates are the batches' and those rows' merged
    (GradientStats.coords), once, when asked for, rather than a chunk at a time.

    The passes over the chunk run in its own dtype: each batch's mean (summed by halves), the squared
    deviations from it (one fused pass, mse_loss) and their sum, and each replicate's coordinate sum; what they
    give, [b, P] and [r], is float64 from there on. Estimates that are all equal keep a mean of exactly their
    value and an M2 of exactly 0. In float32 a batch's M2 is that of the same values in float64 within
    about 16 x 2^-24 relatively, plus 16 times the squared rounding of the batch mean (a few 2^-24 of
    the values' magnitude), which matters only where a coordinate's standard deviation is below about
    1e-4 of its mean, and even there is far below a variance's statistical error (tests hold both
    bounds). In float64 the chunk was copied and reduced in five passes: statistics took 1.5-3x the
    estimates' own time at dim 100 and 10,000 (docs/performance.md)."""
    g = g.detach()
    r, p = g.shape
    b = r // batch
    avg = moments((g.sum(1) / p).to(torch.float64))  # of each replicate's coordinate average
    if not b:
        zeros = g.new_zeros((), dtype=torch.float64)
        empty = g.new_zeros((0, p), dtype=torch.float64)
        return (*avg, zeros, zeros, empty, empty, *moments(g))
    x = g[: b * batch].reshape(b, batch, p)
    mean_own = _batch_sums(x) / batch  # [b, P], the chunk's dtype
    squares = torch.nn.functional.mse_loss(x, mean_own[:, None].expand_as(x), reduction="none")
    batch_m2 = squares.sum(1).to(torch.float64)  # [b, P]
    batches = moments(batch_m2.mean(-1) / (batch - 1))  # of the batches' variances [b]
    out = (*avg, *batches, mean_own.to(torch.float64), batch_m2)
    return (*out, *moments(g[b * batch:])) if r > b * batch else out  # with the rows after the last whole batch


class Moments:
    """Running mean and M2 of rows of shape [P] (or scalars with P = ())."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:  # x: [r, *P]
        if x.shape[0] == 0:
            return
        self.merge(x.shape[0], *moments(x))

    def merge(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        """Merge the (count, mean, M2) of another set of rows (Chan et al.), in place (its own copies of the
        first rows' mean and M2)."""
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b.clone(), m2_b.clone()
            return
        share = n_b / (self.n + n_b)
        delta = mean_b - self.mean
        self.mean.add_(delta, alpha=share)
        self.m2.add_(m2_b).addcmul_(delta, delta, value=self.n * share)
        self.n += n_b

    @property
    def var(self) -> torch.Tensor:
        """Unbiased per-coordinate variance."""
        assert self.m2 is not None and self.n >= 2
        return self.m2 / (self.n - 1)


def mean_snr(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """The coordinate average of |mean| / standard deviation over the last dimension (a coordinate with
    zero variance counts 0 if its mean is 0, else inf)."""
    std = var.sqrt()
    return torch.where(std > 0, mean.abs() / std, torch.where(mean == 0, 0.0, math.inf)).mean(-1)


class GradientStats:
    """Statistics of one parameter group's gradient estimates. Per coordinate, they are held by jackknife group of
    whole batches (BatchGroups) and, apart, for the rows of each chunk after its last whole batch; the
    per-coordinate mean and M2 of all the estimates (``coords``) are these merged when asked for."""

    def __init__(self, batch: int = VARIANCE_BATCH) -> None:
        self.batch = batch  # estimates per batch (cell_batch): chunk_moments must be given the same
        self.avg = Moments()  # coordinate average of each replicate, scalar
        self.batches = Moments()  # coordinate-averaged variance of each batch of ``batch``, scalar
        self.groups = BatchGroups(batch)  # per coordinate, of each jackknife group of batches: the SNR's interval
        self.rest = Moments()  # per coordinate, of the rows after each chunk's last whole batch
        self._coords: Moments | None = None

    def update(self, g: torch.Tensor) -> None:  # g: [r, P]
        if g.shape[0]:
            self.merge(g.shape[0], chunk_moments(g, self.batch))

    def merge(self, r: int, chunk: tuple[torch.Tensor, ...]) -> None:
        """Merge the chunk_moments(..., self.batch) of r estimates."""
        self._coords = None
        self.avg.merge(r, chunk[0], chunk[1])
        if r // self.batch:
            self.batches.merge(r // self.batch, chunk[2], chunk[3])
            self.groups.add(chunk[4], chunk[5])
        if r % self.batch:
            self.rest.merge(r % self.batch, chunk[6], chunk[7])

    @property
    def coords(self) -> Moments:
        """Per coordinate [P], of all the estimates so far: the batches' groups and the other rows merged."""
        if self._coords is None:
            self._coords = Moments()
            if self.groups.batches:
                self._coords.merge(self.groups.batches * self.batch, *self.groups.total())
            if self.rest.mean is not None:
                self._coords.merge(self.rest.n, self.rest.mean, self.rest.m2)
        return self._coords

    def finite(self) -> bool:
        """Whether every estimate so far was finite. One NaN or inf in a coordinate makes that replicate's
        coordinate sum, and so the running mean of the coordinate averages, non-finite: a check of one number.
        That sum, in the estimates' dtype, may also overflow where no coordinate does; then the per-coordinate
        means decide."""
        mean = self.avg.mean
        return mean is None or bool(torch.isfinite(mean)) or bool(torch.isfinite(self.coords.mean).all())

    @property
    def n(self) -> int:
        return self.avg.n  # every estimate's coordinate average is in it

    def variance_interval(self, variance: float) -> tuple[float, float, float]:
        """(standard error, 95% low, 95% high) of the coordinate-averaged variance, by batch means
        (module docstring); NaN with fewer than two batches. A variance of exactly 0 has the
        interval [0, 0]."""
        if variance == 0:
            return 0.0, 0.0, 0.0
        if self.batches.n < 2:
            return math.nan, math.nan, math.nan
        se = math.sqrt(self.batches.var.item() / self.batches.n)
        spread = math.exp(t95(self.batches.n - 1) * se / variance)
        return se, variance / spread, variance * spread

    def snr_interval(self, snr: float) -> tuple[float, float]:
        """95% interval of the SNR (the coordinate average of |mean| / sd): snr +- t SE, the standard error
        by the delete-a-group jackknife over BatchGroups (its t quantile with groups - 1 degrees of
        freedom), clipped at 0; NaN with fewer than two groups. It covers the SNR's sampling spread, not its
        upward bias where the true mean is within noise of 0 (E|mean| / sd = sqrt(2 / (pi R)) at mean 0)."""
        se, df = self.groups.jackknife(mean_snr)
        if not df or not math.isfinite(se):
            return math.nan, math.nan
        half = t95(df) * se
        return max(0.0, snr - half), snr + half

    def mse_interval(self, mse: float, truth: torch.Tensor, zero_variance: bool = False) -> tuple[float, float]:
        """95% interval of the MSE against the exact gradient ``truth`` [P] (the coordinate average of
        var_c (R - 1) / R + (mean_c - truth_c)^2): mse x exp(+-t SE / mse), on the log scale as the variance's,
        the standard error that of the coordinate average of var_c + (mean_c - truth_c)^2 by the
        delete-a-group jackknife over BatchGroups (t with groups - 1 degrees of freedom): whatever the
        correlation between coordinates, and whether variance or bias makes most of it. With ``zero_variance``
        (the variance reported as 0, its estimates equal up to rounding) the statistic is the squared error of
        the mean alone, as the MSE then is. [0, 0] for an MSE of exactly 0; NaN with fewer than two groups."""
        if mse == 0:
            return 0.0, 0.0
        se, df = self.groups.jackknife(lambda mean, var: ((0 if zero_variance else var) + (mean - truth.to(mean)).square())
                                       .mean(-1))
        if not df or not math.isfinite(se):
            return math.nan, math.nan
        spread = math.exp(min(t95(df) * se / mse, 700.0))  # beyond, exp overflows: the interval is [0, inf)
        return mse / spread, mse * spread

    def summary(self, truth: torch.Tensor | None, zero_below: float = 0.0,
                truth_se: torch.Tensor | None = None, value_scale: float | None = None) -> Summary:
        """Reduce to the result-table numbers; ``truth`` is [P] or None; ``truth_se`` [P] its standard
        error where it is a Monte Carlo reference (the bias z counts the mean of it, an upper bound of
        the standard error of the reference's coordinate average). Where every coordinate's
        standard deviation is at most ``zero_below`` (the rounding of the dtype at the gradient's
        scale: zero_variance_threshold), the estimates are equal up to rounding and the variance
        is reported as exactly 0, with the reason in ``variance_note``."""
        n = self.n
        mean_c = self.coords.mean.cpu()
        var_c = self.coords.var.cpu()
        note = ""
        largest = var_c.max().sqrt().item()
        if 0 < largest <= zero_below:
            note = (f"zero up to rounding: every estimate equals the others within rounding (largest standard "
                    f"deviation {largest:.2g}, below {zero_below:.2g}, 64 ulps at the gradient's scale)")
            var_c = torch.zeros_like(var_c)
        mean = mean_c.mean().item()
        variance = var_c.mean().item()
        out = Summary(
            n=n,
            mean=mean,
            variance=variance,
            total_variance=var_c.sum().item(),
            snr=mean_snr(mean_c, var_c).item(),
            variance_note=note,
        )
        if math.isfinite(out.snr) and not note:
            out.snr_lo, out.snr_hi = self.snr_interval(out.snr)
        out.variance_se, out.variance_lo, out.variance_hi = self.variance_interval(variance)
        if truth is not None:
            truth = truth.to(torch.float64).cpu()
            err_c = mean_c - truth
            out.true_grad = truth.mean().item()
            out.bias = err_c.mean().item()
            se = math.sqrt(self.avg.var.item() / n)
            # an estimator that is exact up to float32 rounding (64 ulp of the largest |truth|) is not
            # flagged for that rounding, whether its estimates are all equal (se = 0) or differ by rounding
            rounding = truth_rounding(truth, value_scale)
            if truth_se is not None:  # a reference with its own error: as if more spread in the estimates
                se = math.sqrt(se * se + truth_se.to(torch.float64).cpu().mean().item() ** 2)
            if se > 0:
                out.bias_z = out.bias / math.sqrt(se * se + rounding * rounding)
            elif value_scale and abs(out.bias) > rounding:
                # every estimate the same but not the truth: an outcome of probability below about 3/R is likely
                # never drawn in R estimates, and its share of the mean is up to 3 |f| / R: counted as an error
                unseen = 3 * value_scale / n
                out.bias_z = out.bias / math.hypot(unseen, rounding)
                out.variance_note = "; ".join(filter(None, [out.variance_note, (
                    f"every estimate equal: an outcome of probability below 3/R may never have been drawn, so the "
                    f"bias z counts 3 x |f| / R = {unseen:.2g} as its error")]))
            else:  # every estimate the same: exact if within rounding of the truth, else biased
                out.bias_z = 0.0 if abs(out.bias) <= rounding else math.copysign(math.inf, out.bias)
            out.mse = (var_c * ((n - 1) / n) + err_c**2).mean().item()
            if truth_se is None:  # against a Monte Carlo reference, its own error would belong in the interval
                out.mse_lo, out.mse_hi = self.mse_interval(out.mse, truth, zero_variance=bool(note))
        return out


#: a variance is zero up to rounding where every coordinate's standard deviation is within this many
#: units of roundoff of the gradient's scale (as the bias z's rounding floor)
ROUNDING_ULPS = 64


def zero_variance_threshold(scale: float, dtype: torch.dtype) -> float:
    """ROUNDING_ULPS units of roundoff of ``dtype`` at ``scale``: the bias z's rounding floor (float32, at the
    largest |truth|), and the standard deviation below which estimates count as equal up to rounding, at the
    gradient's magnitude (the largest |exact gradient| over the cell's parameter groups, or the largest |mean
    estimate| where no exact gradient is known). An estimator
    whose every estimate is the true gradient (measure-valued's mu-gradient of the quadratic at mu = k:
    terms of size ~1 cancel to 0, leaving standard deviation ~4e-8 in float32) is then reported exact."""
    return ROUNDING_ULPS * torch.finfo(dtype).eps / 2 * max(scale, torch.finfo(dtype).tiny)


def truth_rounding(truth: torch.Tensor, value_scale: float | None = None) -> float:
    """The bias z's rounding floor against ``truth``: 64 float32 ulps of its largest |coordinate| (the
    estimates' rounding), and at least 64 float64 ulps at unit scale (the truth's own: a closed form or
    quadrature summed in float64 from terms of order one, as gaussian-iwae's at a = mu, sigma = 1, where the
    exact gradient 0 comes out as 1e-17 and dreg's estimates are exactly 0). ``value_scale``: the magnitude of
    f's values (Problem.value_scale), where the gradient is a small difference of them (a saturated logit: at
    theta 30, sigmoid is 1 in float32 and every estimate 0 against a truth of 9e-15): 64 ulps of it instead."""
    return max(zero_variance_threshold(max(truth.abs().max().item(), value_scale or 0.0), torch.float32),
               zero_variance_threshold(1.0, torch.float64))


def coordinate_z(stats: GradientStats, truth: torch.Tensor, truth_se: torch.Tensor | None = None,
                 value_scale: float | None = None) -> float:
    """Largest |z| over coordinates between the mean estimate and the exact gradient ``truth`` [P]:
    |mean_c - truth_c| / sqrt(var_c / n + rounding^2). ``rounding`` (64 float32 ulps of the largest
    |truth_c|) lets an estimator with zero variance that equals the truth up to float32 rounding
    (``exact``) score 0 rather than infinity, as in ``summary``. ``truth_se`` [P]: the standard error of a
    Monte Carlo reference, added in quadrature."""
    truth = truth.to(torch.float64).cpu()
    diff = (stats.coords.mean.cpu() - truth).abs()
    rounding = truth_rounding(truth, value_scale)
    own = 0.0 if truth_se is None else truth_se.to(torch.float64).cpu() ** 2
    se = (stats.coords.var.cpu() / stats.n + own + rounding**2).sqrt()
    return (diff / se).max().item()


@dataclass
class Summary:
    n: int
    mean: float
    variance: float
    total_variance: float
    snr: float
    snr_lo: float = math.nan
    snr_hi: float = math.nan
    variance_se: float = math.nan
    variance_lo: float = math.nan
    variance_hi: float = math.nan
    variance_note: str = ""
    true_grad: float = math.nan
    bias: float = math.nan
    bias_z: float = math.nan
    mse: float = math.nan
    mse_lo: float = math.nan
    mse_hi: float = math.nan
