"""Which Dask cluster a run uses (``--workers N``: a local one; ``--scheduler ADDRESS``: an existing
one) and the connection to it; Dask is imported only when one is given. The run on it:
benchmarks.distributed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: a task whose worker died this many times is given up (failed rows); Dask's own default is 3
ALLOWED_FAILURES = 3
#: seconds to reach a scheduler, and to wait for its first worker
CONNECT_TIMEOUT_S = 5


class ClusterError(ValueError):
    """Bad cluster input or an unusable cluster; the message is one line."""


#: a local cluster of more workers than this many per core is refused without --force
WORKERS_PER_CORE = 4


@dataclass
class ClusterSpec:
    """--workers N or --scheduler ADDRESS (not both); None of either: no cluster."""

    workers: int | None = None
    scheduler: str | None = None
    #: start more local workers than WORKERS_PER_CORE x the cores (each a process with its own torch)
    force: bool = False

    def check(self) -> ClusterSpec:
        if self.workers is not None and self.scheduler is not None:
            raise ClusterError("--workers starts a local cluster and --scheduler uses an existing one: give one of them, "
                               f"not both (got --workers {self.workers} --scheduler {self.scheduler})")
        if self.workers is not None and self.workers < 1:
            raise ClusterError(f"--workers must be >= 1 (worker processes of a local cluster), got --workers {self.workers}")
        cores = os.cpu_count() or 1
        if self.workers is not None and self.workers > WORKERS_PER_CORE * cores and not self.force:
            raise ClusterError(f"--workers {self.workers} is more than {WORKERS_PER_CORE}x this machine's {cores} cores: "
                               f"each worker is a process with its own copy of torch (hundreds of MiB), so they would "
                               f"fill the memory; give at most {WORKERS_PER_CORE * cores}, or add --force")
        if self.scheduler is not None and not self.scheduler.strip():
            raise ClusterError("--scheduler needs an address such as tcp://host:8786, got an empty one")
        if self.active:
            try:
                import distributed  # noqa: F401
            except ImportError:
                raise ClusterError("--workers and --scheduler need Dask: pip install -c constraints.txt -e '.[dask]'") \
                    from None
        return self

    @property
    def active(self) -> bool:
        return self.workers is not None or self.scheduler is not None

    @property
    def local(self) -> bool:
        """A cluster this run starts on this host (--workers), whose processes can share files with the client."""
        return self.workers is not None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system tells it (a container or a
    `taskset` may allow fewer than the machine has), else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """torch threads of each of a local cluster's workers: the usable cores shared out, at least 1."""
    return max(1, (cores or usable_cores()) // workers)


#: Dask settings of a local cluster's workers (they take the client's configuration when they start)
PROFILE_OFF = {"distributed.worker.profile.enabled": False}


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator[tuple[Any, int | None]]:
    """A Dask client on a new local cluster or the given scheduler, with at least one worker; yields
    (client, torch threads per worker: None for an existing cluster, whose workers keep theirs).
    ClusterError, in one line, where the scheduler cannot be reached or has no workers."""
    import dask
    from distributed import Client, LocalCluster

    if spec.local:
        threads = threads_per_worker(spec.workers)
        # no dashboard, so no one reads the workers' profiles: their sampling thread, which takes the GIL every 10 ms to
        # walk the running task's stack, is off (PROFILE_OFF)
        with dask.config.set(PROFILE_OFF), LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True,
                                                        dashboard_address=None, silence_logs=40) as cluster, \
                Client(cluster) as client:
            client.wait_for_workers(spec.workers, timeout=60)
            yield client, threads
        return
    try:
        client = Client(spec.scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {spec.scheduler}: {' '.join(str(exc).split())}") \
            from None
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            raise ClusterError(f"the Dask cluster at {spec.scheduler} has no workers (none joined within "
                               f"{CONNECT_TIMEOUT_S} s); start some with dask worker {spec.scheduler}") from None
        yield client, None
    finally:
        client.close()
