"""REBAR's and RELAX's warm-up learning (estimators/relax.py) against another revision's, side by side in one
process (for docs/performance.md): the revision's module is loaded beside this checkout's, and the warm-up's
learning calls of one cell (the problem's first report setting, n = 4, its warm-up replicates) are timed with
each in turn, ``pairs`` times; prints the learned parameters of each (they should agree to rounding), each
pair's ratio (revision / this checkout) and their median and range.

    .venv/bin/python tools/learning_ab.py ESTIMATOR PROBLEM REVISION [PAIRS]
    .venv/bin/python tools/learning_ab.py rebar bernoulli-quadratic HEAD~1 5
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import types

import torch

import estbench.api as api
import estimators
from benchmarks import problems
from benchmarks.problems.base import Context


def module_at(revision: str) -> types.ModuleType:
    """estimators/relax.py as it was at ``revision``, its relative imports made absolute, registering nothing."""
    src = subprocess.run(["git", "show", f"{revision}:estimators/relax.py"], capture_output=True, text=True,
                         check=True).stdout
    src = (src.replace("from .base", "from estimators.base").replace("from .discrete", "from estimators.discrete")
           .replace("from .registry import builtin", "builtin = lambda cls: cls"))
    module = types.ModuleType(f"relax_at_{revision}")
    exec(compile(src, f"{revision}:estimators/relax.py", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def main(name: str, problem: str, revision: str, pairs: int = 5) -> None:
    old_module = module_at(revision)
    old = {"rebar": old_module.Rebar, "relax": old_module.Relax}[name]()
    new = estimators.get(name)
    p = problems.get(problem)
    ctx = Context(checkpoint_steps=200, seed=0) if p.kind != "toy" else Context(dtype=torch.float64)
    setting = p.settings(api.sweep(problem, name))[0]
    prepared = p.prepare(setting, ctx)
    replicates = p.warmup_replicates(setting)

    def learn(est) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(0)
        state = None
        start = time.perf_counter()
        for _ in range(est.warmup_calls - 1):
            state = p.chunk(est, setting, prepared, 4, replicates, state, ctx).state
        return time.perf_counter() - start, state["params"]

    learn(old), learn(new)  # first calls: one-time costs
    times: dict[str, list[float]] = {revision: [], "this checkout": []}
    for i in range(pairs):
        for label, est in ((revision, old), ("this checkout", new)):
            seconds, params = learn(est)
            times[label].append(seconds)
            if i == 0:
                print(f"{label}: eta, log lambda learned {params[0].item():.9g}, {params[1].item():.9g}")
    ratios = [a / b for a, b in zip(times[revision], times["this checkout"], strict=True)]
    print(f"{name} on {problem} ({setting}), learning calls in s: {revision} {[round(t, 3) for t in times[revision]]}, "
          f"this checkout {[round(t, 3) for t in times['this checkout']]}")
    print(f"{revision} / this checkout: median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
