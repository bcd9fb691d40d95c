"""The library adapters (estimators.adapters): Pyro's ELBOs and Storchastic's methods through estbench.

Without the [pyro] and [storchastic] extras, the tests that need them are skipped, saying so; CI
installs them and runs this file (.ci/run). The first test needs neither: it hides the libraries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

import estbench
import estimators

NEEDS = "the [{0}] extra is not installed: pip install -c constraints.txt -e '.[{0}]'"


@pytest.fixture
def adapters_on(monkeypatch):
    monkeypatch.setenv("ESTBENCH_ADAPTERS", "on")


def _estbench(args: list[str], cwd, hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """estbench ARGS in a new process (the adapters on), with the modules ``hide`` made unimportable."""
    code = (f"import sys; sys.modules.update(dict.fromkeys({list(hide)!r})); from estbench.cli import main; "
            f"sys.exit(main({args!r}))")
    env = {**os.environ, "ESTBENCH_ADAPTERS": "on"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_without_the_extras_list_says_how_to_get_them_and_a_run_refuses_in_one_line(tmp_path):
    hide = ("storch", "pyro")
    listed = _estbench(["list"], tmp_path, hide)
    assert listed.returncode == 0, listed.stderr
    assert "not installed: storchastic:arm" in listed.stdout
    assert "pip install -c constraints.txt -e '.[storchastic]'" in listed.stdout
    assert "pip install -c constraints.txt -e '.[pyro]'" in listed.stdout
    assert "[storchastic adapter]" not in listed.stdout
    out = tmp_path / "r.csv"
    run = _estbench(["run", "--problem", "bernoulli-quadratic", "--estimator", "storchastic:disarm", "--out", str(out)],
                    tmp_path, hide)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
    assert "storchastic:disarm" in run.stderr and "pip install -c constraints.txt -e '.[storchastic]'" in run.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Storchastic


def _f(b):
    return ((b - 0.45) ** 2).sum(-1)


@pytest.mark.parametrize("method", ["ARM", "ScoreFunction", "REBAR"])
def test_storchastic_adapter_gives_the_librarys_gradient_for_one_seeded_draw(method):
    storch = pytest.importorskip("storch", reason=NEEDS.format("storchastic"))
    from estimators.adapters import storchastic_adapter as sa

    theta = torch.tensor([0.3, -1.0, 2.0])
    adapter = {"ARM": sa.ARM, "ScoreFunction": sa.ScoreFunction, "REBAR": sa.Rebar}[method]
    # a Storchastic user's code
    torch.manual_seed(7)
    t = theta.clone().requires_grad_(True)
    b = getattr(storch.method, method)("b", n_samples=3)(Bernoulli(logits=t))
    storch.add_cost(((b - 0.45) ** 2).sum(-1), "cost")
    with warnings.catch_warnings():  # REBAR's backward(create_graph=True) warns of a reference cycle
        warnings.filterwarnings("ignore", "Using backward", UserWarning)
        storch.backward()
    storch.reset()
    # the same draw through estbench's interface: one replicate
    torch.manual_seed(7)
    logits = theta.expand(1, 3).clone().requires_grad_(True)
    sur = adapter()(Independent(Bernoulli(logits=logits, validate_args=False), 1), _f, 3)
    (g,) = torch.autograd.grad(sur.loss.sum(), logits)
    torch.testing.assert_close(g[0], t.grad)


def test_storchastic_batched_replicates_each_get_their_own_estimate():
    """On the independent plate, replicate r's gradient is the score-function estimate made from its own
    draws alone (nothing of the other replicates, and not divided by R): checked draw by draw."""
    pytest.importorskip("storch", reason=NEEDS.format("storchastic"))
    from estimators.adapters.storchastic_adapter import ScoreFunction

    seen = []

    def f(b):
        seen.append(b.detach().clone())
        return _f(b)

    theta = torch.tensor([[-2.0, 0.0], [0.5, 1.0], [3.0, -0.5], [0.0, 0.0], [1.5, -1.5]])
    logits = theta.clone().requires_grad_(True)
    torch.manual_seed(3)
    sur = ScoreFunction()(Independent(Bernoulli(logits=logits, validate_args=False), 1), f, 4)
    (g,) = torch.autograd.grad(sur.loss.sum(), logits)
    (b,) = seen  # [n, R, dim]
    expected = (_f(b).unsqueeze(-1) * (b - torch.sigmoid(theta))).mean(0)
    torch.testing.assert_close(g, expected)


def test_an_f_with_parameters_of_its_own_is_skipped_with_the_reason():
    pytest.importorskip("storch", reason=NEEDS.format("storchastic"))
    from estimators.adapters.storchastic_adapter import ScoreFunction

    w = torch.ones(2, requires_grad=True)  # a decoder's weight: the library would differentiate it too
    logits = torch.zeros(3, 2, requires_grad=True)
    with pytest.raises(estimators.EstimatorError, match="parameters of its own") as err:
        ScoreFunction()(Independent(Bernoulli(logits=logits), 1), lambda b: (b * w).sum(-1), 2)
    assert err.value.capability
    assert w.grad is None


#: estimates per cell of the bias checks: the biases below are 5 to 40 standard errors there
BIAS_R = 10_000


def test_storchastic_bias_verdicts_against_the_exact_gradient(adapters_on):
    """ARM, the batch-average baseline and Expect are unbiased; REBAR is biased (z ~ +17 at R = 10,000),
    and so is DisARM (its mean is near 0 where the truth is 0.025: z ~ -55 at R = 10,000, n = 2); the
    moving-average baseline includes the current cost in its own baseline, so the estimate is
    (1 - 0.05 / n) times the truth (z ~ -15 at R = 2000, n = 1)."""
    pytest.importorskip("storch", reason=NEEDS.format("storchastic"))
    df = estbench.run("bernoulli-quadratic", ["storchastic:arm", "storchastic:score-function-batch-average",
                                              "storchastic:expect", "storchastic:rebar", "storchastic:disarm"],
                      theta=0.0, n_samples=2, replicates=BIAS_R)
    z = df.set_index("estimator")["bias_z"]
    assert abs(z["storchastic:arm"]) < 4 and abs(z["storchastic:score-function-batch-average"]) < 4
    assert z["storchastic:expect"] == 0 and df.set_index("estimator").loc["storchastic:expect", "variance"] == 0
    assert z["storchastic:rebar"] > 8
    assert z["storchastic:disarm"] < -20
    ma = estbench.run("bernoulli-quadratic", "storchastic:score-function-moving-average", theta=0.0, n_samples=1,
                      replicates=2000).iloc[0]
    assert ma["bias_z"] < -8 and ma["mean"] == pytest.approx(0.025 * 0.95, rel=0.03)
    assert "one at a time" in ma["estimator_note"] and ma["counterpart"] == "reinforce-ema"


def test_storchastics_categorical_estimators_against_the_exact_gradient(adapters_on):
    """categorical-quadratic (K = 5, theta 1.5, t 0.3, one variable), n_samples 3, R = 10,000, float64: the batch-average
    baseline is unbiased; ScoreFunctionWOR's default (normalized importance weights, biased=True) is biased (z ~ 370);
    RaoBlackwellSF returns the same wrong gradient at every draw (variance 0, mean -0.0238 where the truth is
    -0.0224); the unordered set estimator, whose leave-one-out ratios Storchastic integrates numerically, is flagged
    (z ~ 8); its relaxations (sparsemax, entmax) are biased by design."""
    pytest.importorskip("storch", reason=NEEDS.format("storchastic"))
    names = ["storchastic:score-function-batch-average", "storchastic:score-function-wor", "storchastic:rao-blackwell-sf",
             "storchastic:unordered-set", "storchastic:gumbel-entmax"]
    df = estbench.run("categorical-quadratic", names, theta=1.5, t=0.3, K=5, dim=1, n_samples=3, replicates=BIAS_R,
                      dtype="float64").set_index("estimator")
    assert (df["status"] == "ok").all(), df["error"]
    threshold = 4.0  # the report's rule over these 5 cells: 1% / (2 x 5), |z| > 3.29; the assertions leave margin
    assert abs(df.loc["storchastic:score-function-batch-average", "bias_z"]) < threshold
    assert df.loc["storchastic:score-function-wor", "bias_z"] > 20
    rb = df.loc["storchastic:rao-blackwell-sf"]
    assert rb["variance"] == 0 and abs(rb["bias_z"]) > 20 and rb["counterpart"] == "sum-and-sample"
    assert abs(df.loc["storchastic:unordered-set", "bias_z"]) > threshold
    assert abs(df.loc["storchastic:gumbel-entmax", "bias_z"]) > 10
    # asked for more distinct samples than a Bernoulli variable has outcomes (3 of 2), Storchastic's sequence methods
    # raise (its AncestralPlate has no variable_index): failed rows, the run goes on
    bern = estbench.run("bernoulli-quadratic", ["storchastic:unordered-set", "storchastic:rao-blackwell-sf"], n_samples=3,
                        replicates=50)
    assert (bern["status"] == "failed").all() and "variable_index" in bern["error"].iloc[0]


# ---------------------------------------------------------------------------------------------
# Pyro


@pytest.mark.parametrize("kind", ["bernoulli", "normal"])
def test_pyro_adapter_gives_the_librarys_gradient_for_one_seeded_draw(kind):
    pyro = pytest.importorskip("pyro", reason=NEEDS.format("pyro"))
    import pyro.distributions as pdist

    from estimators.adapters.pyro_adapter import TraceELBO

    f = _f if kind == "bernoulli" else (lambda x: ((x - 0.3) ** 2).sum(-1))
    init = {"bernoulli": {"logits": torch.tensor([0.3, -1.0, 2.0])},
            "normal": {"loc": torch.tensor([0.3, -1.0, 2.0]), "scale": torch.tensor([0.5, 1.0, 2.0])}}[kind]

    def q(detach: bool):
        p = {k: pyro.param(k, v.clone()) for k, v in init.items()}
        p = {k: v.detach() for k, v in p.items()} if detach else p
        return (pdist.Bernoulli(logits=p["logits"]) if kind == "bernoulli" else pdist.Normal(p["loc"], p["scale"])).to_event(1)

    def model():
        x = pyro.sample("x", q(kind == "bernoulli"))
        pyro.factor("f", f(x))

    def guide():
        pyro.sample("x", q(False))

    # a Pyro user's code
    pyro.clear_param_store()
    torch.manual_seed(11)
    pyro.infer.Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1).loss_and_grads(model, guide)
    expected = {k: -pyro.get_param_store().get_param(k).unconstrained().grad for k in init}
    pyro.clear_param_store()
    # the same draw through estbench's interface: one replicate
    torch.manual_seed(11)
    params = {k: v.expand(1, 3).clone().requires_grad_(True) for k, v in init.items()}
    dist = (Bernoulli(logits=params["logits"], validate_args=False) if kind == "bernoulli"
            else Normal(params["loc"], params["scale"]))
    sur = TraceELBO()(Independent(dist, 1), f, 3)
    grads = torch.autograd.grad(sur.loss.sum(), list(params.values()))
    for (k, _), g in zip(params.items(), grads, strict=True):
        torch.testing.assert_close(g[0], expected[k])


def test_pyro_bias_verdicts_against_the_exact_gradient(adapters_on):
    """Trace_ELBO is pathwise on a Normal and the score function on a Bernoulli, both unbiased, and so is
    TraceGraph_ELBO's decaying-average baseline (it uses the average from before the current cost)."""
    pytest.importorskip("pyro", reason=NEEDS.format("pyro"))
    g = estbench.run("gaussian-quadratic", "pyro:trace-elbo", mu=0.5, sigma=1.0, n_samples=1, replicates=BIAS_R)
    assert (g["bias_z"].abs() < 4).all() and (g["counterpart"] == "reparameterization reinforce").all()
    b = estbench.run("bernoulli-quadratic", ["pyro:trace-elbo", "pyro:tracegraph-elbo"], theta=0.0, n_samples=2,
                     replicates=BIAS_R)
    assert (b["bias_z"].abs() < 4).all()
    avg = estbench.run("bernoulli-quadratic", "pyro:tracegraph-elbo-avg-baseline", theta=0.0, n_samples=1,
                       replicates=2000).iloc[0]
    assert abs(avg["bias_z"]) < 4


def test_pyros_decaying_average_settles_within_the_warm_up():
    """pyro:tracegraph-elbo-avg-baseline updates its average at each replicate (one step each), so its declared
    warm-up of 5 calls leaves the average's start at most 1% of its weight in the smallest warm-up the runner makes
    (the quick report's looping cells: QUICK_LOOP_REPLICATES in TIMING_REPEATS chunks), and the baseline Pyro is
    given is that factor."""
    pytest.importorskip("pyro", reason=NEEDS.format("pyro"))
    from benchmarks.engine import TIMING_REPEATS, warmup_calls
    from benchmarks.sweep import QUICK_LOOP_REPLICATES
    from estimators.adapters.pyro_adapter import TraceGraphELBOAvgBaseline

    est = TraceGraphELBOAvgBaseline()
    steps = warmup_calls(est) * (QUICK_LOOP_REPLICATES // TIMING_REPEATS)
    assert est.baseline_beta ** steps <= 0.01 and warmup_calls(est) < 10
    assert est.guide_options()["baseline"] == {"use_decaying_avg_baseline": True, "baseline_beta": est.baseline_beta}


# ---------------------------------------------------------------------------------------------
# the report


def test_the_report_compares_each_library_estimator_with_estbenchs_own(adapters_on, tmp_path):
    pytest.importorskip("storch", reason=NEEDS.format("storchastic"))
    results = tmp_path / "results.csv"
    estbench.run("bernoulli-quadratic", ["storchastic:arm", "arm", "storchastic:rebar", "rebar", "storchastic:disarm"],
                 theta=0.0, n_samples=2, replicates=BIAS_R, out=results)
    text = estbench.report(results, tmp_path / "report").read_text()
    section = text[text.index("## Library estimators against estbench's own"):]
    section = section[:section.index("\n## ", 5)]
    assert "Flagged biased against the exact gradient: storchastic:rebar on bernoulli-quadratic" in section
    assert "estbench's rebar" in section and "not flagged" in section
    assert "storchastic:disarm on bernoulli-quadratic (|bias z| up to" in section
    assert "Not flagged on bernoulli-quadratic: storchastic:arm." in section
    assert "| bernoulli-quadratic | storchastic:arm | arm | 1 of 1 |" in section


# ---------------------------------------------------------------------------------------------
# the other ways to run them


def test_pytest_benchmark_times_the_library_estimators(tmp_path):
    pytest.importorskip("storch", reason=NEEDS.format("storchastic"))
    pytest.importorskip("pyro", reason=NEEDS.format("pyro"))
    env = {**os.environ, "ESTBENCH_ADAPTERS": "on", "ESTBENCH_BENCH_REPLICATES": "200"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-only",
                           "--benchmark-min-rounds=1", "--benchmark-max-time=0.01", f"--benchmark-json={out}",
                           "benchmarks/bench_estimators.py", "-k", "storchastic:rebar or pyro:trace-elbo"],
                          capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:]
    names = {b["name"] for b in json.loads(out.read_text())["benchmarks"]}
    assert any(n.startswith("storchastic:rebar[bernoulli-quadratic") for n in names), names
    assert any(n.startswith("pyro:trace-elbo[gaussian-quadratic") for n in names), names


def test_a_cluster_run_gives_the_serial_rows(adapters_on):
    pytest.importorskip("storch", reason=NEEDS.format("storchastic"))
    pytest.importorskip("distributed", reason="the [dask] extra is not installed")
    from benchmarks.results_file import TIMING_COLUMNS

    names = ["storchastic:arm", "storchastic:score-function-moving-average", "pyro:trace-elbo"]
    serial = estbench.run("bernoulli-quadratic", names, theta=[0.0, -2.0], replicates=300)
    cluster = estbench.run("bernoulli-quadratic", names, theta=[0.0, -2.0], replicates=300, workers=2)
    key = ["estimator", "setting", "parameter"]
    a, b = (d.drop(columns=list(TIMING_COLUMNS)).sort_values(key).reset_index(drop=True) for d in (serial, cluster))
    pd.testing.assert_frame_equal(a, b)
