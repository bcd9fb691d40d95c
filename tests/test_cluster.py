"""Cells on a Dask cluster (--workers, --scheduler): the same rows as a serial run, the client the only
writer, a worker killed mid-cell, plugins reaching the workers, and no Dask without the options.
A local cluster only: nothing beyond localhost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.results_file import TIMING_COLUMNS
from estbench.cli import main

pytest.importorskip("distributed", reason="the [dask] extra is not installed (pip install -c constraints.txt -e '.[dask]')")

KEY = ["problem", "estimator", "estimator_options", "setting", "n_samples", "parameter"]
#: small cells of three kinds: closed-form truth, enumeration, and a model without truth (agreement_z
#: against the pathwise mean, which must wait for that estimator's cell on the cluster)
SWEEP = ["--problem", "gaussian-quadratic", "bernoulli-quadratic", "vae-digits", "--estimator", "reparameterization",
         "reinforce", "disarm", "--hidden", "16", "--latent", "2", "--batch", "8", "--checkpoint", "untrained",
         "--train-steps", "0", "--replicates", "64", "--quiet"]


def content(path: Path) -> pd.DataFrame:
    """The rows without the columns that vary from run to run, in a fixed order."""
    df = pd.read_csv(path, dtype=str)
    return df[[c for c in df.columns if c not in TIMING_COLUMNS]].sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "r.csv"
    assert main(["run", *SWEEP, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_two_workers_write_the_rows_of_a_serial_run_bit_for_bit(serial, tmp_path):
    out = tmp_path / "r.csv"
    assert main(["run", *SWEEP, "--workers", "2", "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(content(out), content(serial))
    df = pd.read_csv(out)
    ok = df[df["status"] == "ok"]
    assert (ok["threads"] >= 1).all() and ok["host"].notna().all() and (ok["concurrent_cells"] >= 1).all()
    assert (df[df["problem"] == "vae-digits"]["reference"].dropna() == "mean of reparameterization").any()


DIES = '''
import os
import signal
from pathlib import Path

from estimators import Reinforce


class DiesOnce(Reinforce):
    """REINFORCE whose worker process is killed (SIGKILL) the first time it runs, anywhere."""

    name = "dies-once"

    def surrogate(self, dist, f, n_samples, state=None):
        marker = Path({marker!r})
        if not marker.exists():
            marker.write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().surrogate(dist, f, n_samples, state)


'''
ALWAYS_DIES = '''
import os
import signal

from estimators import Reinforce


class AlwaysDies(Reinforce):
    """REINFORCE that kills every worker process it runs in."""

    name = "always-dies"

    def surrogate(self, dist, f, n_samples, state=None):
        os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.slow
def test_a_worker_killed_mid_cell_has_its_cell_run_again_and_every_row_written_once(tmp_path, monkeypatch):
    """A plugin file (which the workers get from the client) kills its worker the first time it runs: the
    scheduler runs that cell again on a living worker, and the file ends with every row once, each with the
    numbers a serial run gives (same seeds). The workers write the plugin file inside their own scratch
    folders, not loose in the temporary folder, where nothing would remove it."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))  # the workers' processes start with it
    plugin = tmp_path / "dies.py"
    plugin.write_text(DIES.format(marker=str(tmp_path / "died")))
    out, serial = tmp_path / "r.csv", tmp_path / "serial.csv"
    argv = ["run", "--plugin", str(plugin), "--problem", "gaussian-quadratic", "--estimator", "reinforce", "dies-once",
            "--sigma", "0.5", "1", "2", "--replicates", "64", "--quiet"]
    assert main([*argv, "--workers", "2", "--out", str(out)]) == 0
    assert (tmp_path / "died").read_text() == "died"  # it did die
    df = pd.read_csv(out)
    assert len(df) == 2 * 3 * 2 and not df.duplicated(KEY).any() and (df["status"] == "ok").all()
    assert main([*argv, "--out", str(serial)]) == 0
    pd.testing.assert_frame_equal(content(out), content(serial))
    assert not list(temporary.glob("estbench-plugin-*"))


@pytest.mark.slow
def test_a_cell_that_kills_every_worker_becomes_a_failed_row(tmp_path, capsys):
    """After ALLOWED_FAILURES + 1 deaths the scheduler gives the cell up: failed rows saying so, exit 1."""
    from benchmarks.cluster import ALLOWED_FAILURES

    plugin = tmp_path / "always.py"
    plugin.write_text(ALWAYS_DIES)
    out = tmp_path / "r.csv"
    assert main(["run", "--plugin", str(plugin), "--problem", "gaussian-quadratic", "--estimator", "always-dies",
                 "--replicates", "64", "--quiet", "--workers", "2", "--out", str(out)]) == 1
    df = pd.read_csv(out)
    assert len(df) == 2 and (df["status"] == "failed").all()
    assert df["error"].str.contains(f"died {ALLOWED_FAILURES + 1} times").all()


@pytest.mark.slow
def test_without_workers_or_scheduler_dask_is_never_imported(tmp_path):
    code = ("import sys; from estbench.cli import main; "
            f"assert main(['run', '--problem', 'gaussian-cos', '--estimator', 'reinforce', '--replicates', '32', "
            f"'--quiet', '--out', {str(tmp_path / 'r.csv')!r}]) == 0; "
            "assert not any(m == 'dask' or m.startswith(('dask.', 'distributed')) for m in sys.modules), 'dask imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


@pytest.mark.slow
def test_a_cluster_without_workers_is_one_clear_line(tmp_path, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        code = main(["run", "--problem", "gaussian-cos", "--scheduler", cluster.scheduler_address, "--quiet",
                     "--out", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "has no workers" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.csv").exists()  # refused before any work: no results file


class _FakeClient:
    """What check_workers asks of a Dask client: client.run(f, job) -> {worker: f's result there}."""

    def __init__(self, **changes):
        self.changes = changes

    def run(self, fn, job):
        from benchmarks.distributed import worker_info

        info = worker_info(job)
        return {"tcp://10.0.0.7:4001": {**info, **self.changes}}


@pytest.mark.parametrize("changes,message", [
    ({"torch": "2.99.0"}, "runs torch 2.99.0, this client"),
    ({"estbench": "0.0.1"}, "runs estbench 0.0.1, this client"),
    ({"error": "PluginError: plugin mine: import failed"}, "cannot load this run's plugins"),
    ({"origins": {"reinforce": "plugin file other.py sha256:0"}}, "has estimator 'reinforce' from plugin file other.py"),
])
def test_workers_that_differ_from_the_client_are_refused_before_any_work(changes, message):
    from benchmarks.distributed import ClusterError, check_workers, job_for
    from benchmarks.plan import make_plan
    from benchmarks.sweep import Sweep

    plan = make_plan(Sweep(problem=["gaussian-cos"], estimator=["reinforce"]))
    job = job_for(plan, 1)
    check_workers(_FakeClient(), job)  # the same versions: accepted
    with pytest.raises(ClusterError, match=message.replace("(", r"\(")) as err:
        check_workers(_FakeClient(**changes), job)
    assert "\n" not in str(err.value) and "tcp://10.0.0.7:4001" in str(err.value)


@pytest.mark.slow
def test_a_resume_on_a_cluster_recomputes_a_reference_cell_from_the_file_with_the_same_numbers(serial, tmp_path):
    """The VAE's agreement_z compares each estimator's mean with the pathwise cell's. When that cell's rows are
    in the file from an earlier run, the cluster computes it again (same seed) once the other cells are done:
    the resumed file equals a serial run's."""
    out = tmp_path / "r.csv"
    first = [a for a in SWEEP if a not in ("reinforce", "disarm")]  # the reference estimator alone
    assert main(["run", *first, "--workers", "2", "--out", str(out)]) == 0
    assert main(["run", *SWEEP, "--workers", "2", "--out", str(out), "--resume"]) == 0
    pd.testing.assert_frame_equal(content(out), content(serial))
    vae = pd.read_csv(out)
    assert vae.loc[(vae["problem"] == "vae-digits") & (vae["estimator"] == "reinforce"), "agreement_z"].notna().all()


def test_a_local_workers_threads_share_out_the_cores_this_process_may_use(monkeypatch):
    import os

    from benchmarks import cluster

    assert cluster.threads_per_worker(2, 4) == 2 and cluster.threads_per_worker(3, 2) == 1
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})  # a process allowed 3 of the cores
        monkeypatch.setattr(os, "cpu_count", lambda: 64)
        assert cluster.usable_cores() == 3 and cluster.threads_per_worker(1) == 3 and cluster.threads_per_worker(2) == 1


def test_a_local_clusters_workers_do_not_sample_profiles():
    """No dashboard shows a local cluster's profiles, so its workers do not take them (the sampling thread takes the
    GIL every 10 ms): the setting reaches the worker processes."""
    import dask

    from benchmarks.cluster import ClusterSpec, connect

    with connect(ClusterSpec(workers=1)) as (client, _):
        assert client.submit(lambda: dask.config.get("distributed.worker.profile.enabled"), pure=False).result() is False
    assert dask.config.get("distributed.worker.profile.enabled") is True  # the client's own setting is left as it was
