"""How fast the replicate engine is, as ratios measured side by side in one run.

    estbench perf            toy problems and the digits VAE, eager and compiled
    estbench perf --all      also the training-step overhead and peak memory (slow)

This module measures; benchmarks.perf_command is the command that prints the figures,
and benchmarks.perf_memory the child process that measures peak memory. Every figure
is measured now, in this process (memory: in child processes):

- yardsticks: float32 matmul GFLOP/s and copy bandwidth;
- toy quadratic, single-sample estimates (n = 1) at dim 1, 100, 10000: the naive
  baseline (one ``backward()`` per replicate, ``naive_loop``) against the
  runner's own code path (``runner.CellEngine``: sampling, estimator and
  float64 streaming statistics), eager and under torch.compile, and JAX
  ``jit(vmap(grad))`` doing the same estimator work where JAX is installed;
- digits VAE (batch 128), per-sample encoder gradients: a ``backward()`` loop
  against the runner, eager and compiled, with effective GFLOP/s (analytic
  FLOP count, ``vae_flops``) as a fraction of the matmul figure;
- VAE training step through the estimator interface against the classic
  hand-written loop with the reparameterization inline;
- peak resident memory of the runner at growing R (it should not grow with R).

The runner's times are the results table's ``time_per_estimate_s``: compile
cost is reported apart, as in the ``compile_time_s`` column.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Independent, Normal

import estimators
from estimators import Estimator

from .perf_common import (
    CompileFailed,
    alternated,
    engine_call,
    median_time,
    rates_and_ratios,
    runner_time,
    side_by_side,
    statistics_share,
    wall_time,
)
from .problems import Context, GaussianProblem, GaussianSetting, get
from .runner import CellEngine

TOY_ESTIMATORS = ("reparameterization", "reinforce", "reinforce-ema")


# -- baselines ---------------------------------------------------------------------------------

def naive_loop(problem: GaussianProblem, est: Estimator, s: GaussianSetting, n: int, R: int, ctx: Context) -> torch.Tensor:
    """R estimates, one backward() each; returns the mu-gradients [R, dim]."""
    f = problem.f(s.k)
    out = torch.empty(R, s.dim, dtype=ctx.dtype, device=ctx.device)
    state = est.init_state()
    for r in range(R):
        mu = torch.full((s.dim,), s.mu, dtype=ctx.dtype, device=ctx.device, requires_grad=True)
        sigma = torch.full((s.dim,), s.sigma, dtype=ctx.dtype, device=ctx.device, requires_grad=True)
        sur = est(Independent(Normal(mu, sigma, validate_args=False), 1), f, n, state)
        sur.loss.backward()
        state = sur.state
        out[r] = mu.grad
    return out


# -- discrete toys -----------------------------------------------------------------------------

def discrete_loop(est: Estimator, dim: int, n: int, R: int, ctx: Context, K: int | None = None) -> torch.Tensor:
    """bernoulli-quadratic (theta 0, t 0.45): R estimates, one backward() each; [R, dim]. With ``K``,
    of bernoulli-multisample's K-sample bound (the same log-weight) instead."""
    from torch.distributions import Bernoulli

    from estimators import Bound

    out = torch.empty(R, dim, dtype=ctx.dtype, device=ctx.device)
    state = est.init_state()
    f = lambda b: ((b - 0.45) ** 2).sum(-1)  # noqa: E731
    target = f if K is None else Bound(f, K, minus_log_q=False)
    for r in range(R):
        theta = torch.zeros(dim, dtype=ctx.dtype, device=ctx.device, requires_grad=True)
        sur = est(Independent(Bernoulli(logits=theta, validate_args=False), 1), target, n, state)
        sur.loss.backward()
        state = sur.state
        out[r] = theta.grad
    return out


#: the estimators of 2019-2023 that ``recent_speeds`` times: on bernoulli-quadratic at dim 100, and on
#: categorical-quadratic at K = 100 (those that enumerate the joint domain only there)
RECENT_BERNOULLI = ("arms", "double-cv", "gumbel-rao", "gst", "reinmax")
RECENT_CATEGORICAL = ("sum-and-sample", "unordered-set", "stick-breaking-disarm", "gumbel-rao", "gst", "reinmax")


def problem_loop(problem: Any, est: Estimator, s: Any, n: int, R: int, ctx: Context) -> torch.Tensor:
    """A discrete toy's R estimates, one ``backward()`` each, through the problem's own leaf, distribution and f
    (one replicate at a time); [R, P]."""
    f = problem.f(s, ctx)
    out = []
    state = est.init_state()
    for _ in range(R):
        logits = problem.leaf(s, 1, ctx)
        sur = est(problem.distribution(logits), f, n, state)
        sur.loss.sum().backward()
        state = sur.state
        out.append(logits.grad.reshape(-1))
    return torch.stack(out)


def recent_speeds(repeats: int = 3, budget_s: float = 0.3, device: str = "cpu",
                  compile: bool = False) -> list[dict[str, Any]]:
    """The 2019-2023 estimators' runner speed against ``problem_loop``, eager (and compiled), each at its fewest
    draws (n = max(1, min_samples)): bernoulli-quadratic at dim 100, categorical-quadratic at K = 100 (dim 1)."""
    from .problems.discrete import BernoulliSetting, CategoricalSetting

    ctx = Context(compile="off", device=device)
    cases = [("bernoulli-quadratic", BernoulliSetting(theta=0.0, t=0.45, dim=100), RECENT_BERNOULLI),
             ("categorical-quadratic", CategoricalSetting(theta=1.0, t=0.45, K=100, dim=1), RECENT_CATEGORICAL)]
    rows = []
    for pname, s, names in cases:
        problem = get(pname)
        for name in names:
            est = estimators.get(name)
            n = max(1, type(est).min_samples)
            loop = lambda r: problem_loop(problem, est, s, n, r, ctx)  # noqa: E731
            rows.append({"problem": pname, "estimator": name, "n_samples": n,
                         **against_loop(loop, problem, est, s, n, repeats, budget_s, device, compile)})
    return rows


def against_loop(loop: Callable[[int], Any], problem: Any, est: Estimator, s: Any, n: int, repeats: int,
                 budget_s: float, device: str, compile: bool) -> dict[str, Any]:
    """A discrete toy's estimates per second: ``loop(R)`` (R estimates, one backward() each; as many as fit in
    ``budget_s``) against the runner's own path, eager and (with ``compile``) compiled, and their ratios. Eager,
    the two are timed side by side ``repeats`` times (``side_by_side``): ``speedup`` is the median of the pairs'
    ratios and ``speedup_range`` their least and greatest."""
    probe = median_time(lambda: loop(20), 1, device) / 20
    r_loop = max(20, int(budget_s / probe))
    replicates = 20_000 if budget_s >= 0.3 else 5_000
    eager = Context(compile="off", device=device)
    loops, runs = side_by_side(lambda: loop(r_loop), CellEngine(problem, est, s, None, n, replicates, eager), repeats, eager)
    ratios = [(a / r_loop) / (b / replicates) for a, b in zip(loops, runs, strict=True)]
    t_loop = statistics.median(loops) / r_loop
    row = {"loop_per_s": 1 / t_loop, "eager_per_s": replicates / statistics.median(runs),
           "speedup": statistics.median(ratios), "speedup_range": (min(ratios), max(ratios))}
    if compile:
        try:
            t_comp, row["compile_s"] = runner_time(problem, est, s, None, n, replicates,
                                                   Context(compile="on", device=device), repeats)
            row["compiled_per_s"], row["compiled_speedup"] = 1 / t_comp, t_loop / t_comp
        except CompileFailed as exc:
            row["compile_failed"] = str(exc)
    return row


def discrete_speeds(names: tuple[str, ...] = ("reinforce", "disarm"), dim: int = 100, repeats: int = 3,
                    budget_s: float = 0.3, device: str = "cpu", K: int | None = None,
                    compile: bool = False) -> list[dict[str, Any]]:
    """bernoulli-quadratic at ``dim`` (with ``K``: bernoulli-multisample's K-sample bound), single-draw
    (single K-set) estimates per second: the backward() loop against the runner's own path (eager). The
    bound's setting is built directly: the timing needs no truth, whose enumeration bounds dim x K."""
    from .problems.discrete import BernoulliSetting
    from .problems.multisample import MultiSampleSetting

    ctx = Context(compile="off", device=device)
    if K is None:
        problem, s = get("bernoulli-quadratic"), BernoulliSetting(theta=0.0, t=0.45, dim=dim)
    else:
        problem, s = get("bernoulli-multisample"), MultiSampleSetting(theta=0.0, t=0.45, dim=dim, K=K)
    rows = []
    for name in names:
        est = estimators.get(name)
        loop = lambda r: discrete_loop(est, dim, 1, r, ctx, K)  # noqa: E731
        rows.append({"estimator": name, "dim": dim, "K": K,
                     **against_loop(loop, problem, est, s, 1, repeats, budget_s, device, compile)})
    return rows


# -- yardsticks --------------------------------------------------------------------------------

def matmul_gflops(n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """float32 n x n matmul throughput measured now, the yardstick for effective FLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / median_time(lambda: a @ b, repeats, device) / 1e9


def copy_gbps(n: int = 1 << 25, repeats: int = 5, device: str = "cpu") -> float:
    """Memory bandwidth of a float32 copy (bytes read + written per second)."""
    a, b = torch.empty(n, device=device), torch.empty(n, device=device)
    a.fill_(1.0)
    return 2 * 4 * n / median_time(lambda: b.copy_(a), repeats, device) / 1e9


# -- toy problems ------------------------------------------------------------------------------

def toy_speeds(dims: tuple[int, ...] = (1, 100, 10000), names: tuple[str, ...] = TOY_ESTIMATORS,
               compile: bool = True, jax: bool = True, repeats: int = 3, budget_s: float = 0.3,
               device: str = "cpu") -> list[dict[str, Any]]:
    """Estimates per second on gaussian-quadratic, n = 1: loop, runner eager, runner compiled, JAX.

    Each path runs about ``budget_s`` seconds per repeat (R scaled from a probe), so slow
    and fast paths are timed with similar precision; R is at least 1000 for the runner.
    The runner eager, compiled and JAX are timed in turn, ``repeats`` rounds of one call
    each (a slow spell of the shared machine then slows all three of a round rather than
    all of one path): each rate is the median over the rounds, each ratio to JAX
    (``eager_vs_jax``, ``compiled_vs_jax``, ``vs_jax`` for the better of the two) the median
    of the rounds' own ratios, with their range (``*_range``). JAX runs on the same device
    (its CPU, or its GPU where JAX was installed with CUDA support); where it cannot, there
    is no JAX column.
    """
    problem = get("gaussian-quadratic")
    assert isinstance(problem, GaussianProblem)
    cells = jax_cells(device) if jax else None
    rows = []
    for dim in dims:
        s = GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=dim)
        for name in names:
            est = estimators.get(name)
            eager, comp = Context(compile="off", device=device), Context(compile="on", device=device)
            loop = lambda r: naive_loop(problem, est, s, 1, r, eager)  # noqa: E731
            probe = median_time(lambda: loop(20), 1, device) / 20
            r_loop = max(20, int(budget_s / probe))
            t_loop = median_time(lambda: loop(r_loop), repeats, device) / r_loop
            if device == "cpu":
                # the runner is 10-1000x faster; R x dim at most 2^22, since JAX holds all R at once
                r_run = min(max(1000, int(budget_s / t_loop * 50)), max(100, (1 << 22) // dim))
            else:
                # a GPU is busy only with millions of numbers at once (runner.GPU_CHUNK_FACTOR)
                r_run = max(100, (1 << 26) // dim)
            row: dict[str, Any] = {"dim": dim, "estimator": name, "loop_per_s": 1 / t_loop, "replicates": r_run}
            paths: dict[str, Callable[[], float]] = {"eager": engine_call(CellEngine(problem, est, s, None, 1, r_run, eager))}
            if compile:
                engine = CellEngine(problem, est, s, None, 1, r_run, comp)
                if engine.timing.compiled:
                    paths["compiled"] = engine_call(engine)
                    row["compile_s"] = engine.timing.compile_s
                else:
                    row["compile_failed"] = engine.timing.note
            if cells is not None:
                jax_call = cells(name, dim, r_run)
                jax_call()  # a warm-up call, as the engines' set-up
                paths["jax"] = lambda: wall_time(jax_call, eager)  # noqa: B023 - called in this iteration
            rows.append(rates_and_ratios(row, alternated(paths, repeats), r_run))
    return rows


def statistics_shares(names: tuple[str, ...] = ("reparameterization", "reinforce"), repeats: int = 3,
                      n_samples: int = 1) -> list[dict[str, Any]]:
    """The share of an eager cell's chunk time its statistics take (perf_common.statistics_share), n =
    ``n_samples`` draws per estimate (the report's cells: 4): gaussian-quadratic at dim 1, 100 and 10,000 and the
    untrained digits VAE (batch 128). Freed memory is kept in the process, as the estbench commands keep it
    (benchmarks.allocator)."""
    from .allocator import keep_freed_memory
    from .plan import make_plan
    from .rows import prepare
    from .sweep import Sweep

    keep_freed_memory()
    problem, eager, rows = get("gaussian-quadratic"), Context(compile="off"), []
    for dim, R in ((1, 20000), (100, 50000), (10000, 1000)):
        s = GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=dim)
        for name in names:
            rows.append({"problem": f"gaussian-quadratic, dim {dim}", "estimator": name,
                         **statistics_share(problem, estimators.get(name), s, None, n_samples, R // n_samples, eager,
                                            repeats)})
    plan = make_plan(Sweep(problem=["vae-digits"], estimator=list(names), n_samples=[n_samples], replicates=200,
                           checkpoint=["untrained"], compile="off"))
    for cell, sweep in plan.cells:
        ctx = sweep.context()
        rows.append({"problem": "vae-digits, untrained", "estimator": cell.estimator_key,
                     **statistics_share(cell.problem, estimators.get(cell.estimator_key), cell.setting,
                                        prepare(cell, ctx), n_samples, 200, ctx, repeats)})
    return rows


def jax_device(device: str) -> Any | None:
    """The JAX device matching a torch device name ('cpu', 'cuda[:N]'), or None: no JAX, or a
    JAX without that backend (the CPU-only jax of ``.[jax]`` has no GPU). Explicit, since a
    JAX with CUDA support would otherwise put the 'cpu' comparison on the GPU. On a GPU, JAX
    is told not to take 75% of its memory up front (XLA_PYTHON_CLIENT_PREALLOCATE), which
    would starve torch in the same process."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
    except ImportError:
        return None
    if device == "cpu":
        return jax.devices("cpu")[0]
    index = int(device.partition(":")[2] or 0)
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU backend
        return None
    return gpus[index] if index < len(gpus) else None


def jax_cells(device: str = "cpu") -> Callable[[str, int, int], Callable[[], Any]] | None:
    """``cell(name, dim, R)``: a call of JAX's jit(vmap(grad)) of the same estimators on the same problem,
    R estimates and their statistics, compiled and run once, on ``device`` (see jax_device); None where
    JAX cannot run there.

    Per replicate: one draw x = mu + sigma * eps, f(x) = sum (x - k)^2; the estimate of
    d/d(mu, sigma) by the pathwise, score-function or running-baseline rule (the
    baseline, a number carried between calls as in reinforce-ema); then per-coordinate
    mean and M2 of the R estimates, as the runner does (in float32: JAX's default).
    """
    where = jax_device(device)
    if where is None:
        return None
    import jax
    import jax.numpy as jnp
    from jax.scipy.stats import norm

    def f(x: Any) -> Any:
        return jnp.sum(x**2)  # k = 0, as in toy_speeds

    def one(key: Any, mu: Any, sigma: Any, rule: str, baseline: Any) -> Any:
        eps = jax.random.normal(key, mu.shape)
        if rule == "reparameterization":
            return jax.grad(lambda m, s: f(m + s * eps), argnums=(0, 1))(mu, sigma)
        x = jax.lax.stop_gradient(mu + sigma * eps)
        w = f(x) - baseline
        return jax.grad(lambda m, s: w * jnp.sum(norm.logpdf(x, m, s)), argnums=(0, 1))(mu, sigma)

    def make(rule: str, dim: int, R: int) -> Callable[[Any, Any], Any]:
        def cell(key: Any, baseline: Any) -> Any:
            mu, sigma = jnp.ones(dim), jnp.ones(dim)
            keys = jax.random.split(key, R)
            g_mu, g_sigma = jax.vmap(lambda k: one(k, mu, sigma, rule, baseline))(keys)
            out = []
            for g in (g_mu, g_sigma):
                m = g.mean(0)
                out += [m, jnp.sum((g - m) ** 2, 0)]
            return out

        return jax.jit(cell)

    def cell(name: str, dim: int, R: int) -> Callable[[], Any]:
        fn = make({"reinforce-ema": "baseline"}.get(name, name), dim, R)
        with jax.default_device(where):
            key, b = jax.device_put((jax.random.PRNGKey(0), jnp.float32(dim)), where)
            jax.block_until_ready(fn(key, b))  # compile
        return lambda: jax.block_until_ready(fn(key, b))

    return cell


# -- memory ------------------------------------------------------------------------------------



def peak_memory(problem: str, replicates: int, device: str = "cpu") -> dict[str, float]:
    """Peak RSS (MB) of one cell of R replicates (dim 100 for the toy) in a fresh process, and
    its RSS before the cell (imports, data, model). Linux: read from /proc/self/status, with
    the peak reset just before the cell (getrusage's ru_maxrss would carry the parent's peak
    across fork and exec). On a GPU also torch's peak of allocated GPU memory (gpu_peak_mb)
    and what was allocated before the cell (gpu_before_mb)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "benchmarks.perf_memory", problem, str(replicates), device], cwd=root,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


from .perf_vae import (  # noqa: E402  the VAE measurements, under the names estbench perf has always used
    binary_vae_speeds,
    enumeration_times,
    vae_flops,
    vae_loop,
    vae_speeds,
    vae_training_overhead,
)

__all__ = ["RECENT_BERNOULLI", "RECENT_CATEGORICAL", "TOY_ESTIMATORS", "CompileFailed", "against_loop", "binary_vae_speeds",
           "copy_gbps",
           "discrete_speeds", "problem_loop", "recent_speeds",
           "enumeration_times", "jax_device", "matmul_gflops", "naive_loop", "peak_memory", "toy_speeds",
           "vae_flops", "vae_loop", "vae_speeds", "vae_training_overhead"]
