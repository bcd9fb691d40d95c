"""How often the variance's 95% interval (benchmarks.stats) holds the exact variance of gaussian-quadratic's
estimates (closed form: tests/test_statistics.py), over many independent cells of R single-draw estimates fed in
chunks as the runner feeds them, with the runner's batches for that chunk (stats.cell_batch). For
docs/performance.md.

    .venv/bin/python tools/interval_coverage.py R CHUNK [CELLS [SEED]]
    .venv/bin/python tools/interval_coverage.py 50 10 2000
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests: the cells and the closed forms

from benchmarks.problems import GaussianSetting  # noqa: E402
from benchmarks.stats import cell_batch  # noqa: E402
from tests.test_intervals import cells, summaries  # noqa: E402
from tests.test_statistics import quadratic_variances  # noqa: E402

#: (estimator, mu, k, sigma, gradient): normal estimates, a skewed one, a score function far from k, two heavy tails
CASES = [("reparameterization", 0.0, 0.0, 1.0, "mu"), ("reparameterization", 0.5, 0.0, 0.7, "sigma"),
         ("reinforce", 2.5, 0.0, 1.0, "mu"), ("reinforce", 0.0, 3.0, 0.7, "mu"), ("reinforce", 0.0, 0.0, 1.0, "mu")]


def coverage(estimator: str, mu: float, k: float, sigma: float, group: str, R: int, chunk: int, n_cells: int,
             seed: int) -> float:
    """The share of ``n_cells`` cells whose interval holds the exact variance (no interval: a miss)."""
    exact = quadratic_variances(mu - k, sigma, 1, 1)[estimator][group]
    s = summaries(cells(estimator, GaussianSetting(mu, sigma, k, 1), group, n_cells, R, seed), chunk)
    return sum(not math.isnan(x.variance_lo) and x.variance_lo <= exact <= x.variance_hi for x in s) / n_cells


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    R, chunk = int(sys.argv[1]), int(sys.argv[2])
    n_cells = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 11
    print(f"R = {R} in chunks of {chunk} (batches of {cell_batch(chunk)}), {n_cells} cells, seed {seed}")
    for case in CASES:
        est, mu, k, sigma, group = case
        print(f"{est} mu={mu} k={k} sigma={sigma} gradient of {group}: {coverage(*case, R, chunk, n_cells, seed):.1%}")
