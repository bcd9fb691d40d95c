"""What shorter training would cost the report's training comparison: from a training file of the default
report, each model problem's separation statement (the best estimator by mean final test ELBO, those whose 95%
interval overlaps it, those below it; reports.training) with every curve cut at each number of steps given.

    python tools/training_steps.py [FILE] [--steps 500 400 300 200]

FILE defaults to reports/example/results-training.csv; a curve's steps past the cut are dropped, so its end is its
test ELBO logged at the cut (the curves are logged every 25 steps).
"""

from __future__ import annotations

import argparse

import pandas as pd

from reports.training import separation, training_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default="reports/example/results-training.csv")
    parser.add_argument("--steps", type=int, nargs="+", default=[500, 400, 300, 200])
    args = parser.parse_args()
    curves = pd.read_csv(args.file)
    for steps in args.steps:
        print(f"curves cut at step {steps}:")
        for problem, table in training_table(curves[curves["step"] <= steps]).groupby("problem", sort=False):
            said = separation(table)
            if said is not None:
                best, overlap, below = said
                print(f"  {problem}: best {best}; {len(overlap)} overlap it ({', '.join(sorted(overlap))}); "
                      f"{len(below)} below")


if __name__ == "__main__":
    main()
