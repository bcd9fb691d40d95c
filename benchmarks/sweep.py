"""A sweep: which problems, estimators and settings to run. Typed, validated once.

A sweep comes from defaults, a TOML file (``--config sweep.toml``) and command
line options, later ones overriding earlier ones. A TOML file uses the same
names as the command line, with underscores::

    problem = ["gaussian-quadratic", "gaussian-cos"]
    estimator = ["reparameterization", "reinforce"]
    mu = [1.0]                  # an entry may be a list: one value per coordinate,
    sigma = [0.5, 1, 2]         # e.g. mu = [[0.0, 1.0, 2.0]] with dim = [3]
    k = [1.0]
    dim = [1, 100]
    n_samples = [1, 8]
    replicates = 1000
    seed = 0
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import estimators

from . import compiling, problems


class SweepError(ValueError):
    """Bad sweep input; the message names the bad value and the valid choices."""


def _default(*values: Any):
    return field(default_factory=lambda: list(values))


@dataclass
class Sweep:
    problem: list[str] = field(default_factory=problems.defaults)
    estimator: list[str] = field(default_factory=estimators.available)
    # toy Gaussian settings (swept as a Cartesian product)
    mu: list[float] = _default(1.0)
    sigma: list[float] = _default(1.0)
    k: list[float] = _default(1.0)
    dim: list[int] = _default(1)
    # VAE settings (swept as a Cartesian product)
    checkpoint: list[str] = _default("untrained", "trained")
    hidden: list[int] = _default(256)
    latent: list[int] = _default(8)
    batch: list[int] = _default(128)
    checkpoint_steps: int = 2000  # pathwise Adam steps that make the "trained" checkpoint
    train_steps: int = 1000  # steps of each estimator's training curve; 0 = no curves
    data_dir: str | None = None  # MNIST IDX files, for vae-mnist
    # every problem
    n_samples: list[int] = _default(4)
    replicates: int = 1000
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    compile: str = "auto"  # torch.compile: auto, on, off (benchmarks.compiling)

    def validate(self) -> Sweep:
        """Check names and values; raise SweepError with a clear message."""
        for name in self.problem:
            if name not in problems.available():
                raise SweepError(str(estimators.UnknownNameError("problem", name, problems.available())))
        for name in self.estimator:
            if name not in estimators.available():
                raise SweepError(str(estimators.UnknownNameError("estimator", name, estimators.available())))
        if not self.problem:
            raise SweepError("no problem selected; valid problems: " + ", ".join(problems.available()))
        if not self.estimator:
            raise SweepError("no estimator selected; valid estimators: " + ", ".join(estimators.available()))
        for f in fields(self):
            if f.name in _LIST_FIELDS and not getattr(self, f.name):
                raise SweepError(f"{f.name} is an empty list: a sweep needs at least one value of {f.name}")
        for s in (x for v in self.sigma for x in (v if isinstance(v, tuple) else (v,))):
            if not (s > 0 and math.isfinite(s)):
                raise SweepError(f"sigma must be > 0, got sigma={s:g}")
        for d in self.dim:
            if d < 1:
                raise SweepError(f"dim must be >= 1, got dim={d}")
        for n in self.n_samples:
            if n < 1:
                raise SweepError(f"n_samples must be >= 1, got n_samples={n}")
        for c in self.checkpoint:
            if c not in ("untrained", "trained"):
                raise SweepError(f"checkpoint must be one of untrained, trained; got {c!r}")
        for name, values in (("hidden", self.hidden), ("latent", self.latent), ("batch", self.batch)):
            for v in values:
                if v < 1:
                    raise SweepError(f"{name} must be >= 1, got {name}={v}")
        for name in ("checkpoint_steps", "train_steps"):
            if getattr(self, name) < 0:
                raise SweepError(f"{name} must be >= 0, got {name}={getattr(self, name)}")
        if "vae-mnist" in self.problem:
            if self.data_dir is None:
                raise SweepError("problem vae-mnist needs --data-dir DIR (a directory with the MNIST IDX files)")
            if not Path(self.data_dir).is_dir():
                raise SweepError(f"--data-dir {self.data_dir}: no such directory")
        if self.replicates < 2:
            raise SweepError(f"replicates must be >= 2 (a variance needs two estimates), got replicates={self.replicates}")
        if self.dtype not in ("float64", "float32"):
            raise SweepError(f"dtype must be one of float64, float32; got {self.dtype!r}")
        if self.compile not in compiling.MODES:
            raise SweepError(f"compile must be one of {', '.join(compiling.MODES)}; got {self.compile!r}")
        check_device(self.device)
        return self

    def context(self):
        """The typed computing context shared by the cells of this sweep."""
        import torch

        return problems.Context(dtype=getattr(torch, self.dtype), device=self.device, seed=self.seed,
                                data_dir=self.data_dir, checkpoint_steps=self.checkpoint_steps,
                                train_steps=self.train_steps, compile=self.compile)

    def with_overrides(self, **values: Any) -> Sweep:
        """A copy with the given fields replaced; None values are ignored."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def check_device(device: str) -> None:
    """Raise SweepError unless ``device`` is 'cpu', or 'cuda' / 'cuda:N' naming a GPU this torch can use:
    asked for a GPU that is not there, a run should stop before its first cell, not fail in every one."""
    import torch

    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device != "cpu" and m is None:
        raise SweepError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if m is None:
        return
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise SweepError(f"device {device!r}: no CUDA GPU is available (torch {torch.__version__}, {build}); "
                         f"valid here: 'cpu'")
    count = torch.cuda.device_count()
    if int(m.group(1) or 0) >= count:
        raise SweepError(f"device {device!r}: this machine has {count} CUDA device(s); valid: 'cpu', 'cuda', "
                         + ", ".join(f"'cuda:{i}'" for i in range(count)))


def benchmark_device() -> str:
    """The device of the pytest-benchmark files under benchmarks/: $ESTBENCH_DEVICE (which
    ``pytest --estbench-device`` sets), else 'cpu'; checked as check_device does."""
    import os

    device = os.environ.get("ESTBENCH_DEVICE", "cpu")
    check_device(device)
    return device


_SCALAR_INT = ("replicates", "seed", "checkpoint_steps", "train_steps")
_LIST_FIELDS = {f.name for f in fields(Sweep) if f.name not in (*_SCALAR_INT, "dtype", "device", "data_dir", "compile")}
_TYPES = {"mu": float, "sigma": float, "k": float, "dim": int, "n_samples": int, "problem": str, "estimator": str,
          "checkpoint": str, "hidden": int, "latent": int, "batch": int}


def list_fields() -> set[str]:
    """The sweep's fields that hold a list of values (the axes, problems, estimators)."""
    return set(_LIST_FIELDS)


def _coerce(path: Path, key: str, value: Any) -> Any:
    if key in _LIST_FIELDS:
        values = value if isinstance(value, list) else [value]
        want = _TYPES[key]
        out = []
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and (want is float or float(v).is_integer())

        for v in values:
            if key in ("mu", "sigma") and isinstance(v, list) and v and all(number(x) for x in v):
                out.append(tuple(float(x) for x in v))  # one value per coordinate
                continue
            ok = isinstance(v, str) if want is str else number(v)
            if not ok:
                raise SweepError(f"{path}: {key} must be a list of {want.__name__} values, got {v!r}")
            out.append(want(v))
        return out
    if key in _SCALAR_INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SweepError(f"{path}: {key} must be an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        raise SweepError(f"{path}: {key} must be a string, got {value!r}")
    return value


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a sweep file into Sweep field values; errors name the file (and the line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise SweepError(f"sweep file {path} is not a text file (binary content); expected TOML") from None
    except OSError as exc:
        raise SweepError(f"cannot read sweep file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: malformed TOML: {exc}") from exc
    valid = [f.name for f in fields(Sweep)]
    out = {}
    for key, value in data.items():
        norm = key.replace("-", "_")
        norm = {"problems": "problem", "estimators": "estimator"}.get(norm, norm)
        if norm not in valid:
            raise SweepError(f"{path}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        out[norm] = _coerce(path, norm, value)
    return out


def report_sweeps(base: Sweep, quick: bool = False) -> list[Sweep]:
    """The sweeps of the default report (``estbench report``), from a base sweep's options.

    Three one-axis sweeps of the toy problems around mu = 1, sigma = 1, k = 1, dim = 1,
    n_samples = 4 (variance against sigma, against mu, against n_samples), and the digits VAE
    at both checkpoints with training curves. ``quick`` makes each smaller (about a minute).
    """
    toys = [p for p in base.problem if problems.get(p).kind == "toy"]
    vaes = [p for p in base.problem if problems.get(p).kind != "toy"]
    if quick:
        sigma, mu, n, r_toy = [0.25, 1.0, 4.0], [-2.0, 0.0, 1.0, 2.0], [2, 4, 16], 200
        vae = dict(replicates=50, checkpoint_steps=200, train_steps=100)
    else:
        sigma, mu, n, r_toy = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0], [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0], [1, 2, 4, 8, 16, 32], 1000
        vae = dict(replicates=500, checkpoint_steps=2000, train_steps=1000)
    common = dict(k=[1.0], dim=[1], replicates=r_toy)
    out = []
    if toys:
        out += [
            replace(base, problem=toys, mu=[1.0], sigma=sigma, n_samples=[4], **common),
            replace(base, problem=toys, mu=mu, sigma=[1.0], n_samples=[4], **common),
            replace(base, problem=toys, mu=[1.0], sigma=[1.0], n_samples=n, **common),
        ]
    if vaes:
        out.append(replace(base, problem=vaes, n_samples=[4], **vae))
    return out
