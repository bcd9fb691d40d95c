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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.test_statistics: the closed forms

import estimators  # noqa: E402
from benchmarks import problems  # noqa: E402
from benchmarks.problems import Context, GaussianSetting  # noqa: E402
from benchmarks.stats import GradientStats, cell_batch  # noqa: E402
from tests.test_statistics import quadratic_variances  # noqa: E402

#: (estimator, mu, k, sigma, gradient): normal estimates, a skewed one, a score function far from k, two heavy tails
CASES = [("reparameterization", 0.0, 0.0, 1.0, "mu"), ("reparameterization", 0.5, 0.0, 0.7, "sigma"),
         ("reinforce", 2.5, 0.0, 1.0, "mu"), ("reinforce", 0.0, 3.0, 0.7, "mu"), ("reinforce", 0.0, 0.0, 1.0, "mu")]


def coverage(estimator: str, mu: float, k: float, sigma: float, group: str, R: int, chunk: int, cells: int,
             seed: int) -> float:
    torch.manual_seed(seed)
    problem = problems.get("gaussian-quadratic")
    g = problem.chunk(estimators.get(estimator), GaussianSetting(mu, sigma, k, 1), None, 1, cells * R, None,
                      Context(dtype=torch.float64)).grads[group].reshape(cells, R, -1)
    exact = quadratic_variances(mu - k, sigma, 1, 1)[estimator][group]
    hits = 0
    for cell in g:
        stats = GradientStats(cell_batch(chunk))
        for part in cell.split(chunk):
            stats.update(part)
        s = stats.summary(None)
        hits += not math.isnan(s.variance_lo) and s.variance_lo <= exact <= s.variance_hi
    return hits / cells


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    R, chunk = int(sys.argv[1]), int(sys.argv[2])
    cells = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 11
    print(f"R = {R} in chunks of {chunk} (batches of {cell_batch(chunk)}), {cells} cells, seed {seed}")
    for case in CASES:
        est, mu, k, sigma, group = case
        print(f"{est} mu={mu} k={k} sigma={sigma} gradient of {group}: {coverage(*case, R, chunk, cells, seed):.1%}")
