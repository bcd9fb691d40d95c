"""Speed of the VAE problems, as ratios measured side by side in one run (see benchmarks.perf):
the runner against a ``backward()`` loop, effective GFLOP/s, the training step's overhead and
the binary VAE's enumeration."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import estimators
from estimators import Estimator

from .perf_common import CompileFailed, median_time, runner_time
from .problems import Context, get
from .runner import sync


def vae_loop(model: Any, x: torch.Tensor, est: Estimator, n_samples: int, replicates: int) -> None:
    """The naive VAE baseline: one encoder-gradient estimate per ``backward()``, ``replicates`` times."""
    model.encoder.requires_grad_(True)
    for _ in range(replicates):
        model.encoder.zero_grad(set_to_none=True)
        q = model.q(x)
        (est(q, model.log_likelihood(x), n_samples).loss - model.kl(q)).mean().backward()


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
               replicates: int = 2000, device: str = "cpu", problem_name: str = "vae-digits") -> list[dict[str, Any]]:
    """A digits VAE (hidden 256, latent 8, batch 128, untrained): seconds per encoder-gradient estimate,
    one backward() per replicate against the runner's own path, eager and (``compile``) compiled; for the
    Gaussian VAE also the effective GFLOP/s (vae_flops)."""
    from .problems import VAESetting

    problem = get(problem_name)
    setting = VAESetting("untrained", 256, 8, 128)
    eager, comp = Context(compile="off", device=device), Context(compile="on", device=device)
    prep = problem.prepare(setting, eager)
    rows = []
    for name in names:
        est = estimators.get(name)
        loop = lambda: vae_loop(prep.model, prep.x, est, n_samples, loop_replicates)  # noqa: E731
        row: dict[str, Any] = {"estimator": name, "loop_s": median_time(loop, repeats, device) / loop_replicates}
        row["eager_s"], _ = runner_time(problem, est, setting, prep, n_samples, replicates, eager, repeats)
        if compile:
            try:
                row["compiled_s"], row["compile_s"] = runner_time(problem, est, setting, prep, n_samples, replicates,
                                                                   comp, repeats)
            except CompileFailed as exc:
                row["compile_failed"] = str(exc)
        row["best_s"] = min(row["eager_s"], row.get("compiled_s", math.inf))
        row["speedup"] = row["loop_s"] / row["best_s"]
        if problem_name == "vae-digits":
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
    from .problems.training import elbo_step_loss
    from .problems.vae import VAE

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


# -- the binary VAE ----------------------------------------------------------------------------

def binary_vae_speeds(names: tuple[str, ...] = ("reinforce", "disarm", "exact"), n_samples: int = 1,
                      repeats: int = 3, loop_replicates: int = 50, replicates: int = 2000,
                      device: str = "cpu") -> list[dict[str, Any]]:
    """The binary digits VAE: vae_speeds, eager only."""
    return vae_speeds(names, n_samples, False, repeats, loop_replicates, replicates, device, "vae-digits-binary")


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
        rows.append({"latent": latent, "configurations": 1 << latent, "seconds": median_time(fn, repeats, device)})
    return rows
