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
    per-coordinate mean and variance, whatever the correlation between coordinates.

    Batches join in turn, so the groups' counts are known without looking at the data (``n``): groups
    0 .. i - 1 hold one batch more than the others, i the batches so far mod G. Each update below is of
    groups with equal counts, so its weights are numbers, not tensors."""

    def __init__(self, batch: int, groups: int = JACKKNIFE_GROUPS) -> None:
        self.batch = batch  # estimates per batch
        self.groups = groups
        self.batches = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    @property
    def n(self) -> torch.Tensor | None:
        """Estimates in each group [G] (float64, on the statistics' device); None before the first batch."""
        if self.mean is None:
            return None
        full, more = divmod(self.batches, self.groups)
        counts = [(full + (k < more)) * self.batch for k in range(self.groups)]
        return torch.tensor(counts, dtype=self.mean.dtype, device=self.mean.device)

    def add(self, batch_mean: torch.Tensor, batch_m2: torch.Tensor) -> None:
        """Merge whole batches' per-coordinate means and M2s [b, P] (Chan et al., per group). The batches that
        finish the groups' current round and those that start the last one join their groups one each, in
        place; the whole rounds between, a grid of G columns, join by plain sums over the grid's rows."""
        b, g = batch_mean.shape[0], self.groups
        if not b:
            return
        if self.mean is None:
            self.mean = batch_mean.new_zeros(g, batch_mean.shape[1])
            self.m2 = torch.zeros_like(self.mean)
        start = self.batches % g
        held = self.batches // g * self.batch  # estimates in each of groups start .. G - 1 (and in every one at 0)
        self.batches += b
        head = min(b, (g - start) % g)  # to the end of the current round: groups start .. start + head - 1
        if head:
            self._update_rows(slice(start, start + head), batch_mean[:head], batch_m2[:head], held)
            held += self.batch  # now every group's
        rounds = (b - head) // g
        whole = slice(head, head + rounds * g)
        if rounds == 1:  # one batch a group
            self._update_rows(slice(0, g), batch_mean[whole], batch_m2[whole], held)
        elif rounds:
            self._merge_rounds(batch_mean[whole].view(rounds, g, -1), batch_m2[whole].view(rounds, g, -1), held)
        tail = b - head - rounds * g  # the start of the next round: groups 0 .. tail - 1
        if tail:
            self._update_rows(slice(0, tail), batch_mean[b - tail:], batch_m2[b - tail:], held + rounds * self.batch)

    def _merge_rounds(self, grid_mean: torch.Tensor, grid_m2: torch.Tensor, held: int) -> None:
        """Chan's merge of whole rounds of batches, [rounds, G, P] (batch j of round i in group j), into every group,
        each holding ``held`` estimates."""
        rounds, size = grid_mean.shape[0], self.batch
        mean = grid_mean.sum(0).div_(rounds)
        dev = grid_mean - mean
        m2 = grid_m2.sum(0).add_(dev.mul_(dev).sum(0), alpha=size)
        share = rounds * size / (held + rounds * size)
        delta = mean.sub_(self.mean)
        self.mean.add_(delta, alpha=share)
        self.m2.add_(m2).addcmul_(delta, delta, value=held * share)

    def _update_rows(self, rows: slice, batch_mean: torch.Tensor, batch_m2: torch.Tensor, held: int) -> None:
        """Chan's update of groups ``rows`` (a slice), each holding ``held`` estimates, with one batch each: in
        place, on views of [b, P]."""
        share = self.batch / (held + self.batch)
        delta = batch_mean - self.mean[rows]
        self.mean[rows].add_(delta, alpha=share)
        self.m2[rows].add_(batch_m2).addcmul_(delta, delta, value=held * share)

    @staticmethod
    def _merged(n: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(count, mean, M2) of the groups [G], [G, P], [G, P] together (each holding estimates)."""
        total = n.sum()
        mean_t = (n[:, None] * mean).sum(0) / total
        return total, mean_t, m2.sum(0) + (n[:, None] * (mean - mean_t).square()).sum(0)

    def total(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-coordinate (mean, M2) [P] of all the batches' estimates (at least one batch)."""
        n = self.n
        full = n > 0
        return self._merged(n[full], self.mean[full], self.m2[full])[1:]

    def jackknife(self, statistic) -> tuple[float, int]:
        """(standard error, degrees of freedom) of ``statistic(mean [.., P], variance [.., P]) -> [..]`` by the
        delete-a-group jackknife over the groups that hold estimates; (NaN, 0) with fewer than two."""
        n = self.n
        if n is None:
            return math.nan, 0
        full = n > 0
        n, mean, m2 = n[full], self.mean[full], self.m2[full]
        g = int(n.shape[0])
        if g < 2:
            return math.nan, 0
        total, mean_t, m2_t = self._merged(n, mean, m2)
        rest = total - n  # [G]
        mean_r = (total * mean_t - n[:, None] * mean) / rest[:, None]
        m2_r = (m2_t - m2 - (n * rest / total)[:, None] * (mean - mean_r).square()).clamp(min=0)
        values = statistic(mean_r, m2_r / (rest[:, None] - 1))  # [G]
        return math.sqrt((g - 1) / g * (values - values.mean()).square().sum().item()), g - 1
