"""Every registered estimator, held to what it declares (estimators.Estimator).

The cases are built from the registry when the tests are collected: a new estimator (built in,
an installed plugin, or a plugin file given with ``pytest --estbench-plugin FILE``) is tested
the moment it exists, with no list to edit.

- ``unbiased = True``: on every toy problem whose family it supports, at two settings each, the
  runner's mean gradient agrees with the exact truth (closed form or enumeration, float64):
  the largest |z| over coordinates (``agreement_z``) stays within the bound for a false-failure
  rate of 1e-3 per test, split over its coordinates x cells (tests/statutil.py).
- ``unbiased = False``: somewhere among the same settings the report's bias rule flags it
  (reports.text.bias_threshold over the cells x gradients measured).
- Declarations are well-formed, and an undeclared family is skipped with the reason before any
  work (no exception as control flow).
"""

from __future__ import annotations

import math

import pytest
import torch

import estimators
from benchmarks import problems, runner
from benchmarks.problems import Context
from benchmarks.sweep import Sweep
from reports.text import bias_threshold

from .statutil import z_bound

#: two settings per built-in toy problem (one value per axis each); a plugin toy runs at its declared defaults
SETTINGS: dict[str, list[dict]] = {
    "gaussian-quadratic": [dict(mu=1.0, sigma=0.7, k=0.5, dim=1), dict(mu=-0.5, sigma=1.5, k=1.3, dim=4)],
    "gaussian-cos": [dict(mu=1.0, sigma=0.7, k=0.5, dim=1), dict(mu=-0.5, sigma=1.5, k=1.3, dim=4)],
    "gaussian-exp": [dict(mu=1.0, sigma=0.7, k=0.5, dim=1), dict(mu=-0.5, sigma=1.5, k=1.3, dim=4)],
    "bernoulli-quadratic": [dict(theta=(0.0, -2.0, 1.5), t=0.45, dim=3), dict(theta=0.7, t=0.2, dim=2)],
    "bernoulli-coupled": [dict(theta=(0.3, -1.0, 2.0, 0.0), dim=4, w_seed=7), dict(theta=-0.4, dim=3, w_seed=2)],
    "categorical-quadratic": [dict(theta=1.5, t=0.3, K=5, dim=2), dict(theta=-0.5, t=0.7, K=3, dim=3)],
    "bernoulli-polynomial": [dict(theta=(0.5, -1.0, 2.0), t=0.45, power=1.5, dim=3),
                             dict(theta=0.3, t=0.3, power=3.0, dim=6)],
    "bernoulli-multisample": [dict(theta=(0.5, -1.0), t=0.45, dim=2, K=3), dict(theta=1.2, t=0.2, dim=1, K=5)],
    "gaussian-iwae": [dict(mu=0.3, sigma=0.8, a=1.0, dim=1, K=3), dict(mu=-0.5, sigma=1.3, a=2.0, dim=2, K=1)],
}
CTX = Context(dtype=torch.float64)


def toys() -> list[str]:
    """The registered problems with an exact truth everywhere (kind 'toy')."""
    return [p for p in problems.available() if problems.get_class(p).kind == "toy"]


def supported(estimator: str) -> list[str]:
    cls = estimators.get_class(estimator)
    return [p for p in toys() if cls.unsupported(problems.get_class(p).family, problems.get_class(p).objective) is None]


def settings_of(problem: str, estimator: str | None = None) -> list[dict]:
    """The problem's test settings; of a multi-sample bound, those with as many samples K as ``estimator`` needs."""
    found = SETTINGS.get(problem) or [{a.name: a.default[0] for a in problems.get_class(problem).axes}]
    if estimator is not None and problems.get_class(problem).objective == estimators.MULTI_SAMPLE:
        found = [v for v in found if v.get("K", 1) >= estimators.get_class(estimator).min_K]
    return found


def measure(estimator: str, problem: str, replicates: int, n_samples: int, seed: int) -> list[dict]:
    """The runner's rows of ``estimator`` on ``problem`` at each of its test settings (float64)."""
    rows = []
    for values in settings_of(problem, estimator):
        sweep = Sweep(problem=[problem], estimator=[estimator], n_samples=[n_samples], replicates=replicates,
                      seed=seed, dtype="float64", **{k: [v] for k, v in values.items()})
        rows += runner.run(sweep)
    return rows


def coordinates(problem: str, estimator: str | None = None) -> int:
    """Coordinates compared over the problem's test settings (every group's)."""
    p = problems.get(problem)
    total = 0
    for values in settings_of(problem, estimator):
        (setting,) = p.settings(Sweep(problem=[problem], **{k: [v] for k, v in values.items()}))
        total += sum(t.numel() for t in p.true_gradient(setting, CTX).values())
    return total


UNBIASED = [(e, p) for e in estimators.available() if estimators.get_class(e).unbiased is True for p in supported(e)]
BIASED = [e for e in estimators.available() if estimators.get_class(e).unbiased is False]


@pytest.mark.parametrize("estimator,problem", UNBIASED, ids=[f"{e}-{p}" for e, p in UNBIASED])
def test_every_unbiased_estimator_matches_the_exact_gradient(estimator, problem):
    n = max(2, estimators.get_class(estimator).min_samples)
    rows = measure(estimator, problem, replicates=4000, n_samples=n, seed=7)
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows if r["status"] != "ok"]
    bound = z_bound(coordinates(problem, estimator))
    for r in rows:
        assert r["reference"] == "exact"
        assert r["agreement_z"] < bound, (r["setting"], r["parameter"], r["agreement_z"], bound)


@pytest.mark.parametrize("estimator", BIASED)
def test_every_biased_estimator_is_flagged_by_the_report_rule(estimator):
    rows = [r for p in supported(estimator) for r in measure(estimator, p, replicates=20_000, n_samples=3, seed=5)]
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok, f"{estimator} ran nowhere: {[r['error'] for r in rows]}"
    threshold = bias_threshold(len(ok))
    assert max(abs(r["bias_z"]) for r in ok) > threshold, [(r["problem"], r["setting"], r["bias_z"]) for r in ok]


def test_every_estimator_declares_well_formed_properties():
    assert UNBIASED and BIASED  # the built-ins have both kinds
    for name in estimators.available():
        cls = estimators.get_class(name)
        assert cls.unbiased in (True, False, None), name
        assert cls.supports and all(isinstance(s, str) for s in cls.supports), name
        assert cls.f_evals_per_draw is None or cls.f_evals_per_draw >= 1, name
        assert isinstance(cls.exact_when, str), name
        if cls.unbiased is not None and not cls.library:
            assert supported(name), f"{name} supports no toy problem, so no test holds it to its declaration"


def test_an_unsupported_family_is_skipped_from_the_declaration_before_any_work(monkeypatch):
    """disarm on a Gaussian toy: skipped with the declared reason, and the estimator is never called."""
    calls = []
    monkeypatch.setattr(estimators.DisARM, "surrogate", lambda *a, **k: calls.append(1))
    rows = runner.run(Sweep(problem=["gaussian-quadratic"], estimator=["disarm"], replicates=10))
    assert {r["status"] for r in rows} == {"skipped"} and not calls
    assert rows[0]["error"] == "estimator 'disarm' needs a bernoulli distribution, got normal"


def test_a_plugin_estimator_is_held_to_its_declaration(tmp_path):
    """A new unbiased plugin file (docs/plugins.md's shape) enters the parametrized cases with no other edit."""
    plugin = tmp_path / "half.py"
    plugin.write_text(
        "from estimators import Reinforce\n"
        "class Half(Reinforce):\n"
        "    name = 'half-reinforce'\n"
        "    unbiased = True  # a false claim: the test must catch it\n"
        "    def surrogate(self, dist, f, n_samples, state=None):\n"
        "        s = super().surrogate(dist, f, n_samples, state)\n"
        "        s.loss = s.f.mean(0) + 0.5 * (s.loss - s.f.mean(0))\n"
        "        return s\n")
    estimators.load_plugin(str(plugin))
    assert "half-reinforce" in estimators.available() and "bernoulli-quadratic" in supported("half-reinforce")
    rows = measure("half-reinforce", "bernoulli-quadratic", replicates=4000, n_samples=2, seed=7)
    assert max(r["agreement_z"] for r in rows) > z_bound(coordinates("bernoulli-quadratic"))
    assert math.isfinite(rows[0]["agreement_z"])


#: (estimator, its options, problem, the setting its exact_when names, a setting where it is not exact): each
#: estimator that declares exact_when, at a setting of its declaration and at one outside it
EXACT_WHEN = [
    ("exact", {}, "bernoulli-quadratic", {"theta": [0.7], "dim": [3]}, None),
    ("disarm", {}, "bernoulli-quadratic", {"theta": [0.0], "dim": [1]}, {"theta": [1.0], "dim": [1]}),
    ("arms", {"copula": ["gaussian"]}, "bernoulli-quadratic", {"theta": [0.0], "dim": [1]}, {"theta": [0.0], "dim": [2]}),
    ("sum-and-sample", {"k": [2]}, "categorical-quadratic", {"K": [3], "dim": [1]}, {"K": [4], "dim": [1]}),
    ("unordered-set", {"k": [3]}, "categorical-quadratic", {"K": [3], "dim": [1]}, {"K": [4], "dim": [1]}),
    ("measure-valued", {}, "gaussian-cos", {"mu": [0.0]}, {"mu": [0.5]}),
]


@pytest.mark.parametrize("estimator,options,problem,exact_at,not_at", EXACT_WHEN, ids=[e[0] for e in EXACT_WHEN])
def test_an_estimators_declared_exactness_holds_and_is_recorded_only_where_its_variance_is_zero(
        estimator, options, problem, exact_at, not_at):
    """exact_when is a claim: at a setting it names the estimator's variance is 0 (measure-valued: its mean's
    gradient) and the row quotes the declaration in exact_reason; at a setting outside it the variance is
    not 0 and exact_reason is empty."""
    cls = estimators.get_class(estimator)
    assert cls.exact_when
    n = max(2, cls.min_samples)
    for setting, exact in ((exact_at, True), (not_at, False)):
        if setting is None:
            continue
        rows = runner.run(Sweep(problem=[problem], estimator=[estimator], n_samples=[n], replicates=200, seed=3,
                                **options, **setting).validate())
        row = next(r for r in rows if r["parameter"] in ("theta", "mu"))
        assert row["status"] == "ok", row
        assert (row["variance"] == 0) is exact, (setting, row["variance"])
        assert row["exact_reason"] == (cls.exact_when if exact else ""), row
