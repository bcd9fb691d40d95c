"""The command line: estbench list / run, sweep files, and clear errors."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from benchmarks.runner import COLUMNS
from estbench.cli import main

REQUIRED = ("problem, estimator, parameter, dim, mu, sigma, k, n_samples, replicates, seed, mean, variance, "
            "true_grad, bias_z, mse, snr, time_per_estimate_s, status").split(", ")


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_list_shows_estimators_and_problems(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["reparameterization", "reinforce", "reinforce-loo", "reinforce-ema",
                 "gaussian-quadratic", "gaussian-cos", "gaussian-exp"]:
        assert f"  {name} " in out


def test_run_writes_one_tidy_row_per_cell_and_group(tmp_path):
    out = tmp_path / "r.csv"
    code = main(["run", "--problem", "gaussian-quadratic", "gaussian-cos", "--estimator", "reinforce", "reparameterization",
                 "--mu", "1", "--sigma", "0.5", "1", "2", "--k", "0", "--dim", "1", "3", "--n-samples", "2",
                 "--replicates", "50", "--seed", "3", "--out", str(out), "--quiet"])
    assert code == 0
    rows = read(out)
    assert set(REQUIRED) <= set(rows[0]) and list(rows[0]) == COLUMNS
    assert len(rows) == 2 * 2 * 3 * 2 * 2  # problems x estimators x sigma x dim x {mu, sigma}
    assert {r["status"] for r in rows} == {"ok"}
    assert {(r["sigma"], r["dim"]) for r in rows} == {(s, d) for s in ("0.5", "1.0", "2.0") for d in ("1", "3")}
    assert all(r["seed"] == "3" and r["replicates"] == "50" for r in rows)


def test_sweep_file_and_command_line_override(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text('problem = ["gaussian-exp"]\nestimator = ["reinforce-loo"]\nsigma = [0.5, 1.5]\n'
                   'dim = [2]\nn_samples = [2, 3]\nreplicates = 20\nseed = 11\n')
    out = tmp_path / "r.csv"
    assert main(["run", "--config", str(cfg), "--n-samples", "5", "--out", str(out), "--quiet"]) == 0
    rows = read(out)
    assert {r["problem"] for r in rows} == {"gaussian-exp"}
    assert {r["n_samples"] for r in rows} == {"5"}  # the command line wins
    assert {r["sigma"] for r in rows} == {"0.5", "1.5"} and {r["seed"] for r in rows} == {"11"}


def test_estimator_that_does_not_apply_is_skipped_not_fatal(tmp_path):
    out = tmp_path / "r.csv"
    code = main(["run", "--problem", "gaussian-cos", "--estimator", "reinforce-loo", "reinforce",
                 "--n-samples", "1", "--replicates", "10", "--out", str(out), "--quiet"])
    assert code == 0
    rows = read(out)
    loo = [r for r in rows if r["estimator"] == "reinforce-loo"]
    assert {r["status"] for r in loo} == {"skipped"} and "n_samples >= 2" in loo[0]["error"]
    assert {r["status"] for r in rows if r["estimator"] == "reinforce"} == {"ok"}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--problem", "gaussian-quad"], "unknown problem 'gaussian-quad'. Did you mean 'gaussian-quadratic'?"),
        (["--estimator", "reparam"], "unknown estimator 'reparam'"),
        (["--sigma", "0"], "sigma must be > 0, got sigma=0"),
        (["--sigma", "-1"], "sigma must be > 0, got sigma=-1"),
        (["--dim", "0"], "dim must be >= 1, got dim=0"),
        (["--n-samples", "0"], "n_samples must be >= 1, got n_samples=0"),
        (["--replicates", "1"], "replicates must be >= 2"),
        (["--problem", "gaussian-exp", "--k", "-1"], "1 + 2 k sigma^2 > 0"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["run", *argv, "--out", str(tmp_path / "r.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_malformed_sweep_file_names_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('sigma = [1.0,\nmu = 3\n')
    assert main(["run", "--config", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "line" in err
    cfg.write_text('sigmas = [1.0]\n')
    assert main(["run", "--config", str(cfg), "--quiet"]) == 2
    assert "unknown key 'sigmas'" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_runs_as_installed(tmp_path):
    out = tmp_path / "r.csv"
    proc = subprocess.run([sys.executable, "-m", "estbench", "run", "--problem", "gaussian-quadratic",
                           "--estimator", "reinforce", "--replicates", "10", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(read(out)) == 2


def test_sweep_file_may_give_mu_and_sigma_per_coordinate(tmp_path):
    """A list inside the list is one value per coordinate; the truth is per coordinate too."""
    from .statutil import z_bound

    cfg = tmp_path / "vec.toml"
    cfg.write_text('problem = ["gaussian-quadratic", "gaussian-cos", "gaussian-exp"]\n'
                   'mu = [1.0, [0.5, -1.0, 2.0]]\nsigma = [[0.5, 1.0, 2.0]]\ndim = [3]\nk = [0.7]\n'
                   'estimator = ["reparameterization", "reinforce-loo"]\nreplicates = 3000\ndtype = "float64"\n')
    out = tmp_path / "r.csv"
    assert main(["run", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    rows = read(out)
    assert len(rows) == 3 * 2 * 2 * 2 and {r["status"] for r in rows} == {"ok"}
    assert {r["mu"] for r in rows} == {"1.0", "0.5;-1.0;2.0"} and {r["sigma"] for r in rows} == {"0.5;1.0;2.0"}
    quad = {(r["mu"], r["parameter"]): float(r["true_grad"]) for r in rows if r["problem"] == "gaussian-quadratic"}
    assert quad[("0.5;-1.0;2.0", "mu")] == pytest.approx(2 * ((0.5 - 0.7) + (-1.0 - 0.7) + (2.0 - 0.7)) / 3)
    assert quad[("1.0", "sigma")] == pytest.approx(2 * (0.5 + 1.0 + 2.0) / 3)
    assert max(abs(float(r["bias_z"])) for r in rows) <= z_bound(len(rows))


def test_per_coordinate_values_must_match_dim(tmp_path, capsys):
    cfg = tmp_path / "vec.toml"
    cfg.write_text('problem = ["gaussian-cos"]\nmu = [[0.5, 1.0]]\ndim = [3]\n')
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "r.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "mu has 2 per-coordinate values but dim=3" in err and "Traceback" not in err
