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
        """Merge whole batches' per-coordinate means and M2s [b, P] (Chan et al., per group). The batches that
        finish the groups' current round and those that start the last one join their groups one each, in
        place; the whole rounds between, a grid of G columns, join by plain sums over the grid's rows."""
        b, g = batch_mean.shape[0], self.groups
        if not b:
            return
        if self.n is None:
            self.n = batch_mean.new_zeros(g)
            self.mean = batch_mean.new_zeros(g, batch_mean.shape[1])
            self.m2 = torch.zeros_like(self.mean)
        start = self.batches % g
        self.batches += b
        head = min(b, (g - start) % g)  # to the end of the current round: groups start .. start + head - 1
        if head:
            self._update_rows(slice(start, start + head), batch_mean[:head], batch_m2[:head])
        rounds = (b - head) // g
        whole = slice(head, head + rounds * g)
        if rounds == 1:  # one batch a group
            self._update_rows(slice(0, g), batch_mean[whole], batch_m2[whole])
        elif rounds:
            self._merge_rounds(batch_mean[whole].view(rounds, g, -1), batch_m2[whole].view(rounds, g, -1))
        tail = b - head - rounds * g  # the start of the next round: groups 0 .. tail - 1
        if tail:
            self._update_rows(slice(0, tail), batch_mean[b - tail:], batch_m2[b - tail:])

    def _merge_rounds(self, grid_mean: torch.Tensor, grid_m2: torch.Tensor) -> None:
        """Chan's merge of whole rounds of batches, [rounds, G, P] (batch j of round i in group j), into every group."""
        rounds, size = grid_mean.shape[0], float(self.batch)
        mean = grid_mean.sum(0) / rounds
        dev = grid_mean - mean
        m2 = grid_m2.sum(0).add_(dev.mul_(dev).sum(0), alpha=size)
        n_b = rounds * size
        n_a = self.n[:, None]
        delta = mean - self.mean
        share = n_b / (n_a + n_b)
        self.mean.addcmul_(delta, share)
        self.m2.add_(m2).addcmul_(delta, delta * (n_a * share))
        self.n += n_b

    def _update_rows(self, rows: slice, batch_mean: torch.Tensor, batch_m2: torch.Tensor) -> None:
        """Chan's update of groups ``rows`` (a slice), each with one batch: in place, on views of [b, P]."""
        n_a, size = self.n[rows], float(self.batch)
        delta = batch_mean - self.mean[rows]
        self.mean[rows].addcmul_(delta, (size / (n_a + size))[:, None])
        self.m2[rows].add_(batch_m2).addcmul_(delta, delta * (n_a * size / (n_a + size))[:, None])
        self.n[rows] = n_a + size

    @staticmethod
    def _merged(n: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(count, mean, M2) of the groups [G], [G, P], [G, P] together (each holding estimates)."""
        total = n.sum()
        mean_t = (n[:, None] * mean).sum(0) / total
        return total, mean_t, m2.sum(0) + (n[:, None] * (mean - mean_t).square()).sum(0)

    def total(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-coordinate (mean, M2) [P] of all the batches' estimates (at least one batch)."""
        full = self.n > 0
        return self._merged(self.n[full], self.mean[full], self.m2[full])[1:]

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
        total, mean_t, m2_t = self._merged(n, mean, m2)
        rest = total - n  # [G]
        mean_r = (total * mean_t - n[:, None] * mean) / rest[:, None]
        m2_r = (m2_t - m2 - (n * rest / total)[:, None] * (mean - mean_r).square()).clamp(min=0)
        values = statistic(mean_r, m2_r / (rest[:, None] - 1))  # [G]
        return math.sqrt((g - 1) / g * (values - values.mean()).square().sum().item()), g - 1
