"""python tools/gpu_profile.py OUTDIR cuda

GPU: where the compiled runner's time goes (torch.profiler, kernel table), and an A/B of
normals drawn in inductor's kernels instead of the eager normal kernel. Run with
TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 (the caches' key ignores a custom decomposition table)."""
import statistics
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import estimators
from benchmarks import compiling, runner
from benchmarks.problems import Context, GaussianSetting, VAESetting, get

out, DEV = sys.argv[1], sys.argv[2]
SMALL = DEV == "cpu"
aten = torch.ops.aten

def nf(self, mean=0.0, std=1.0, *, generator=None):
    return torch.randn(self.shape, dtype=self.dtype, device=self.device) * std + mean

def ntt(mean, std, *, generator=None):
    shape = torch.broadcast_shapes(mean.shape, std.shape)
    return torch.randn(shape, dtype=mean.dtype, device=mean.device) * std + mean

def backend_in_kernel():
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table
    table = {**select_decomp_table(), aten.normal_functional.default: nf, aten.normal.Tensor_Tensor: ntt}
    return lambda gm, ex: compile_fx(gm, ex, decompositions=table)

orig = compiling.compile_chunk

def compile_in_kernel(step):
    c = torch.compile(step, dynamic=False, backend=backend_in_kernel())
    def call(*a):
        with compiling._dynamo_settings():
            return c(*a)
    return call

def per_s(problem, est, s, prep, R, ctx, in_kernel, reps=7):
    if in_kernel:
        compiling.compile_chunk = compile_in_kernel
    try:
        e = runner.CellEngine(problem, est, s, prep, 1, R, ctx)
    finally:
        compiling.compile_chunk = orig
    assert e.timing.compiled, e.timing.note
    ts = []
    for _ in range(reps):
        st = e.measure()
        ts.append(e.timing.elapsed)
    g = list(st)[0]
    return R / statistics.median(ts), st[g].coords.mean.mean().item(), e

toy, ctx = get("gaussian-quadratic"), Context(device=DEV, compile="on")
s = GaussianSetting(1.5, 2.0, 0.0, 100)
R = 20000 if SMALL else 671088
rows = []
for name in ("reparameterization", "reinforce"):
    for ik in ((False, True) if SMALL else (False, True, False, True)):
        r, m, _ = per_s(toy, estimators.get(name), s, None, R, ctx, ik)
        rows.append(f"toy dim100 {name:<19} {'in-kernel' if ik else 'eager normal'}: {r:.3g}/s  mean mu-grad {m:.4f} (truth 3)")
        print(rows[-1], flush=True)
# profile the default compiled path
for name, prob, st, prep, RR in (("reparameterization", toy, s, None, R),):
    _, _, e = per_s(prob, estimators.get(name), st, prep, RR, ctx, False, reps=1)
    with profile(activities=[ProfilerActivity.CPU] + ([] if SMALL else [ProfilerActivity.CUDA])) as prof:
        for _ in range(3):
            e.measure()
    t = prof.key_averages().table(sort_by="cpu_time_total" if SMALL else "cuda_time_total", row_limit=18,
                                  max_name_column_width=60)
    open(f"{out}/profile-toy.txt", "w").write(t)
    print(t, flush=True)
vae = get("vae-digits")
vs = VAESetting("untrained", 256, 8, 128)
prep = vae.prepare(vs, ctx)
_, _, e = per_s(vae, estimators.get("reparameterization"), vs, prep, (256 if SMALL else 16384), ctx, False, reps=1)
with profile(activities=[ProfilerActivity.CPU] + ([] if SMALL else [ProfilerActivity.CUDA])) as prof:
    for _ in range(3):
        e.measure()
t = prof.key_averages().table(sort_by="cpu_time_total" if SMALL else "cuda_time_total", row_limit=18, max_name_column_width=60)
open(f"{out}/profile-vae.txt", "w").write(t)
print(t, flush=True)
print("\n".join(rows))
