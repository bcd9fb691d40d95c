"""GPU probe: chunk size and the per-chunk finiteness check on the runner's own path.

python tools/gpu_probe.py cuda OUT.json   (PROBE_SMALL=1 with cpu: a dry run)
"""
import json
import os
import statistics
import sys
import time

import estimators
from benchmarks import engine
from benchmarks.engine import CellEngine
from benchmarks.problems import Context, GaussianSetting, VAESetting, get

device, out_path = sys.argv[1], sys.argv[2]
# factors below are relative to the problems' own (CPU-sized) chunks: the engine's GPU
# factor (engine.chunk_factor) is set aside for the probe
engine.chunk_factor = lambda ctx: 1
T0 = time.perf_counter()

SMALL = os.environ.get("PROBE_SMALL") == "1"  # a dry run of the script on the CPU
FACTORS, TOP = ((1, 2), 2) if SMALL else ((1, 4, 16, 64), 64)
results = []


def per_estimate(problem, est, s, prep, R, ctx, factor, repeats=5, finite=True):
    base = type(problem).chunk_size(problem, s, 1)
    problem.chunk_size = lambda s_, n_: base * factor
    try:
        eng = CellEngine(problem, est, s, prep, 1, R, ctx)
    finally:
        del problem.chunk_size
    orig = engine._check_finite
    times = []
    if not finite:
        engine._check_finite = lambda stats: None
    try:
        for _ in range(repeats):
            eng.measure()
            times.append(eng.timing.elapsed)
    finally:
        engine._check_finite = orig
    return statistics.median(times) / R, base * factor, eng.timing.compile_s


def rec(**row):
    results.append(row)
    print(json.dumps(row), flush=True)
    with open(out_path, "w") as fh:
        json.dump(results, fh, indent=1)


toy = get("gaussian-quadratic")
eager = Context(device=device)
for dim in ((100,) if SMALL else (1, 100, 10000)):
    s = GaussianSetting(1.0, 1.0, 0.0, dim)
    base = toy.chunk_size(s, 1)
    for name in ("reparameterization", "reinforce"):
        est = estimators.get(name)
        for factor in FACTORS:
            R = base * TOP
            t, c, _ = per_estimate(toy, est, s, None, R, eager, factor)
            rec(kind="toy", dim=dim, est=name, factor=factor, chunk=c, R=R, per_s=1 / t, compiled=False)
        R = base * (1 if SMALL else 4)
        t_on, _, _ = per_estimate(toy, est, s, None, R, eager, 1, finite=True)
        t_off, _, _ = per_estimate(toy, est, s, None, R, eager, 1, finite=False)
        rec(kind="finite", dim=dim, est=name, R=R, with_check=1 / t_on, without=1 / t_off)

vae = get("vae-digits")
vs = VAESetting("untrained", 256, 8, 128)
prep = vae.prepare(vs, eager)
vbase = vae.chunk_size(vs, 1)
for name in ("reparameterization", "reinforce"):
    est = estimators.get(name)
    for factor in FACTORS:
        R = vbase * TOP
        t, c, _ = per_estimate(vae, est, vs, prep, R, eager, factor)
        rec(kind="vae", est=name, factor=factor, chunk=c, R=R, ms=t * 1e3, compiled=False)
    t_on, _, _ = per_estimate(vae, est, vs, prep, vbase * (1 if SMALL else 8), eager, 1, finite=True)
    t_off, _, _ = per_estimate(vae, est, vs, prep, vbase * (1 if SMALL else 8), eager, 1, finite=False)
    rec(kind="finite-vae", est=name, R=vbase * (1 if SMALL else 8), with_ms=t_on * 1e3, without_ms=t_off * 1e3)

comp = Context(device=device, compile="on")
for factor in ((1,) if SMALL else (1, 16)):
    if time.perf_counter() - T0 > 150:
        print("skipping compiled probes: time", flush=True)
        break
    s = GaussianSetting(1.0, 1.0, 0.0, 100)
    t, c, cs = per_estimate(toy, estimators.get("reinforce"), s, None, toy.chunk_size(s, 1) * TOP, comp, factor)
    rec(kind="toy", dim=100, est="reinforce", factor=factor, chunk=c, per_s=1 / t, compiled=True, compile_s=cs)
    t, c, cs = per_estimate(vae, estimators.get("reparameterization"), vs, prep, vbase * TOP, comp, factor)
    rec(kind="vae", est="reparameterization", factor=factor, chunk=c, ms=t * 1e3, compiled=True, compile_s=cs)
print(f"probe done in {time.perf_counter() - T0:.0f} s", flush=True)
