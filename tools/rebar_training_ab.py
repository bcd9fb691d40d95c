"""REBAR's or RELAX's training curves on the binary digits VAE (the report's setting, untrained start, three seeds)
with the control variate learned during the warm-up calls then frozen (as estimators/relax.py does, "frozen") or
learned throughout, one Adam step on every call's draws ("always"): the final test ELBO of each seed and the
training seconds (for docs/problems.md).

    .venv/bin/python tools/rebar_training_ab.py rebar 500 frozen
    .venv/bin/python tools/rebar_training_ab.py rebar 500 always
"""

from __future__ import annotations

import sys

import torch

import estbench.api as api
import estimators
import estimators.relax as relax
from benchmarks import problems
from benchmarks.problems.base import Context


def main(name: str, steps: int, mode: str) -> None:
    torch.set_num_threads(1)
    problem = problems.get("vae-digits-binary")
    cls = estimators.get_class(name)
    if mode == "always":
        relax.LEARN_STEPS = 1

        class Always(cls):  # type: ignore[misc, valid-type]
            warmup_calls = 10**9

        est = Always()
    else:
        est = cls()
    setting = [s for s in problem.settings(api.sweep("vae-digits-binary", name)) if s.checkpoint == "untrained"][0]
    finals = []
    for seed in range(3):
        rows = problem.curves(est, setting, 4, Context(checkpoint_steps=200, seed=seed, train_steps=steps))
        finals.append((rows[-1]["elbo_test"], rows[-1]["wall_time_s"]))
    elbos = [e for e, _ in finals]
    print(name, mode, "test ELBO", [f"{e:.3f}" for e in elbos], "mean", f"{sum(elbos) / len(elbos):.3f}",
          "training s", [round(w, 1) for _, w in finals])


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in ("frozen", "always"):
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
