"""pytest-benchmark: the replicate engine against its baselines (see benchmarks/perf.py).

    pytest --benchmark-only benchmarks/bench_perf.py --benchmark-group-by=group
    pytest --benchmark-only benchmarks/bench_perf.py --estbench-device cuda   # on a GPU

Each group times the same number of estimates three ways, so pytest-benchmark's table
shows the ratios side by side: the naive loop of backward() calls (``loop``), the
runner's eager path (``runner``) and the runner under torch.compile (``compiled``;
skipped under plain ``pytest``). The runner's set-up (warm-up, compiling) happens once,
untimed, as in the results table (runner.CellEngine); each round times ``measure()``.
``extra_info`` holds estimates/s (toy) or ms per estimate and GFLOP/s (VAE).
"""

from __future__ import annotations

import pytest

import estimators
from benchmarks import perf
from benchmarks.problems import Context, GaussianSetting, VAESetting, get
from benchmarks.runner import CellEngine, sync
from benchmarks.sweep import benchmark_device

DEVICE = benchmark_device()
REPLICATES = 200  # per round, every path: enough for a loop's round to take a tenth of a second or more
TOY = [(dim, name) for dim in (1, 100, 10000) for name in perf.TOY_ESTIMATORS]
PATHS = ("loop", "runner", "compiled")


def _context(path: str) -> Context:
    return Context(compile="on" if path == "compiled" else "off", device=DEVICE)


def _synced(fn, ctx: Context):
    """fn, timed until the work it queued on a GPU is done (CellEngine.measure() waits itself)."""
    return lambda: (fn(), sync(ctx))


def _skip_compiled_if_smoke(benchmark, path: str) -> None:
    if path == "compiled" and benchmark.disabled:
        pytest.skip("compiling takes seconds; the compiled path is tested in tests/test_compile.py")


def _engine(problem, est, setting, prep, r: int, path: str) -> CellEngine:
    """The runner's engine; the compiled path fails if torch.compile fell back to eager
    (the runner would carry on eagerly and note it in the results)."""
    engine = CellEngine(problem, est, setting, prep, 1, r, _context(path))
    if path == "compiled" and not engine.timing.compiled:
        pytest.fail(engine.timing.note)
    return engine


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dim,name", TOY, ids=[f"dim{d}-{n}" for d, n in TOY])
def test_toy_replicates(benchmark, dim: int, name: str, path: str):
    _skip_compiled_if_smoke(benchmark, path)
    problem = get("gaussian-quadratic")
    s = GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=dim)
    est = estimators.get(name)
    benchmark.group = f"toy dim={dim} {name} (n=1, {REPLICATES} estimates)"
    if path == "loop":
        ctx = _context(path)
        fn = _synced(lambda: perf.naive_loop(problem, est, s, 1, REPLICATES, ctx), ctx)
    else:
        fn = _engine(problem, est, s, None, REPLICATES, path).measure
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    if not benchmark.disabled:
        benchmark.extra_info["estimates_per_s"] = REPLICATES / benchmark.stats.stats.median


#: (dim, estimator) of the groups against JAX; R x dim = 2^22 numbers per round, as estbench perf's largest
AGAINST_JAX = [(dim, name) for dim in (100, 10000) for name in ("reparameterization", "reinforce")]


@pytest.mark.parametrize("path", ("runner", "compiled", "jax"))
@pytest.mark.parametrize("dim,name", AGAINST_JAX, ids=[f"dim{d}-{n}" for d, n in AGAINST_JAX])
def test_toy_against_jax(benchmark, dim: int, name: str, path: str):
    """The runner, eager and compiled, beside JAX's jit(vmap(grad)) doing the same work
    (benchmarks.perf.jax_cells: the same estimates and per-coordinate statistics), at as many
    estimates as estbench perf times (2^22 / dim): the loop would take seconds a round there."""
    _skip_compiled_if_smoke(benchmark, path)
    problem = get("gaussian-quadratic")
    s = GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=dim)
    r = (1 << 22) // dim
    benchmark.group = f"toy dim={dim} {name} against JAX (n=1, {r} estimates)"
    if path == "jax":
        if benchmark.disabled:
            pytest.skip("JAX compiles each cell; it is timed under --benchmark-only")
        cells = perf.jax_cells(DEVICE)
        if cells is None:
            pytest.skip("JAX is not installed for this device (pip install -c constraints.txt -e '.[jax]')")
        fn = cells(name, dim, r)
    else:
        fn = _engine(problem, estimators.get(name), s, None, r, path).measure
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    if not benchmark.disabled:
        benchmark.extra_info["estimates_per_s"] = r / benchmark.stats.stats.median


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["reparameterization", "reinforce"])
def test_vae_replicates(benchmark, name: str, path: str):
    _skip_compiled_if_smoke(benchmark, path)
    problem = get("vae-digits")
    setting = VAESetting("untrained", 256, 8, 128)
    prep = problem.prepare(setting, _context("runner"))
    est = estimators.get(name)
    r = 20
    benchmark.group = f"vae-digits {name} (batch 128, n=1; {r} estimates)"
    if path == "loop":
        fn = _synced(lambda: perf.vae_loop(prep.model, prep.x, est, 1, r), _context(path))
    else:
        fn = _engine(problem, est, setting, prep, r, path).measure
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    if not benchmark.disabled:
        benchmark.extra_info["ms_per_estimate"] = benchmark.stats.stats.median / r * 1e3
        flops = perf.vae_flops(pathwise=est.requires_rsample)
        benchmark.extra_info["gflops"] = flops * r / benchmark.stats.stats.median / 1e9
