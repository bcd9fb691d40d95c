"""The perf script runs (no timing assertions: speed is measured by `estbench perf`, not by tests),
and the CUDA path, where a GPU is present."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys

import pandas as pd
import pytest
import torch

from benchmarks import perf, runner
from benchmarks.sweep import Sweep, SweepError, check_device


def test_perf_functions_run_and_report_positive_times():
    rows = perf.toy_speeds(dims=(3,), names=("reinforce",), compile=False, jax=False, repeats=1, budget_s=0.001)
    assert rows[0]["loop_per_s"] > 0 and rows[0]["eager_per_s"] > 0 and rows[0]["speedup"] > 0
    vae = perf.vae_speeds(names=("reinforce",), compile=False, repeats=1, loop_replicates=2, replicates=4)
    assert vae[0]["speedup"] > 0 and vae[0]["gflops"] > 0
    o = perf.vae_training_overhead(steps=2, rounds=1)
    assert o["suite_s_per_step"] > 0 and o["inline_s_per_step"] > 0


def test_paths_are_timed_in_turn_and_ratios_are_the_rounds_medians():
    """alternated calls every path once a round, in order; rates_and_ratios takes each path's median round and,
    for each ratio to JAX, the median of the rounds' own ratios (not the ratio of the medians) and their range."""
    from benchmarks.perf_common import alternated, rates_and_ratios

    calls: list[str] = []
    seconds = {"eager": iter([2.0, 4.0, 1.0]), "compiled": iter([1.0, 1.0, 2.0]), "jax": iter([2.0, 2.0, 8.0])}
    paths = {name: (lambda name=name: calls.append(name) or next(seconds[name])) for name in seconds}
    times = alternated(paths, 3)
    assert calls == ["eager", "compiled", "jax"] * 3
    row = rates_and_ratios({"loop_per_s": 1.0}, times, 8)
    assert row["eager_per_s"] == 4.0 and row["compiled_per_s"] == 8.0 and row["jax_per_s"] == 4.0
    # the rounds' ratios: eager 1.0, 0.5, 8.0 (median 1.0; the medians' ratio would be 4 / 4 = 1.0 too);
    # compiled 2.0, 2.0, 4.0 (median 2.0, against 8 / 4 = 2.0); the better of the two each round: 2.0, 2.0, 8.0
    assert row["eager_vs_jax"] == 1.0 and row["eager_vs_jax_range"] == (0.5, 8.0)
    assert row["compiled_vs_jax"] == 2.0 and row["compiled_vs_jax_range"] == (2.0, 4.0)
    assert row["vs_jax"] == 2.0 and row["vs_jax_range"] == (2.0, 8.0)
    assert row["speedup"] == 8.0
    # a slow round for JAX alone moves its ratios in that round only
    row = rates_and_ratios({"loop_per_s": 1.0}, {"eager": [1.0, 1.0, 1.0], "jax": [1.0, 1.0, 9.0]}, 1)
    assert row["eager_vs_jax"] == 1.0 and row["eager_vs_jax_range"] == (1.0, 9.0) and "compiled_vs_jax" not in row


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (the [jax] extra)")
def test_toy_speeds_time_jax_in_turn_with_the_runner():
    rows = perf.toy_speeds(dims=(3,), names=("reinforce",), compile=False, jax=True, repeats=3, budget_s=0.001)
    r = rows[0]
    assert r["jax_per_s"] > 0 and "compiled_vs_jax" not in r
    low, high = r["eager_vs_jax_range"]
    assert 0 < low <= r["eager_vs_jax"] <= high and r["vs_jax"] == r["eager_vs_jax"]


def test_vae_flop_count_matches_a_count_of_the_matmuls():
    """vae_flops counts 2 FLOPs per multiply-add of the matmuls one estimate needs; check it
    against torch's own FLOP counter on the same computation (decoder forward + backward to z
    per sample, encoder backward from its outputs to its weights)."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.problems.vae import VAE

    B, D, H, L = 16, 64, 32, 4
    model = VAE(D, H, L)
    model.decoder.requires_grad_(False)  # as in the runner: only the encoder's gradient is wanted
    x = torch.rand(B, D)
    enc_out = model.encoder(x)  # the forward shared by all replicates: not counted
    z = torch.randn(B, L, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        model.decoder(z).sum().backward()  # decoder forward + backward to z
        enc_out.backward(torch.ones_like(enc_out))  # encoder backward to its weights
    assert counter.get_total_flops() == perf.vae_flops(D, H, L, B, n_samples=1)


def test_naive_loop_and_runner_estimate_the_same_gradient():
    """The perf baseline is the same estimator: both means agree with the truth (z-test on the loop)."""
    from benchmarks.problems import Context, GaussianSetting, get

    from .statutil import z_bound

    problem = get("gaussian-quadratic")
    s = GaussianSetting(mu=1.5, sigma=1.0, k=0.0, dim=2)
    torch.manual_seed(0)
    g = perf.naive_loop(problem, perf.estimators.get("reinforce"), s, 4, 2000, Context(dtype=torch.float64))
    truth = 2 * (s.mu - s.k)
    z = (g.mean(0) - truth) / (g.std(0) / g.shape[0] ** 0.5)
    assert z.abs().max() <= z_bound(2)


@pytest.mark.slow
def test_perf_command_runs_end_to_end_and_writes_json(tmp_path, capsys):
    from estbench.cli import main

    out = tmp_path / "perf.json"
    argv = ["perf", "--quick", "--dim", "2", "--compile", "off", "--no-jax", "--repeats", "1", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "gaussian-quadratic" in printed and "digits VAE" in printed and "bernoulli-quadratic (dim 100)" in printed
    fig = json.loads(out.read_text())
    assert {r["estimator"] for r in fig["discrete"]} == {"reinforce", "disarm"}
    assert all(r["loop_per_s"] > 0 and r["speedup"] > 0 for r in fig["discrete"])
    assert fig["device"] == "cpu" and fig["matmul_gflops"] > 0
    assert {r["estimator"] for r in fig["toy"]} == set(perf.TOY_ESTIMATORS) and all(r["speedup"] > 0 for r in fig["toy"])
    assert all(r["gflops"] > 0 and "compiled_s" not in r for r in fig["vae"])


@pytest.mark.slow
def test_peak_memory_is_measured_in_a_child_process():
    m = perf.peak_memory("gaussian-quadratic", 200)
    assert m["n"] == 200 and m["peak_mb"] >= m["before_mb"] > 0


def test_malformed_device_names_the_valid_forms():
    for device in ("gpu", "cuda:x", "cuda:", "CPU"):
        with pytest.raises(SweepError, match=r"device must be 'cpu' or 'cuda\[:N\]', got " + repr(device)):
            check_device(device)
    check_device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where no GPU is present")
@pytest.mark.parametrize("command", ["run", "report", "perf"])
def test_cuda_without_a_gpu_is_one_clear_line_before_any_work(tmp_path, capsys, command):
    from estbench.cli import main

    target = tmp_path / "out"
    args = {"run": ["--out", str(target)], "report": ["--out", str(target)], "perf": ["--json", str(target)]}[command]
    assert main([command, "--device", "cuda", *args]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda': no CUDA GPU is available" in err and "valid here: 'cpu'" in err
    assert len(err.strip().splitlines()) == 1 and not target.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_perf_functions_run_on_the_gpu():
    rows = perf.toy_speeds(dims=(3,), names=("reinforce",), compile=False, jax=True, repeats=1, budget_s=0.001,
                           device="cuda")
    assert rows[0]["eager_per_s"] > 0
    assert ("jax_per_s" in rows[0]) == (perf.jax_device("cuda") is not None)  # JAX on the GPU where it has one
    assert perf.vae_speeds(names=("reinforce",), compile=False, repeats=1, loop_replicates=2, replicates=4,
                           device="cuda")[0]["gflops"] > 0
    assert perf.vae_training_overhead(steps=2, rounds=1, device="cuda")["suite_s_per_step"] > 0
    m = perf.peak_memory("gaussian-quadratic", 200, "cuda")
    assert m["gpu_peak_mb"] > 0 and m["n"] == 200


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_runs_toy_and_vae_cells():
    sweep = Sweep(problem=["gaussian-cos", "vae-digits"], estimator=["reparameterization", "reinforce"],
                  checkpoint=["untrained"], replicates=50, train_steps=5, device="cuda")
    rows = runner.run(sweep)
    assert rows and {r["status"] for r in rows} == {"ok"} and {r["device"] for r in rows} == {"cuda"}


def test_jax_runs_where_torch_runs():
    """The JAX column is pinned to the device the runner uses: a JAX built with CUDA would
    otherwise put the CPU comparison on its GPU."""
    jax = pytest.importorskip("jax")
    assert perf.jax_device("cpu").platform == "cpu"
    gpu_backend = any(d.platform == "gpu" for d in jax.devices()) if jax.default_backend() == "gpu" else False
    assert (perf.jax_device("cuda") is not None) == gpu_backend


def test_gpu_chunks_are_larger_where_the_card_has_the_memory():
    from benchmarks.problems import Context

    GiB = 1 << 30
    assert runner.chunk_factor(Context()) == 1  # the CPU keeps the problems' cache-sized chunks
    assert runner.gpu_chunk_factor(141 * GiB) == runner.GPU_CHUNK_FACTOR == 64  # H200: 64 x 256 MB = 16 GB < 35 GB
    assert runner.gpu_chunk_factor(80 * GiB) == 64
    assert runner.gpu_chunk_factor(24 * GiB) == 16  # halved until the chunks fit in a quarter of the card
    assert runner.gpu_chunk_factor(8 * GiB) == 8
    assert runner.gpu_chunk_factor(1 * GiB) == 1 and runner.gpu_chunk_factor(0) == 1


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_engine_chunks_and_catches_a_non_finite_chunk_in_the_middle(device):
    """Chunks are the problem's size times chunk_factor (1 on the CPU); a NaN in the middle
    chunk of five (the engine's timed parts, TIMING_REPEATS) raises, on a GPU too, where
    finiteness is checked after the last chunk."""
    from benchmarks.problems import Context, GaussianSetting, get
    from estimators import Estimator, Surrogate, evaluate

    problem, ctx = get("gaussian-quadratic"), Context(device=device)
    s = GaussianSetting(1.0, 1.0, 0.0, 100)
    chunk = problem.chunk_size(s, 1) * runner.chunk_factor(ctx)
    R = 5 * chunk
    engine = runner.CellEngine(problem, perf.estimators.get("reinforce"), s, None, 1, R, ctx)
    assert engine.sizes == runner.chunk_plan(R, chunk, 16) and max(engine.sizes) <= chunk
    assert len(engine.sizes) in (5, 6) and engine.sizes[0] % 16 == 0  # whole batches, at most one chunk more
    assert runner.CellEngine(problem, perf.estimators.get("reinforce"), s, None, 1, 3 * chunk, ctx).sizes == \
        runner.chunk_plan(3 * chunk, -(-3 * chunk // 5), 16)  # fewer than five chunks' worth: cut into five (or six)
    assert engine.measure()["mu"].n == R

    class NaNInTheMiddle(Estimator):
        name = "nan-in-the-middle"
        calls = 0

        def surrogate(self, dist, f, n_samples, state=None):
            self.calls += 1  # two warm-up calls, then the chunks: NaN in the third of five
            x = dist.rsample((n_samples,))
            fx = evaluate(f, x, dist, n_samples)
            return Surrogate(loss=fx.mean(0) * (float("nan") if self.calls == 5 else 1.0), f=fx.detach())

    est = NaNInTheMiddle()
    engine = runner.CellEngine(problem, est, s, None, 1, R, ctx)
    with pytest.raises(FloatingPointError, match="non-finite"):
        engine.measure()
    assert est.calls == (5 if device == "cpu" else 7)  # the CPU stops after the bad chunk


def test_a_failed_compile_is_reported_and_perf_goes_on(monkeypatch):
    from benchmarks import compiling

    def broken(step):
        def call(*args):
            raise RuntimeError("inductor broke")
        return call

    monkeypatch.setattr(compiling, "compile_chunk", broken)
    rows = perf.toy_speeds(dims=(3,), names=("reinforce",), compile=True, jax=False, repeats=1, budget_s=0.001)
    assert "compiled_per_s" not in rows[0] and "inductor broke" in rows[0]["compile_failed"]
    assert rows[0]["eager_per_s"] > 0 and rows[0]["speedup"] > 0


@pytest.mark.slow
def test_the_chunk_compiles_with_mix_order_reductions_off(monkeypatch):
    """inductor_options reach inductor while it lowers the chunk's graph, and only then."""
    import torch._inductor.config as inductor
    from torch._inductor.graph import GraphLowering

    from benchmarks import compiling

    if not hasattr(inductor.triton, "mix_order_reduction"):
        pytest.skip("this torch has no mix-order reductions")
    before = inductor.triton.mix_order_reduction
    seen = []
    real = GraphLowering.__init__

    def spy(self, *args, **kwargs):
        seen.append(inductor.triton.mix_order_reduction)
        real(self, *args, **kwargs)

    monkeypatch.setattr(GraphLowering, "__init__", spy)
    torch._dynamo.reset()
    fast = compiling.compile_chunk(lambda x: (x * 2.0).sum(0))
    # a cached graph would not be lowered again
    with inductor.patch(fx_graph_cache=False), torch._functorch.config.patch(enable_autograd_cache=False):
        assert torch.equal(fast(torch.ones(3, 2)), torch.full((2,), 6.0))
    assert seen and all(flag is False for flag in seen)
    assert inductor.triton.mix_order_reduction == before


_CHUNK_FAULTS = """
import resource, sys
from benchmarks.allocator import keep_freed_memory
kept = keep_freed_memory()
import estimators
from benchmarks.problems import Context, GaussianSetting, get
from benchmarks.runner import CellEngine
problem = get("gaussian-quadratic")
for dim in (100, 10000):
    s = GaussianSetting(1.0, 1.0, 0.0, dim)
    chunk = problem.chunk_size(s, 1)
    engine = CellEngine(problem, estimators.get("reinforce"), s, None, 1, 10 * chunk, Context())
    engine.measure(), engine.measure()  # the heap grows to its working size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        engine.measure()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50
    print(kept, dim, faults, chunk * dim * 4 / resource.getpagesize())
"""


@pytest.mark.slow
@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_eager_chunks_reuse_freed_buffers_without_page_faults():
    """With keep_freed_memory(), the eager runner's chunks (toy, dim 100 and 10000) fault in
    fewer pages each than one [chunk, dim] float32 tensor of theirs has: freed buffers are
    reused, not faulted in again. (Under glibc's defaults: 1,400-1,900 faults per chunk here,
    more than that tensor's 1,024 pages; with the setting 0-122.) The estbench command line
    sets it."""
    out = subprocess.run([sys.executable, "-c", _CHUNK_FAULTS], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        kept, dim, faults, pages = line.split()
        assert kept == "True" and float(faults) < float(pages), line

    from benchmarks import allocator
    from estbench import cli

    allocator._done = None
    assert cli.main(["list"]) == 0
    assert allocator._done is None  # list measures nothing: the allocator is left alone
    assert cli.main(["perf", "--repeats", "0"]) == 2  # refused, but perf is a measuring command
    assert allocator._done is True and allocator.describe() == "malloc keeps freed memory (mallopt)"


@pytest.mark.slow
def test_the_allocator_setting_can_be_turned_off_and_is_recorded(tmp_path):
    code = ("import sys; from estbench.cli import main; sys.exit(main(['run', '--problem', 'gaussian-cos', "
            "'--estimator', 'reinforce', '--replicates', '10', '--quiet', '--out', sys.argv[1]]))")
    machines = {}
    for value in ("1", "0"):
        out = tmp_path / f"r{value}.csv"
        env = {**os.environ, "ESTBENCH_KEEP_FREED_MEMORY": value}
        subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True, capture_output=True)
        machines[value] = pd.read_csv(out)["machine"].iloc[0]
    assert machines["1"].endswith("malloc keeps freed memory (mallopt)")
    assert machines["0"].endswith("malloc defaults")


def test_statistics_share_splits_a_cells_chunk_time():
    """benchmarks.perf_common.statistics_share: the estimates' and the statistics' parts of each chunk, both timed."""
    import estimators
    from benchmarks.perf_common import statistics_share
    from benchmarks.problems import Context, GaussianSetting, get

    s = GaussianSetting(mu=1.0, sigma=1.0, k=0.0, dim=10)
    out = statistics_share(get("gaussian-quadratic"), estimators.get("reinforce"), s, None, 1, 2000, Context(compile="off"), 1)
    assert out["per_estimate_s"] > 0 and 0 < out["statistics_share"] < 1


def test_the_machine_column_names_the_vector_instructions_torchs_kernels_use():
    """Rows made with other vector instructions (AVX512 against AVX2) may differ in the last bits, so the machine
    column says which ones this process's CPU kernels use, beside the cores the report's text reads from it."""
    import re

    from benchmarks.machine import machine

    text = machine()
    assert f"({torch.backends.cpu.get_cpu_capability()})" in text
    assert re.search(r"(\d+) cores", text).group(1) == str(os.cpu_count())
