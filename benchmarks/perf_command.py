"""``estbench perf``: measure (benchmarks.perf) and print the figures; ``--json`` keeps them.

    python -m benchmarks.perf_command [options]   (the same as estbench perf)
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from .perf import (
    binary_vae_speeds,
    copy_gbps,
    discrete_speeds,
    enumeration_times,
    jax_device,
    matmul_gflops,
    peak_memory,
    recent_speeds,
    toy_speeds,
    vae_speeds,
    vae_training_overhead,
)
from .sweep import SweepError, check_device


def _print_compile_failures(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if "compile_failed" in r:
            where = f"dim {r['dim']} " if "dim" in r else ""
            print(f"(compiled {where}{r['estimator']}: {r['compile_failed'][:300]})")


def _jax_version() -> str:
    try:
        import jax
    except ImportError:
        return ""
    return jax.__version__


def _vs_jax(row: dict[str, Any], key: str) -> str:
    """'1.52x (1.31-1.70)': a ratio's median over the rounds and its range; '-' where there is none."""
    if row.get(key) is None:
        return "-"
    low, high = row[f"{key}_range"]
    return f"{row[key]:.2f}x ({low:.2f}-{high:.2f})"


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _fmt(x: float | None, spec: str, unit: str = "") -> str:
    """x formatted with spec and unit, or '-' where it was not measured (no JAX, --compile off)."""
    return "-" if x is None or math.isnan(x) else f"{x:{spec}}{unit}"


def _ratio(r: dict[str, Any]) -> str:
    """The runner's median ratio to the loop, with the range of the side-by-side pairs' ratios."""
    lo, hi = r["speedup_range"]
    return f"{r['speedup']:,.0f}x ({lo:,.0f}-{hi:,.0f})"


def _discrete_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'estimator':<19} {'loop':>9} {'runner':>11} {'x loop (range)':>16} {'compiled':>11} {'compile':>8} "
          f"{'x loop':>7}")
    for r in rows:
        print(f"{r['estimator']:<19} {_fmt_rate(r['loop_per_s']):>9} {_fmt_rate(r['eager_per_s']):>11} "
              f"{_ratio(r):>16} {_fmt_rate(r.get('compiled_per_s')):>11} {_fmt(r.get('compile_s'), '.1f', 's'):>8} "
              f"{_fmt(r.get('compiled_speedup'), ',.0f', 'x'):>7}")
    _print_compile_failures(rows)


def check_args(args: argparse.Namespace) -> None:
    """Refuse impossible options before measuring anything (SweepError, one line)."""
    if args.repeats < 1:
        raise SweepError(f"--repeats must be >= 1, got --repeats {args.repeats}")
    for d in args.dim or ():
        if d < 1:
            raise SweepError(f"--dim must be >= 1, got --dim {d}")
    if args.json:
        path = Path(args.json)
        folder = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise SweepError(f"--json {path} is a directory; give a file name")
        if path.exists() and not path.is_file():
            raise SweepError(f"--json {path} is not a regular file")
        if not folder.is_dir():
            raise SweepError(f"--json {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise SweepError(f"--json {path}: cannot write there (Permission denied)")


def main(args: argparse.Namespace | None = None) -> dict[str, Any]:
    if args is None:
        args = build_parser().parse_args()
    check_args(args)
    if getattr(args, "cluster", False):
        from benchmarks.cluster import ClusterSpec
        from benchmarks.perf_cluster import main as cluster_main

        ClusterSpec(workers=2).check()  # one line if Dask is not installed
        out = cluster_main(2)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        return out
    compile_ = args.compile != "off"
    device = args.device
    check_device(device)
    threads = torch.get_num_threads()
    where = f"{threads} threads, {os.cpu_count()} CPUs"
    if device != "cpu":
        where = f"{torch.cuda.get_device_name(device)} ({device}, CUDA {torch.version.cuda}); host {where}"
    print(f"torch {torch.__version__}, {where}; float32; medians of {args.repeats} runs")
    out: dict[str, Any] = {"device": device}
    out["matmul_gflops"], out["copy_gbps"] = matmul_gflops(device=device), copy_gbps(device=device)
    print(f"yardsticks: float32 matmul 2048x2048 {out['matmul_gflops']:.0f} GFLOP/s, copy {out['copy_gbps']:.1f} GB/s")

    dims = tuple(args.dim) if args.dim else ((1, 100) if args.quick else (1, 100, 10000))
    out["toy"] = toy_speeds(dims=dims, compile=compile_, jax=not args.no_jax, repeats=args.repeats,
                            budget_s=0.1 if args.quick else 0.3, device=device)
    has_jax = any("jax_per_s" in r for r in out["toy"])
    print("\ngaussian-quadratic, single-sample estimates per second (runner = sampling + estimator + float64 stats);"
          f"\nrunner, compiled and JAX timed in turn, {args.repeats} rounds: medians, and each ratio to JAX the median"
          " (and range) of the rounds' ratios")
    print(f"{'dim':>6} {'estimator':<19} {'loop':>9} {'runner':>11} {'compiled':>11} {'compile':>8} {'jax':>11}"
          f" {'x loop':>7} {'runner / jax':>17} {'compiled / jax':>17}")
    for r in out["toy"]:
        print(f"{r['dim']:>6} {r['estimator']:<19} {_fmt_rate(r['loop_per_s']):>9} {_fmt_rate(r['eager_per_s']):>11} "
              f"{_fmt_rate(r.get('compiled_per_s')):>11} {_fmt(r.get('compile_s'), '.1f', 's'):>8} "
              f"{_fmt_rate(r.get('jax_per_s')):>11} {r['speedup']:>6,.0f}x {_vs_jax(r, 'eager_vs_jax'):>17} "
              f"{_vs_jax(r, 'compiled_vs_jax'):>17}")
    _print_compile_failures(out["toy"])
    if has_jax:
        print(f"(JAX {_jax_version()} ran on {jax_device(device)})")
    elif not args.no_jax and device != "cpu" and _jax_version():
        print(f"(no JAX column: JAX {_jax_version()} has no GPU backend here)")
    elif not args.no_jax:
        print("(JAX not installed: pip install -c constraints.txt -e '.[jax]' adds the JAX column)")

    out["discrete"] = discrete_speeds(repeats=args.repeats, budget_s=0.1 if args.quick else 0.3, device=device,
                                      compile=compile_)
    print("\nbernoulli-quadratic (dim 100), single-draw estimates per second, eager and compiled")
    _discrete_table(out["discrete"])

    out["bound"] = discrete_speeds(("vimco", "local-disarm", "reinforce"), repeats=args.repeats,
                                   budget_s=0.1 if args.quick else 0.3, device=device, K=8, compile=compile_)
    print("\nbernoulli-multisample (dim 100, K 8), estimates of the bound's gradient per second")
    _discrete_table(out["bound"])

    out["recent"] = recent_speeds(repeats=args.repeats, budget_s=0.1 if args.quick else 0.3, device=device,
                                  compile=compile_)
    print("\nthe 2019-2023 estimators, estimates per second at their fewest draws: bernoulli-quadratic (dim 100), "
          "categorical-quadratic (K 100)")
    print(f"{'problem':<22} {'estimator':<22} {'n':>2} {'loop':>9} {'runner':>11} {'x loop (range)':>16} {'compiled':>11} "
          f"{'compile':>8} {'x loop':>7}")
    for r in out["recent"]:
        print(f"{r['problem']:<22} {r['estimator']:<22} {r['n_samples']:>2} {_fmt_rate(r['loop_per_s']):>9} "
              f"{_fmt_rate(r['eager_per_s']):>11} {_ratio(r):>16} {_fmt_rate(r.get('compiled_per_s')):>11} "
              f"{_fmt(r.get('compile_s'), '.1f', 's'):>8} {_fmt(r.get('compiled_speedup'), ',.0f', 'x'):>7}")
    _print_compile_failures(out["recent"])

    gpu = device != "cpu"  # a GPU needs more replicates per measurement: its chunks are larger
    out["vae"] = vae_speeds(compile=compile_, repeats=args.repeats,
                            replicates=(8192 if args.quick else 20000) if gpu else (500 if args.quick else 2000),
                            loop_replicates=20 if args.quick else 50, device=device)
    out["vae_matmul_gflops"] = matmul_gflops(device=device)  # again, next to the VAE figures: the load on the machine drifts
    peak = max(out["matmul_gflops"], out["vae_matmul_gflops"])
    print(f"\ndigits VAE (batch 128, untrained), per-sample encoder gradients, n_samples 1; matmul measured "
          f"again now: {out['vae_matmul_gflops']:.0f} GFLOP/s, the better of the two ({peak:.0f}) is the yardstick")
    print(f"{'estimator':<19} {'loop ms':>8} {'runner ms':>10} {'compiled ms':>12} {'compile':>8} {'x loop':>7} "
          f"{'MFLOP':>6} {'GFLOP/s':>8} {'of matmul':>9}")
    for r in out["vae"]:
        r["of_matmul"] = r["gflops"] / peak
        # 4 significant digits: a GPU's figures are in microseconds
        print(f"{r['estimator']:<19} {r['loop_s'] * 1e3:>8.4g} {r['eager_s'] * 1e3:>10.4g} "
              f"{_fmt(r['compiled_s'] * 1e3 if 'compiled_s' in r else None, '.4g'):>12} "
              f"{_fmt(r.get('compile_s'), '.1f', 's'):>8} "
              f"{r['speedup']:>6.1f}x {r['mflop']:>6.1f} {r['gflops']:>8.1f} {r['of_matmul']:>8.0%}")

    _print_compile_failures(out["vae"])

    out["binary_vae"] = binary_vae_speeds(repeats=args.repeats, replicates=500 if args.quick else 2000,
                                          loop_replicates=20 if args.quick else 50, device=device)
    print("\nbinary digits VAE (hidden 256, latent 8, batch 128, untrained), encoder-gradient estimates, n_samples 1, "
          "eager")
    print(f"{'estimator':<19} {'loop ms':>8} {'runner ms':>10} {'x loop':>7}")
    for r in out["binary_vae"]:
        print(f"{r['estimator']:<19} {r['loop_s'] * 1e3:>8.4g} {r['eager_s'] * 1e3:>10.4g} {r['speedup']:>6.1f}x")
    out["enumeration"] = enumeration_times(repeats=args.repeats, device=device)
    print("exact ELBO gradient by enumeration (float64, all 2^latent configurations, the truth of every cell): "
          + "; ".join(f"latent {r['latent']}: {r['seconds'] * 1e3:.4g} ms ({r['configurations']:,} configurations)"
                      for r in out["enumeration"]))

    if args.all:
        o = out["training"] = vae_training_overhead(device=device)
        print(f"\nVAE training step (Adam, batch 128): estimator interface {o['suite_s_per_step'] * 1e3:.3f} ms, "
              f"hand-written inline {o['inline_s_per_step'] * 1e3:.3f} ms: overhead {o['overhead'] * 100:+.1f}%")
        print("\npeak resident memory of one cell in a fresh process (reparameterization, n_samples 1, eager):")
        out["memory"] = []
        # on a large GPU one chunk holds 671,040 toy or 4,096 VAE replicates (runner.chunk_factor):
        # R from a chunk up, so that an unchanged peak shows memory bounded independently of R
        sizes = ((("gaussian-quadratic", (1_000_000, 10_000_000)), ("vae-digits", (10_000, 100_000))) if gpu else
                 (("gaussian-quadratic", (10_000, 1_000_000)), ("vae-digits", (1_000, 10_000))))
        for problem, rs in sizes:
            for R in rs:
                m = peak_memory(problem, R, device)
                out["memory"].append({"problem": problem, "replicates": R, **m})
                size = "dim 100" if problem.startswith("gaussian") else "batch 128"
                on_gpu = (f"; GPU peak {m['gpu_peak_mb']:.0f} MB (before {m['gpu_before_mb']:.0f} MB)"
                          if "gpu_peak_mb" in m else "")
                print(f"  {problem} ({size}), R = {R:>9,}: peak {m['peak_mb']:7.0f} MB "
                      f"(before the cell {m['before_mb']:.0f} MB){on_gpu}, {m['seconds']:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is kept (default: 3)")
    p.add_argument("--dim", type=int, nargs="+", help="toy dimensions (default: 1 100 10000)")
    p.add_argument("--compile", choices=["on", "off"], default="on",
                   help="also time the runner under torch.compile (default: on)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu); JAX runs on the same device where it can")
    p.add_argument("--no-jax", action="store_true", help="skip the JAX column even if JAX is installed")
    p.add_argument("--quick", action="store_true", help="fewer dimensions and replicates (about a minute)")
    p.add_argument("--all", action="store_true", help="also the VAE training-step overhead and peak memory")
    p.add_argument("--json", metavar="FILE", help="write every figure to this JSON file")
    p.add_argument("--cluster", action="store_true",
                   help="only: a sweep of 224 toy cells serially against --workers 2 (needs the [dask] extra)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf_command", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


if __name__ == "__main__":
    parser = build_parser()
    try:
        main(parser.parse_args())
    except SweepError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
