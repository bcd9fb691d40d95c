"""The Python API: estbench.run returns the CSV's table; objects and classes work without a plugin file."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

import estbench
import estimators as estbench_errors
from benchmarks.results_file import TIMING_COLUMNS
from benchmarks.runner import COLUMNS
from estbench.cli import main
from estimators import Estimator, Surrogate, evaluate, score_surrogate


class HalfBaseline(Estimator):
    """REINFORCE with a baseline of half the mean of f (a notebook-style estimator)."""

    name = "test-half-baseline"
    description = "REINFORCE, baseline = half the sample mean of f over the other samples"
    min_samples = 2

    def __init__(self, fraction: float = 0.5):
        self.fraction = fraction

    def surrogate(self, dist, f, n_samples, state=None):
        x = dist.sample((n_samples,))
        fx = evaluate(f, x, dist, n_samples)
        others = (fx.sum(0, keepdim=True) - fx) / (n_samples - 1)
        return Surrogate(score_surrogate(fx, dist.log_prob(x), self.fraction * others.detach()), fx.detach())


def test_run_returns_the_rows_and_columns_of_the_csv(tmp_path):
    args = dict(problems="gaussian-cos", estimators=["reinforce", "reparameterization"], sigma=[0.5, 1],
                replicates=50, seed=3)
    df = estbench.run(**args)
    assert list(df.columns) == COLUMNS and len(df) == 2 * 2 * 2
    out = tmp_path / "r.csv"
    assert main(["run", "--problem", "gaussian-cos", "--estimator", "reinforce", "reparameterization", "--sigma",
                 "0.5", "1", "--replicates", "50", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    csv = pd.read_csv(out, dtype={"error": str})
    timing = list(TIMING_COLUMNS)
    pd.testing.assert_frame_equal(df.drop(columns=timing), csv.drop(columns=timing))


def test_estimator_objects_and_classes_need_no_plugin_file(tmp_path):
    df = estbench.run("gaussian-quadratic", [HalfBaseline(0.0), "reinforce"], replicates=2000, n_samples=4, seed=1)
    ok = df[df["status"] == "ok"]
    assert set(ok["estimator"]) == {"test-half-baseline", "reinforce"}
    origins = set(df["estimator_origin"])
    assert "built-in" in origins and len(origins) == 2
    assert re.fullmatch(r"Python object tests\.test_api\.HalfBaseline sha256:[0-9a-f]{12}", (origins - {"built-in"}).pop())
    # the class and an object of it with other parameters in one run are two estimators of one name: refused
    with pytest.raises(estbench_errors.PluginError, match="two estimators named 'test-half-baseline'"):
        estbench.run("gaussian-quadratic", [HalfBaseline, HalfBaseline(0.0)], replicates=20)
    # both are unbiased on the quadratic: |bias z| within a Bonferroni bound for 4 rows (false-failure 1e-3)
    assert (ok["bias_z"].abs() < 3.9).all()
    # the object (fraction 0.0) was used as handed over: plain REINFORCE's variance, not the class default's
    assert len(df[df["estimator"] == "test-half-baseline"]) == 2


@pytest.mark.slow
def test_report_from_a_dataframe(tmp_path):
    df = estbench.run("gaussian-exp", ["reinforce", "reparameterization"], sigma=[0.5, 1, 2], replicates=50)
    report = estbench.report(df, out=tmp_path / "rep")
    text = report.read_text()
    assert "## gaussian-exp" in text and (tmp_path / "rep" / "results.csv").exists()
    # each cell's wall time: it holds the measured estimates' time, and the report sums it
    cells = df.drop_duplicates(["estimator", "setting"])
    assert ((cells["cell_time_s"] >= cells["time_per_estimate_min_s"] * 50) & (cells["cell_time_s"] < 60)).all()
    assert f"- computing time: {cells['cell_time_s'].sum():,.0f} s in 6 cells" in text


def test_unknown_api_options_are_named():
    from benchmarks.sweep import SweepError

    with pytest.raises(SweepError, match="unknown option 'replicate'. Did you mean 'replicates'"):
        estbench.run("gaussian-cos", "reinforce", replicate=10)


def test_abbreviated_options_are_errors_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--replicate", "100"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --replicate 100 (did you mean --replicates?)" in err


def test_torch_tensors_come_back_as_numbers():
    df = estbench.run("gaussian-cos", "reinforce", replicates=10)
    assert df["variance"].dtype == float and torch.isfinite(torch.tensor(df["variance"].to_numpy())).all()


def test_problem_objects_need_no_plugin_file():
    """A problem defined in a notebook (the tutorial's, from docs/plugins.md) handed over as an object."""
    from tests.test_plugins import tutorial_code

    scope: dict = {}
    exec(compile(tutorial_code("my_problem.py"), "my_problem.py", "exec"), scope)
    df = estbench.run(scope["GaussianCubic"](), ["reparameterization", "reinforce"], mu=[0.0, 1.0], replicates=3000)
    assert set(df["problem"]) == {"gaussian-cubic"} and set(df["status"]) == {"ok"} and set(df["mu"]) == {0.0, 1.0}
    assert (df["bias_z"].abs() < 3.9).all()  # Bonferroni over 4 rows at a 1e-3 false-failure rate
