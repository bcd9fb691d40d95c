"""How much the --precision stopping rule biases the variance estimate, on the quadratic toy against its
closed-form variance (tests/test_statistics.py: quadratic_variances).

    .venv/bin/python tools/precision_bias.py [--cells 400] [--precision 0.1]

For each case, ``--cells`` independent cells run through the replicate engine with the stopping rule
(at least benchmarks.engine.PRECISION_MIN_REPLICATES estimates, at most --max); prints the mean of
variance / exact - 1 with its standard error, the coverage of the 95% interval, and the R used.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import estimators  # noqa: E402
from benchmarks import problems  # noqa: E402
from benchmarks.engine import PRECISION_MIN_REPLICATES, CellEngine  # noqa: E402
from benchmarks.problems import Context, GaussianSetting  # noqa: E402
from tests.test_statistics import quadratic_variances  # noqa: E402

CASES = [  # estimator, mu, k, sigma, gradient
    ("reparameterization", 0.0, 0.0, 1.0, "mu"),
    ("reinforce", 2.5, 0.0, 1.0, "mu"),
    ("reinforce", 0.0, 0.0, 1.0, "mu"),
    ("reinforce", 0.0, 3.0, 0.7, "mu"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=400)
    ap.add_argument("--precision", type=float, default=0.1)
    ap.add_argument("--max", type=int, default=100_000)
    args = ap.parse_args()
    quad = problems.get("gaussian-quadratic")
    ctx = Context(dtype=torch.float64, precision=args.precision)
    print(f"precision {args.precision}, {args.cells} cells per case, R from {PRECISION_MIN_REPLICATES} to {args.max}")
    print("| estimator | gradient | mu - k | sigma | exact variance | mean variance / exact - 1 [+- 2 SE] | "
          "95% interval coverage | R used: median [min, max] | relative SE reached: median |")
    print("|---|---|---|---|---|---|---|---|---|")
    for est, mu, k, sigma, group in CASES:
        exact = quadratic_variances(mu - k, sigma, 1, 1)[est][group]
        setting = GaussianSetting(mu, sigma, k, 1)
        ratios, hits, used, rel = [], 0, [], []
        for i in range(args.cells):
            torch.manual_seed(1000 + i)
            engine = CellEngine(quad, estimators.get(est), setting, None, 1, args.max, ctx)
            s = engine.measure(args.precision, PRECISION_MIN_REPLICATES)[group].summary(None)
            ratios.append(s.variance / exact - 1)
            hits += s.variance_lo <= exact <= s.variance_hi
            used.append(s.n)
            rel.append(s.variance_se / s.variance)
        m, se = statistics.fmean(ratios), statistics.stdev(ratios) / math.sqrt(len(ratios))
        print(f"| {est} | {group} | {mu - k:g} | {sigma:g} | {exact:.4g} | {m:+.3f} [+- {2 * se:.3f}] | "
              f"{hits / args.cells:.1%} | {statistics.median(used):.0f} [{min(used)}, {max(used)}] | "
              f"{statistics.median(rel):.3f} |")


if __name__ == "__main__":
    main()
