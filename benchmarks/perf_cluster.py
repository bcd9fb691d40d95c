"""How much faster a sweep runs on a local Dask cluster than serially, and what a task costs.

    estbench perf --cluster     (or: python -m benchmarks.perf_cluster)

One run, side by side on this machine: the same sweep of toy cells (4 estimators x 7 mu x 8 sigma =
224 cells, R = 1000, 100,000 and 1,000,000) serially and with ``--workers 2``; the cluster's wall time
with and without its start-up (a few seconds: worth paying only for a sweep that takes longer); then
the same cells at R = 2 (nearly empty: what is left is the per-cell overhead), as cells per second
each way. Prints the ratios; returns every figure.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

#: the sweep timed: small toy cells, the case where a cluster's per-task overhead matters most
ESTIMATORS = ["reparameterization", "reinforce", "reinforce-loo", "reinforce-ema"]
MU = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
SIGMA = [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
#: estimates per cell: small cells (where the per-task overhead matters most) up to a sweep of about a
#: minute serially (where the cluster's start-up is paid back)
REPLICATES = (1000, 100_000, 1_000_000)


def _timed_run(replicates: int, workers: int | None) -> tuple[float, int]:
    """The sweep through the run loop (benchmarks.runner), serially or on ``workers`` Dask workers."""
    from benchmarks import runner
    from benchmarks.cluster import ClusterSpec
    from benchmarks.sweep import Sweep

    start = time.perf_counter()
    cluster = ClusterSpec(workers, None) if workers is not None else None
    rows = runner.run(Sweep(problem=["gaussian-quadratic"], estimator=ESTIMATORS, mu=MU, sigma=SIGMA,
                            replicates=replicates), cluster=cluster)
    cells = len({(r["estimator"], r["setting"], r["n_samples"]) for r in rows})
    return time.perf_counter() - start, cells


def main(workers: int = 2) -> dict[str, Any]:
    from benchmarks.distributed import LAST_RUN

    out: dict[str, Any] = {"workers": workers}
    _timed_run(2, None)  # one-time costs of this process (imports, first calls), paid before timing
    for r in REPLICATES:
        serial, cells = _timed_run(r, None)
        cluster, _ = _timed_run(r, workers)
        out[f"R={r}"] = fig = {"serial_s": serial, "cluster_s": cluster, "setup_s": LAST_RUN["setup_s"],
                               "cells_s": LAST_RUN["units_s"], "cells": cells}
        print(f"{cells} gaussian-quadratic cells, R = {r:,}: serial {serial:.2f} s; --workers {workers} {cluster:.2f} s, "
              f"of which {fig['setup_s']:.2f} s starting the cluster and setting its workers up and {fig['cells_s']:.2f} s "
              f"running the cells")
        print(f"  speed-up: {serial / cluster:.2f}x in all, {serial / fig['cells_s']:.2f}x once the cluster is up")
    out["empty_serial_s"], cells = _timed_run(2, None)
    out["empty_cluster_s"], _ = _timed_run(2, workers)
    out["empty_cells_s"] = LAST_RUN["units_s"]
    print(f"{cells} nearly empty cells (R = 2): serial {cells / out['empty_serial_s']:.0f} cells/s in all; "
          f"--workers {workers} {cells / out['empty_cells_s']:.0f} cells/s once the cluster is up")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    main(p.parse_args().workers)
