"""Speed of the runner against the obvious loop, measured side by side in one run.

The naive baseline draws each replicate on its own: build N(mu, sigma) with
[dim] leaf parameters, call the estimator, ``backward()``, read ``.grad``;
R times. The runner's path (benchmarks.runner.estimate_cell) expands the
parameters per replicate and makes one autograd call per chunk. Both include
sampling, the estimator and collecting the gradients; the runner's also
includes its streaming statistics.

    python -m benchmarks.perf          (or: estbench perf)
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch.distributions import Independent, Normal

import estimators
from estimators import Estimator

from .problems import Context, GaussianProblem, GaussianSetting, get
from .runner import estimate_cell


def naive_loop(problem: GaussianProblem, est: Estimator, s: GaussianSetting, n: int, R: int, ctx: Context) -> torch.Tensor:
    """R estimates, one backward() each; returns the mu-gradients [R, dim]."""
    f = problem.f(s.k)
    out = torch.empty(R, s.dim, dtype=ctx.dtype)
    state = est.init_state()
    for r in range(R):
        mu = torch.full((s.dim,), s.mu, dtype=ctx.dtype, requires_grad=True)
        sigma = torch.full((s.dim,), s.sigma, dtype=ctx.dtype, requires_grad=True)
        sur = est(Independent(Normal(mu, sigma, validate_args=False), 1), f, n, state)
        sur.loss.backward()
        state = sur.state
        out[r] = mu.grad
    return out


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of fn(); if fn returns a (result, seconds) pair, its own timing is used
    (the runner's, which leaves out a stateful estimator's untimed warm-up, as in the results table)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - start
        times.append(out[1] if isinstance(out, tuple) else elapsed)
    return statistics.median(times)


def speedups(dim: int = 100, replicates: int = 1000, n_samples: int = 4, repeats: int = 5,
             names: list[str] | None = None, dtype: torch.dtype = torch.float32) -> list[dict[str, float | str]]:
    """Per estimator: seconds per estimate of the loop and of the runner, and their ratio."""
    ctx = Context(dtype=dtype)
    problem = get("gaussian-quadratic")
    assert isinstance(problem, GaussianProblem)
    s = GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=dim)
    rows = []
    for name in names or estimators.builtin_names():
        est = estimators.get(name)
        t_loop = _median_time(lambda: naive_loop(problem, est, s, n_samples, replicates, ctx), repeats)
        t_vec = _median_time(lambda: estimate_cell(problem, est, s, None, n_samples, replicates, ctx), repeats)
        rows.append({
            "estimator": name,
            "loop_s_per_estimate": t_loop / replicates,
            "runner_s_per_estimate": t_vec / replicates,
            "speedup": t_loop / t_vec,
        })
    return rows


def main(args: argparse.Namespace | None = None) -> list[dict[str, float | str]]:
    if args is None:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--replicates", type=int, default=1000)
        parser.add_argument("--dim", type=int, default=100)
        parser.add_argument("--repeats", type=int, default=5)
        args = parser.parse_args()
    print(f"gaussian-quadratic, dim={args.dim}, R={args.replicates}, n_samples=4, float32, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} runs")
    print(f"{'estimator':<20} {'loop est/s':>12} {'runner est/s':>14} {'speedup':>9}")
    rows = speedups(dim=args.dim, replicates=args.replicates, repeats=args.repeats)
    for r in rows:
        print(f"{r['estimator']:<20} {1 / r['loop_s_per_estimate']:>12,.0f} "
              f"{1 / r['runner_s_per_estimate']:>14,.0f} {r['speedup']:>8.1f}x")
    if getattr(args, "all", False):
        print(f"\nfloat32 matmul 2048x2048: {matmul_gflops():.0f} GFLOP/s (measured now)")
        print("\ndigits VAE (batch 128, untrained), encoder-gradient estimates, n_samples 1:")
        print(f"{'estimator':<20} {'loop ms/est':>12} {'runner ms/est':>14} {'speedup':>9}")
        for r in vae_estimates(repeats=args.repeats):
            print(f"{r['estimator']:<20} {r['loop_s_per_estimate'] * 1e3:>12.3f} "
                  f"{r['runner_s_per_estimate'] * 1e3:>14.3f} {r['speedup']:>8.1f}x")
        o = vae_training_overhead(repeats=args.repeats)
        print(f"\nVAE training step, estimator interface {o['suite_s_per_step'] * 1e3:.3f} ms, hand-written inline "
              f"{o['inline_s_per_step'] * 1e3:.3f} ms: overhead {o['overhead'] * 100:+.1f}%")
    return rows


if __name__ == "__main__":
    main()


# -- more ratios (issue: fast and lean) ----------------------------------------------------------

def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 n x n matmul throughput measured now, the yardstick for effective FLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = _median_time(lambda: a @ b, repeats)
    return 2 * n**3 / t / 1e9


def vae_estimates(replicates: int = 200, n_samples: int = 1, names: list[str] | None = None,
                  repeats: int = 3) -> list[dict[str, float | str]]:
    """Digits VAE, untrained checkpoint, batch 128: seconds per encoder-gradient estimate,
    a loop of backward() per replicate against the runner's vectorized path."""
    from .problems import VAESetting

    problem = get("vae-digits")
    setting = VAESetting("untrained", 256, 8, 128)
    ctx = Context(dtype=torch.float32)
    prep = problem.prepare(setting, ctx)
    model, x = prep.model, prep.x
    model.encoder.requires_grad_(True)
    rows = []
    for name in names or ["reparameterization", "reinforce"]:
        est = estimators.get(name)

        def loop():
            for _ in range(replicates):
                model.encoder.zero_grad(set_to_none=True)
                q = model.q(x)
                sur = est(q, model.log_likelihood(x), n_samples)
                (sur.loss - model.kl(q)).mean().backward()

        t_loop = _median_time(loop, repeats)
        t_vec = _median_time(lambda: estimate_cell(problem, est, setting, prep, n_samples, replicates, ctx), repeats)
        rows.append({"estimator": name, "loop_s_per_estimate": t_loop / replicates,
                     "runner_s_per_estimate": t_vec / replicates, "speedup": t_loop / t_vec})
    return rows


def vae_training_overhead(steps: int = 200, repeats: int = 3) -> dict[str, float]:
    """Seconds per Adam step: through the estimator interface (benchmarks.problems.vae) against
    the classic hand-written loop with the reparameterization inline (PyTorch's VAE example)."""
    import torch.nn.functional as F

    from .data import load_digits
    from .problems.vae import VAE, elbo_step_loss

    data = load_digits()
    batches = [data.train[i * 128 % 1400 : i * 128 % 1400 + 128] for i in range(steps)]
    est = estimators.get("reparameterization")

    def make():
        torch.manual_seed(0)
        model = VAE(data.dim, 256, 8)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    def suite():
        model, opt = make()
        for x in batches:
            loss, _, _ = elbo_step_loss(model, x, est, 1, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def inline():
        model, opt = make()
        for x in batches:
            mu, logvar = model.encoder(x).chunk(2, dim=-1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(-1)
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    t_suite = _median_time(suite, repeats) / steps
    t_inline = _median_time(inline, repeats) / steps
    return {"suite_s_per_step": t_suite, "inline_s_per_step": t_inline, "overhead": t_suite / t_inline - 1}
