"""The delete-a-group jackknife over batches of estimates: the standard error of any statistic of the
per-coordinate mean and variance (the SNR's and the MSE's intervals in benchmarks.stats), whatever the
correlation between the coordinates of one estimate."""

from __future__ import annotations

import math

import torch

#: groups of the SNR's delete-a-group jackknife: batch i of a cell's batches joins group i mod this
JACKKNIFE_GROUPS = 10
#: two-sided 95% quantiles of Student's t with 1..JACKKNIFE_GROUPS - 1 degrees of freedom
T95 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622)


class BatchGroups:
    """Per-coordinate (count, mean, M2) of JACKKNIFE_GROUPS groups of whole batches, in float64
    ([G], [G, P], [G, P]; memory independent of R): batch i (counted over the whole cell) joins
    group i mod G. From these, ``jackknife`` gives the standard error of any statistic of the
    per-coordinate mean and variance, whatever the correlation between coordinates."""

    def __init__(self, batch: int, groups: int = JACKKNIFE_GROUPS) -> None:
        self.batch = batch  # estimates per batch
        self.groups = groups
        self.batches = 0
        self.n: torch.Tensor | None = None
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, batch_mean: torch.Tensor, batch_m2: torch.Tensor) -> None:
        """Merge whole batches' per-coordinate means and M2s [b, P] (Chan et al., per group)."""
        b, size = batch_mean.shape[0], float(self.batch)
        if not b:
            return
        start = self.batches % self.groups
        self.batches += b
        if self.n is not None and b <= self.groups:  # each batch joins its own group: Chan's update of those rows
            first = min(b, self.groups - start)  # the rows from start on, then those from group 0 (contiguous views)
            self._update_rows(slice(start, start + first), batch_mean[:first], batch_m2[:first])
            if first < b:
                self._update_rows(slice(0, b - first), batch_mean[first:], batch_m2[first:])
            return
        # the batches on a grid of G columns, batch j in column (start + j) mod G, the slots before the first and
        # after the last empty (weight 0): each group's count, mean and M2 by plain sums over the grid's rows
        g, p = self.groups, batch_mean.shape[1]
        rows = -(-(start + b) // g)
        pad = (0, 0, start, rows * g - start - b)
        weight = batch_mean.new_zeros(rows * g)
        weight[start:start + b] = 1.0
        weight = weight.view(rows, g, 1)
        per = weight.sum(0)  # batches per group [G, 1]
        grid = torch.nn.functional.pad(batch_mean, pad).view(rows, g, p)
        mean = grid.sum(0) / per.clamp(min=1)
        dev = (grid - mean).mul_(weight)
        m2 = torch.nn.functional.pad(batch_m2, pad).view(rows, g, p).sum(0) + dev.mul_(dev).sum(0) * size
        n = per[:, 0] * size
        if self.n is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        share = torch.where(total > 0, n / total.clamp(min=1), 0.0)[:, None]
        delta = mean - self.mean
        self.mean = self.mean + delta * share
        self.m2 = self.m2 + m2 + delta.square() * (self.n * share[:, 0])[:, None]
        self.n = total

    def _update_rows(self, rows: slice, batch_mean: torch.Tensor, batch_m2: torch.Tensor) -> None:
        """Chan's update of groups ``rows`` (a slice), each with one batch: in place, on views of [b, P]."""
        n_a, size = self.n[rows], float(self.batch)
        delta = batch_mean - self.mean[rows]
        self.mean[rows].addcmul_(delta, (size / (n_a + size))[:, None])
        self.m2[rows].add_(batch_m2).addcmul_(delta, delta * (n_a * size / (n_a + size))[:, None])
        self.n[rows] = n_a + size

    def jackknife(self, statistic) -> tuple[float, int]:
        """(standard error, degrees of freedom) of ``statistic(mean [.., P], variance [.., P]) -> [..]`` by the
        delete-a-group jackknife over the groups that hold estimates; (NaN, 0) with fewer than two."""
        if self.n is None:
            return math.nan, 0
        full = self.n > 0
        n, mean, m2 = self.n[full], self.mean[full], self.m2[full]
        g = int(n.shape[0])
        if g < 2:
            return math.nan, 0
        total = n.sum()
        mean_t = (n[:, None] * mean).sum(0) / total
        m2_t = m2.sum(0) + (n[:, None] * (mean - mean_t).square()).sum(0)
        rest = total - n  # [G]
        mean_r = (total * mean_t - n[:, None] * mean) / rest[:, None]
        m2_r = (m2_t - m2 - (n * rest / total)[:, None] * (mean - mean_r).square()).clamp(min=0)
        values = statistic(mean_r, m2_r / (rest[:, None] - 1))  # [G]
        return math.sqrt((g - 1) / g * (values - values.mean()).square().sum().item()), g - 1
