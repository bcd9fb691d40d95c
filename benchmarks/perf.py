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
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Independent, Normal

import estimators
from estimators import Estimator

from .problems import Context, GaussianProblem, GaussianSetting, get
from .runner import CellEngine, sync

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


def _median_time(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """Median wall time of fn() after one warm-up call (on a GPU, until its queued work is done)."""
    ctx = Context(device=device)
    fn()
    times = []
    for _ in range(repeats):
        sync(ctx)
        start = time.perf_counter()
        fn()
        sync(ctx)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def vae_loop(model: Any, x: torch.Tensor, est: Estimator, n_samples: int, replicates: int) -> None:
    """The naive VAE baseline: one encoder-gradient estimate per ``backward()``, ``replicates`` times."""
    model.encoder.requires_grad_(True)
    for _ in range(replicates):
        model.encoder.zero_grad(set_to_none=True)
        q = model.q(x)
        (est(q, model.log_likelihood(x), n_samples).loss - model.kl(q)).mean().backward()


class CompileFailed(RuntimeError):
    """torch.compile failed for a cell (the runner would run it eagerly): no compiled figure."""


def _runner_time(problem: Any, est: Estimator, setting: Any, prep: Any, n: int, R: int, ctx: Context,
                 repeats: int) -> tuple[float, float]:
    """(seconds per estimate, compile seconds) of the runner's own path, as in the results table
    (runner.CellEngine): set up once (warm-up, compiling), then the median of ``repeats`` measurements."""
    engine = CellEngine(problem, est, setting, prep, n, R, ctx)
    if ctx.compile == "on" and not engine.timing.compiled:
        raise CompileFailed(engine.timing.note)
    times = []
    for _ in range(repeats):
        engine.measure()
        times.append(engine.timing.elapsed)
    return statistics.median(times) / R, engine.timing.compile_s


# -- discrete toys -----------------------------------------------------------------------------

def discrete_loop(est: Estimator, dim: int, n: int, R: int, ctx: Context) -> torch.Tensor:
    """bernoulli-quadratic (theta 0, t 0.45): R estimates, one backward() each; [R, dim]."""
    from torch.distributions import Bernoulli

    out = torch.empty(R, dim, dtype=ctx.dtype, device=ctx.device)
    state = est.init_state()
    for r in range(R):
        theta = torch.zeros(dim, dtype=ctx.dtype, device=ctx.device, requires_grad=True)
        sur = est(Independent(Bernoulli(logits=theta, validate_args=False), 1),
                  lambda b: ((b - 0.45) ** 2).sum(-1), n, state)
        sur.loss.backward()
        state = sur.state
        out[r] = theta.grad
    return out


def discrete_speeds(names: tuple[str, ...] = ("reinforce", "disarm"), dim: int = 100, repeats: int = 3,
                    budget_s: float = 0.3, device: str = "cpu") -> list[dict[str, Any]]:
    """bernoulli-quadratic at ``dim``, single-draw estimates per second: the backward() loop
    against the runner's own path (eager)."""
    from .problems.discrete import BernoulliSetting

    problem, ctx = get("bernoulli-quadratic"), Context(compile="off", device=device)
    s = BernoulliSetting(theta=0.0, t=0.45, dim=dim)
    rows = []
    for name in names:
        est = estimators.get(name)
        probe = _median_time(lambda: discrete_loop(est, dim, 1, 20, ctx), 1, device) / 20
        r_loop = max(20, int(budget_s / probe))
        t_loop = _median_time(lambda: discrete_loop(est, dim, 1, r_loop, ctx), repeats, device) / r_loop
        t_runner, _ = _runner_time(problem, est, s, None, 1, 20_000 if budget_s >= 0.3 else 5_000, ctx, repeats)
        rows.append({"estimator": name, "dim": dim, "loop_per_s": 1 / t_loop, "eager_per_s": 1 / t_runner,
                     "speedup": t_loop / t_runner})
    return rows


# -- yardsticks --------------------------------------------------------------------------------

def matmul_gflops(n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """float32 n x n matmul throughput measured now, the yardstick for effective FLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / _median_time(lambda: a @ b, repeats, device) / 1e9


def copy_gbps(n: int = 1 << 25, repeats: int = 5, device: str = "cpu") -> float:
    """Memory bandwidth of a float32 copy (bytes read + written per second)."""
    a, b = torch.empty(n, device=device), torch.empty(n, device=device)
    a.fill_(1.0)
    return 2 * 4 * n / _median_time(lambda: b.copy_(a), repeats, device) / 1e9


# -- toy problems ------------------------------------------------------------------------------

def toy_speeds(dims: tuple[int, ...] = (1, 100, 10000), names: tuple[str, ...] = TOY_ESTIMATORS,
               compile: bool = True, jax: bool = True, repeats: int = 3, budget_s: float = 0.3,
               device: str = "cpu") -> list[dict[str, Any]]:
    """Estimates per second on gaussian-quadratic, n = 1: loop, runner eager, runner compiled, JAX.

    Each path runs about ``budget_s`` seconds per repeat (R scaled from a probe), so slow
    and fast paths are timed with similar precision; R is at least 1000 for the runner.
    JAX runs on the same device (its CPU, or its GPU where JAX was installed with CUDA
    support); where it cannot, there is no JAX column.
    """
    problem = get("gaussian-quadratic")
    assert isinstance(problem, GaussianProblem)
    run_jax = _jax_runner(device) if jax else None
    rows = []
    for dim in dims:
        s = GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=dim)
        for name in names:
            est = estimators.get(name)
            eager, comp = Context(compile="off", device=device), Context(compile="on", device=device)
            loop = lambda r: naive_loop(problem, est, s, 1, r, eager)  # noqa: E731
            probe = _median_time(lambda: loop(20), 1, device) / 20
            r_loop = max(20, int(budget_s / probe))
            t_loop = _median_time(lambda: loop(r_loop), repeats, device) / r_loop
            if device == "cpu":
                # the runner is 10-1000x faster; R x dim at most 2^22, since JAX holds all R at once
                r_run = min(max(1000, int(budget_s / t_loop * 50)), max(100, (1 << 22) // dim))
            else:
                # a GPU is busy only with millions of numbers at once (runner.GPU_CHUNK_FACTOR)
                r_run = max(100, (1 << 26) // dim)
            t_eager, _ = _runner_time(problem, est, s, None, 1, r_run, eager, repeats)
            row: dict[str, Any] = {"dim": dim, "estimator": name, "loop_per_s": 1 / t_loop,
                                   "eager_per_s": 1 / t_eager, "replicates": r_run}
            if compile:
                try:
                    t_comp, c_s = _runner_time(problem, est, s, None, 1, r_run, comp, repeats)
                    row.update(compiled_per_s=1 / t_comp, compile_s=c_s)
                except CompileFailed as exc:
                    row["compile_failed"] = str(exc)
            if run_jax is not None:
                row["jax_per_s"] = run_jax(name, dim, r_run, repeats)
            best = max(row["eager_per_s"], row.get("compiled_per_s", 0.0))
            row["speedup"] = best / row["loop_per_s"]
            if "jax_per_s" in row:
                row["vs_jax"] = best / row["jax_per_s"]
            rows.append(row)
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


def _jax_runner(device: str = "cpu") -> Callable[[str, int, int, int], float] | None:
    """JAX jit(vmap(grad)) of the same estimators on the same problem, on ``device`` (see
    jax_device), or None where JAX cannot run there.

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

    def run(name: str, dim: int, R: int, repeats: int) -> float:
        rule = {"reinforce-ema": "baseline"}.get(name, name)
        fn = make(rule, dim, R)
        with jax.default_device(where):
            key, b = jax.device_put((jax.random.PRNGKey(0), jnp.float32(dim)), where)
            jax.block_until_ready(fn(key, b))  # compile
            t = _median_time(lambda: jax.block_until_ready(fn(key, b)), repeats)
        return R / t

    return run


# -- the VAE -----------------------------------------------------------------------------------

def vae_flops(x_dim: int = 64, hidden: int = 256, latent: int = 8, batch: int = 128, n_samples: int = 1,
              pathwise: bool = True) -> float:
    """FLOPs (2 per multiply-add) of the matmuls of one per-sample encoder-gradient estimate:
    per drawn z the decoder's forward and, for a pathwise estimator, its backward to z (a
    score-function estimator does not differentiate f); once, the encoder's backward from
    its outputs to its weights (its forward is shared by all replicates). Elementwise work
    (tanh, sampling, the Bernoulli log-likelihood, statistics) is not counted."""
    dec = 2 * batch * (latent * hidden + hidden * x_dim)
    enc_back = 2 * batch * (2 * latent * hidden) * 2 + 2 * batch * x_dim * hidden
    return n_samples * dec * (2 if pathwise else 1) + enc_back


def vae_speeds(names: tuple[str, ...] = ("reparameterization", "reinforce"), n_samples: int = 1,
               compile: bool = True, repeats: int = 3, loop_replicates: int = 50,
               replicates: int = 2000, device: str = "cpu") -> list[dict[str, Any]]:
    """Digits VAE (batch 128, untrained): ms per encoder-gradient estimate, loop vs runner."""
    from .problems import VAESetting

    problem = get("vae-digits")
    setting = VAESetting("untrained", 256, 8, 128)
    eager, comp = Context(compile="off", device=device), Context(compile="on", device=device)
    prep = problem.prepare(setting, eager)
    rows = []
    for name in names:
        est = estimators.get(name)
        loop = lambda: vae_loop(prep.model, prep.x, est, n_samples, loop_replicates)  # noqa: E731
        row: dict[str, Any] = {"estimator": name, "loop_s": _median_time(loop, repeats, device) / loop_replicates}
        row["eager_s"], _ = _runner_time(problem, est, setting, prep, n_samples, replicates, eager, repeats)
        if compile:
            try:
                row["compiled_s"], row["compile_s"] = _runner_time(problem, est, setting, prep, n_samples, replicates,
                                                                   comp, repeats)
            except CompileFailed as exc:
                row["compile_failed"] = str(exc)
        row["best_s"] = min(row["eager_s"], row.get("compiled_s", math.inf))
        row["speedup"] = row["loop_s"] / row["best_s"]
        row["mflop"] = vae_flops(n_samples=n_samples, pathwise=est.requires_rsample) / 1e6
        row["gflops"] = row["mflop"] * 1e6 / row["best_s"] / 1e9
        rows.append(row)
    return rows


def vae_training_overhead(steps: int = 50, rounds: int = 15, clock: Callable[[], float] = time.perf_counter,
                          device: str = "cpu") -> dict[str, float]:
    """Seconds per Adam step: through the estimator interface (benchmarks.problems.vae) against
    the classic hand-written loop with the reparameterization inline (PyTorch's VAE example).

    Both train their own model from the same initialization on the same batches. They run in
    ``rounds`` rounds of ``steps`` steps each, alternating which goes first; the overhead is
    the median of the per-round ratios, which cancels drift of a shared, noisy machine.
    """
    import torch.nn.functional as F

    from .data import load_digits
    from .problems.vae import VAE, elbo_step_loss

    data = load_digits()
    batches = [data.train[i * 128 % 1400 : i * 128 % 1400 + 128].to(device) for i in range(steps)]
    est = estimators.get("reparameterization")
    ctx = Context(device=device)

    def make() -> tuple[VAE, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = VAE(data.dim, 256, 8).to(device)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    m_suite, o_suite = make()
    m_inline, o_inline = make()

    def suite() -> None:
        for x in batches:
            loss, _, _ = elbo_step_loss(m_suite, x, est, 1, None)
            o_suite.zero_grad(set_to_none=True)
            loss.backward()
            o_suite.step()

    def inline() -> None:
        model, opt = m_inline, o_inline
        for x in batches:
            mu, logvar = model.encoder(x).chunk(2, dim=-1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(-1)
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def timed(fn: Callable[[], None]) -> float:
        sync(ctx)
        start = clock()
        fn()
        sync(ctx)
        return (clock() - start) / steps

    suite(), inline()  # warm-up
    t_suite, t_inline, ratios = [], [], []
    for i in range(rounds):
        if i % 2:
            b, a = timed(inline), timed(suite)
        else:
            a, b = timed(suite), timed(inline)
        t_suite.append(a)
        t_inline.append(b)
        ratios.append(a / b)
    return {"suite_s_per_step": statistics.median(t_suite), "inline_s_per_step": statistics.median(t_inline),
            "overhead": statistics.median(ratios) - 1}


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


# -- the binary VAE ----------------------------------------------------------------------------

def binary_vae_speeds(names: tuple[str, ...] = ("reinforce", "disarm", "exact"), n_samples: int = 1,
                      repeats: int = 3, loop_replicates: int = 50, replicates: int = 2000,
                      device: str = "cpu") -> list[dict[str, Any]]:
    """Binary digits VAE (hidden 256, latent 8, batch 128, untrained): seconds per encoder-gradient
    estimate, one backward() per replicate against the runner's own path (eager)."""
    from .problems import VAESetting

    problem = get("vae-digits-binary")
    setting = VAESetting("untrained", 256, 8, 128)
    ctx = Context(compile="off", device=device)
    prep = problem.prepare(setting, ctx)
    rows = []
    for name in names:
        est = estimators.get(name)
        loop = lambda: vae_loop(prep.model, prep.x, est, n_samples, loop_replicates)  # noqa: E731
        row: dict[str, Any] = {"estimator": name, "loop_s": _median_time(loop, repeats, device) / loop_replicates}
        row["eager_s"], _ = _runner_time(problem, est, setting, prep, n_samples, replicates, ctx, repeats)
        row["speedup"] = row["loop_s"] / row["eager_s"]
        rows.append(row)
    return rows


def enumeration_times(latents: tuple[int, ...] = (8, 12), repeats: int = 3, device: str = "cpu") -> list[dict[str, Any]]:
    """Seconds for the binary VAE's exact ELBO gradient (every latent configuration enumerated, float64;
    hidden 256, batch 128, untrained): what every cell's truth costs, once per setting."""
    from .problems import VAESetting

    problem = get("vae-digits-binary")
    ctx = Context(compile="off", device=device)
    rows = []
    for latent in latents:
        setting = VAESetting("untrained", 256, latent, 128)
        model = problem.model(setting, ctx).to(torch.float64)
        x = problem.batch(setting, ctx).to(torch.float64)
        params = list(model.encoder.parameters())
        fn = lambda: torch.autograd.grad(model.exact_elbo(x).mean(), params)  # noqa: E731
        fn()
        rows.append({"latent": latent, "configurations": 1 << latent, "seconds": _median_time(fn, repeats, device)})
    return rows
