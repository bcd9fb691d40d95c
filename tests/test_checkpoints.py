"""The trained checkpoints a run's processes share (benchmarks.problems.checkpoints): made once under a file
lock by whichever process needs one first, read by the others, the same tensors; each process its own without
a folder; a local cluster's workers and the client share one folder for the run."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch

from benchmarks.problems import checkpoints

pytestmark = pytest.mark.skipif(checkpoints.fcntl is None, reason="no file locks here (fcntl): no sharing")


def _make_slowly(log: str) -> dict[str, torch.Tensor]:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.5)  # long enough that the other process asks while this one is still making it
    return {"w": torch.arange(6.0).reshape(2, 3) / 7}


def _child(folder: str, log: str, out: str) -> None:
    checkpoints.share(folder)
    torch.save(checkpoints.made_once(("test", 1), lambda: _make_slowly(log)), out)


def test_two_processes_sharing_a_folder_make_a_checkpoint_once_and_read_the_same_tensors(tmp_path):
    log = tmp_path / "made.log"
    with checkpoints.sharing() as folder:
        assert folder is not None and Path(folder).is_dir() and checkpoints.folder() == folder
        fork = multiprocessing.get_context("fork")
        children = [fork.Process(target=_child, args=(folder, str(log), str(tmp_path / f"{i}.pt"))) for i in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(30)
            assert child.exitcode == 0
        assert len(log.read_text().splitlines()) == 1  # one process made it, the other waited and read it
        here = checkpoints.made_once(("test", 1), lambda: _make_slowly(str(log)))  # this process reads it too
        assert len(log.read_text().splitlines()) == 1
        for i in range(2):
            torch.testing.assert_close(torch.load(tmp_path / f"{i}.pt")["w"], here["w"], rtol=0, atol=0)
        checkpoints.made_once(("test", 2), lambda: _make_slowly(str(log)))  # another checkpoint is made anew
        assert len(log.read_text().splitlines()) == 2
        with checkpoints.sharing() as inner:  # a run inside a run: the same folder
            assert inner == folder
        assert checkpoints.folder() == folder
    assert checkpoints.folder() is None and not Path(folder).exists()  # removed with the run


def test_without_a_folder_each_call_makes_its_own(tmp_path):
    log = tmp_path / "made.log"
    assert checkpoints.folder() is None
    for _ in range(2):
        checkpoints.made_once(("test", 1), lambda: _make_slowly(str(log)))
    assert len(log.read_text().splitlines()) == 2


@pytest.mark.slow
def test_a_local_clusters_workers_share_the_clients_folder():
    pytest.importorskip("distributed", reason="the [dask] extra is not installed")
    from benchmarks.cluster import ClusterSpec
    from benchmarks.distributed import Dask
    from benchmarks.plan import make_plan
    from benchmarks.sweep import Sweep

    plan = make_plan(Sweep(problem=["gaussian-cos"], estimator=["reinforce"]))
    with Dask(ClusterSpec(workers=2)).session(plan) as ex:
        folder = checkpoints.folder()
        assert folder is not None and ex.job.shared_dir == folder
        assert set(ex.client.run(checkpoints.folder).values()) == {folder}
    assert checkpoints.folder() is None
