"""The child process of ``perf.peak_memory``: one cell, its peak resident memory, as JSON.

    python -m benchmarks.perf_memory PROBLEM REPLICATES DEVICE

Run in a fresh process so that the peak is the cell's own (Linux: /proc/self/status, the
peak reset just before the cell).
"""

from __future__ import annotations

import json
import sys

import torch

import estimators
from benchmarks.allocator import keep_freed_memory
from benchmarks.problems import Context, GaussianSetting, VAESetting, get
from benchmarks.runner import estimate_cell


def status(key: str) -> float:
    """A /proc/self/status figure in MB (the kernel's accounting of this process, in kB)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def measure(problem: str, replicates: int, device: str) -> dict[str, float]:
    keep_freed_memory()  # as the estbench commands run
    p = get(problem)
    ctx = Context(device=device)
    cuda = device.startswith("cuda")
    if problem == "vae-digits":
        s, prep = VAESetting("untrained", 256, 8, 128), None
        prep = p.prepare(s, ctx)
    else:
        s, prep = GaussianSetting(1.0, 1.0, 0.0, 100), None
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) to the current size: the peak below is the cell's own
    gpu_before = 0.0
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        gpu_before = torch.cuda.memory_allocated(device) / 2**20
    stats, timing = estimate_cell(p, estimators.get("reparameterization"), s, prep, 1, replicates, ctx)
    out = {"before_mb": before, "peak_mb": status("VmHWM"), "seconds": timing.elapsed, "n": stats[p.groups[0]].n}
    if cuda:
        out.update(gpu_before_mb=gpu_before, gpu_peak_mb=torch.cuda.max_memory_allocated(device) / 2**20)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
