"""pytest-benchmark: one gradient estimate of every estimator on every problem.

    pytest --benchmark-only                          # time them (from the repository root)
    pytest --benchmark-only --benchmark-json b.json  # keep times and variances together
    pytest --benchmark-only --estbench-plugin my_estimator.py   # plugins too (or ESTBENCH_PLUGINS=...)
    pytest --benchmark-only --estbench-device cuda   # on a GPU (or ESTBENCH_DEVICE=cuda)

Each benchmark is named ``estimator[problem-setting]`` and grouped by problem. It
times one estimate (n_samples draws, the problem's default setting) and records in
``extra_info`` the variance and SNR of that estimate at that setting, measured by the
runner from ``replicates`` independent estimates. Under plain ``pytest`` these run
once each with timing disabled (a smoke run; see the root conftest.py).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import estimators
from benchmarks import problems, runner
from benchmarks.problems import Problem
from benchmarks.sweep import Sweep, benchmark_device

SWEEP = Sweep(train_steps=0, device=benchmark_device()).validate()
REPLICATES = int(os.environ.get("ESTBENCH_BENCH_REPLICATES", "1000"))
SMOKE_REPLICATES = 20


@dataclass(frozen=True)
class Case:
    estimator: str
    problem: str
    setting: Any
    n_samples: int

    @property
    def name(self) -> str:
        label = problems.get(self.problem).setting_label(self.setting)
        return f"{self.estimator}[{self.problem}-{label}-n={self.n_samples}]"


def cases() -> list[Case]:
    out = []
    for pname in SWEEP.problem:
        problem = problems.get(pname)
        setting = problem.settings(SWEEP)[0]
        for ename in estimators.available():
            out.append(Case(ename, pname, setting, SWEEP.n_samples[0]))
    return out


@functools.cache
def prepared(pname: str, setting: Any) -> tuple[Problem, Any]:
    problem = problems.get(pname)
    return problem, problem.prepare(setting, SWEEP.context())


def params() -> list[Any]:
    """The cases; on a model problem all but reinforce's are in the slow tier (pytest -m 'not slow' keeps one)."""
    return [pytest.param(c, marks=[pytest.mark.slow] if problems.get_class(c.problem).kind != "toy"
                         and c.estimator != "reinforce" else []) for c in cases()]


@pytest.mark.parametrize("case", params(), ids=lambda c: c.name)
def test_one_estimate(benchmark, case: Case):
    problem, prep = prepared(case.problem, case.setting)
    ctx = SWEEP.context()
    est = estimators.get(case.estimator)
    torch.manual_seed(0)
    state = est.init_state()
    try:
        for _ in range(est.warmup_calls if est.stateful else 1):
            state = problem.chunk(est, case.setting, prep, case.n_samples, 1, state, ctx).state
    except estimators.EstimatorError as exc:
        if exc.capability:
            pytest.skip(str(exc))
        raise
    benchmark.group = case.problem

    def one_estimate():
        out = problem.chunk(est, case.setting, prep, case.n_samples, 1, state, ctx)
        if ctx.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    out = benchmark(one_estimate)
    for g in problem.groups:
        assert out.grads[g].shape[0] == 1 and torch.isfinite(out.grads[g]).all()

    replicates = SMOKE_REPLICATES if benchmark.disabled else REPLICATES
    sweep = Sweep(**{**SWEEP.__dict__, "replicates": replicates})
    rows = runner.run_cell(runner.Cell(problem, case.estimator, case.setting, case.n_samples), sweep, prep, ctx)
    assert all(r["status"] == "ok" for r in rows), rows[0]["error"]
    benchmark.extra_info.update({
        "estimator": case.estimator,
        "problem": case.problem,
        "setting": problem.setting_label(case.setting),
        "n_samples": case.n_samples,
        "replicates": replicates,
        "variance": sum(r["variance"] for r in rows) / len(rows),
        "snr": sum(r["snr"] for r in rows) / len(rows),
        **{f"variance_{r['parameter']}": r["variance"] for r in rows},
        **{f"snr_{r['parameter']}": r["snr"] for r in rows},
    })
