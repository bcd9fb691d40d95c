"""The engine's statistics (benchmarks/stats.py and benchmarks/jackknife.py) against another revision's, side by
side in one process (for docs/performance.md): the revision's two modules are loaded beside this checkout's, and
for each eager gaussian-quadratic cell of statistics_shares (dim 100, R = 50,000; dim 10,000, R = 1000;
reparameterization and reinforce) each chunk is computed once and then reduced by each revision's statistics in
turn (their order alternating), as the engine does (chunk_moments, the merge, the finiteness check), on this
checkout's chunk plan. One pass
over the cell's chunk plan is a trial; prints each cell's statistics time with each, their ratio (revision /
this checkout: median and range over the trials after the first) and each one's share of the cell's time.

    .venv/bin/python tools/stats_ab.py REVISION [TRIALS]
    .venv/bin/python tools/stats_ab.py HEAD~1 8
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import types

import estimators
from benchmarks import stats as current
from benchmarks.allocator import keep_freed_memory
from benchmarks.engine import CellEngine
from benchmarks.problems import Context, GaussianSetting, get


def modules_at(revision: str) -> types.ModuleType:
    """benchmarks/stats.py as it was at ``revision``, with that revision's jackknife.py as its ``.jackknife``."""
    def source(path: str) -> str:
        return subprocess.run(["git", "show", f"{revision}:{path}"], capture_output=True, text=True, check=True).stdout

    jackknife = types.ModuleType(f"jackknife_at_{revision}")
    exec(compile(source("benchmarks/jackknife.py"), f"{revision}:benchmarks/jackknife.py", "exec"),  # noqa: S102
         jackknife.__dict__)
    sys.modules[jackknife.__name__] = jackknife
    module = types.ModuleType(f"stats_at_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    src = source("benchmarks/stats.py").replace("from .jackknife import", f"from {jackknife.__name__} import")
    exec(compile(src, f"{revision}:benchmarks/stats.py", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def main(revision: str, trials: int = 8) -> None:
    keep_freed_memory()  # as the estbench commands do
    impls = {revision: modules_at(revision), "this checkout": current}
    problem, ctx = get("gaussian-quadratic"), Context(compile="off")
    for dim, R in ((100, 50_000), (10_000, 1000)):
        for name in ("reparameterization", "reinforce"):
            est, setting = estimators.get(name), GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=dim)
            engine = CellEngine(problem, est, setting, None, 1, R, ctx)
            spent: dict[str, list[float]] = {label: [] for label in impls}
            chunks: list[float] = []
            for trial in range(trials + 1):
                order = list(impls) if trial % 2 else list(impls)[::-1]
                cell = {label: {g: impls[label].GradientStats(engine.batch) for g in problem.groups} for label in impls}
                seconds, state, chunk_time = dict.fromkeys(impls, 0.0), engine.state, 0.0
                for r in engine.sizes:
                    t0 = time.perf_counter()
                    out = problem.chunk(est, setting, None, 1, r, state, ctx)
                    chunk_time += time.perf_counter() - t0
                    state = out.state
                    for label in order:
                        module, t0 = impls[label], time.perf_counter()
                        for g in problem.groups:
                            cell[label][g].merge(r, module.chunk_moments(out.grads[g], engine.batch))
                        assert all(st.finite() for st in cell[label].values())
                        seconds[label] += time.perf_counter() - t0
                if trial:  # the first: one-time costs
                    chunks.append(chunk_time)
                    for label in impls:
                        spent[label].append(seconds[label])
            ratios = [a / b for a, b in zip(spent[revision], spent["this checkout"], strict=True)]
            chunk = statistics.median(chunks)
            medians = {label: statistics.median(v) for label, v in spent.items()}
            shares = ", ".join(f"{label} {m * 1e3:.1f} ms ({m / (chunk + m):.0%} of the cell)" for label, m in medians.items())
            print(f"dim {dim}, {name}: statistics {shares}; {revision} / this checkout "
                  f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}); chunks {chunk * 1e3:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
