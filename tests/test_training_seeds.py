"""Training curves over seeds (--train-seeds): the plan, the results file, resume, and the report's
mean, interval and separation statements, on frozen curves whose intervals are known."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from benchmarks import runner
from benchmarks.plan import curve_cells, training_seed
from benchmarks.sweep import Sweep, SweepError
from estbench.cli import main
from reports.training import separation, shown_table, t_half_width, training_paragraph, training_table

VAE = ["--problem", "vae-digits-binary", "--estimator", "reinforce", "disarm", "--checkpoint", "untrained",
       "--hidden", "8", "--latent", "3", "--batch", "4", "--replicates", "10", "--train-steps", "3", "--quiet"]


def test_each_estimator_trains_once_per_seed_from_its_own_seed():
    sweep = Sweep(problem=["vae-digits-binary"], estimator=["reinforce", "disarm"], train_steps=5, train_seeds=3,
                  checkpoint=["untrained"], n_samples=[4]).validate()
    cells = curve_cells(sweep)
    assert sorted((c.estimator, c.train_seed) for c in cells) == [(e, i) for e in ("disarm", "reinforce") for i in range(3)]
    seeds = {training_seed(7, i) for i in range(3)}
    assert training_seed(7, 0) == 7 and len(seeds) == 3  # the first is the run's seed; the others differ
    assert training_seed(7, 1) != training_seed(8, 1)
    # an estimator's seeds share a group (its seed 0's label, declared, not parsed); estimators differ
    first = {c.estimator: c.label for c in cells if c.train_seed == 0}
    assert {(c.estimator, c.group) for c in cells} == set(first.items()) and len(set(first.values())) == 2
    assert all(c.group != c.label for c in cells if c.train_seed)


def test_train_seeds_out_of_range_is_refused():
    for bad in (0, 101, 10**20):  # the last would plan more curves than memory holds
        with pytest.raises(SweepError, match=f"train_seeds must be between 1 and 100 .*got train_seeds={bad}"):
            Sweep(train_seeds=bad).validate()


def test_seeds_are_recorded_and_a_resume_adds_only_the_new_ones(tmp_path):
    out = tmp_path / "r.csv"
    assert main(["run", *VAE, "--train-seeds", "2", "--out", str(out)]) == 0
    curves = pd.read_csv(runner.curves_path(out))
    assert sorted(set(zip(curves["estimator"], curves["train_seed"], strict=True))) == [("disarm", 0), ("disarm", 1),
                                                                            ("reinforce", 0), ("reinforce", 1)]
    first = curves[curves["train_seed"] == 0].groupby("estimator")["elbo_test"].last()
    second = curves[curves["train_seed"] == 1].groupby("estimator")["elbo_test"].last()
    assert (first != second).all()  # another seed: other initial weights, batches and draws
    assert main(["run", *VAE, "--train-seeds", "3", "--out", str(out), "--resume"]) == 0
    again = pd.read_csv(runner.curves_path(out))
    assert len(again) == len(curves) * 3 // 2  # seed 2 added, seeds 0 and 1 kept as they were
    pd.testing.assert_frame_equal(again.iloc[: len(curves)], curves)


def _frozen(ends: dict[str, list[float]], start: float = -40.0) -> pd.DataFrame:
    """Curves of two logged points per seed: the start, and the end values given per estimator."""
    rows = []
    for est, values in ends.items():
        for seed, v in enumerate(values):
            for step, elbo in ((0, start), (100, v)):
                rows.append({"problem": "vae-x", "estimator": est, "n_samples": 4, "train_seed": seed, "step": step,
                             "wall_time_s": step / 100, "elbo_test": elbo, "status": "ok"})
    return pd.DataFrame(rows)


def test_the_interval_is_students_t_over_the_seeds():
    # mean -25, sample sd 1, n = 3: half-width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    assert t_half_width(pd.Series([-26.0, -25.0, -24.0])) == pytest.approx(2.4841, abs=1e-4)
    assert math.isnan(t_half_width(pd.Series([-25.0])))


def test_separation_statements_follow_the_intervals_on_frozen_curves():
    # half-widths: a, b, d 0.2484 (sd 0.1); c 0.0248 (sd 0.01). a: [-24.25, -23.75]; b: [-24.45, -23.95]
    # overlaps a's; c: [-24.52, -24.48] and d: [-26.25, -25.75] lie below a's
    tr = _frozen({"a": [-24.1, -24.0, -23.9], "b": [-24.3, -24.2, -24.1], "c": [-24.51, -24.5, -24.49],
                  "d": [-26.1, -26.0, -25.9]})
    table = training_table(tr)
    assert table.set_index("estimator")["seeds"].to_dict() == {"a": 3, "b": 3, "c": 3, "d": 3}
    assert separation(table) == ("a", ["b"], ["c", "d"])
    text = training_paragraph(table)
    assert "mean over 3 seeds" in text and "a reaches the best" in text and "d the worst" in text
    assert "Not separated from a (their final intervals overlap its): b." in text
    assert "Separated below it (intervals apart): c, d;" in text
    shown = shown_table(table)
    assert list(shown.columns[:7]) == ["estimator", "n_samples", "seeds", "steps", "test ELBO at start",
                                      "test ELBO at end", "95% interval at end"]
    assert shown.set_index("estimator").loc["c", "95% interval at end"] == "[-24.52, -24.48]"


def test_one_seed_ranks_nothing_and_a_diverged_seed_is_said():
    one = training_table(_frozen({"a": [-24.0], "b": [-30.0]}))
    text = training_paragraph(one)
    assert separation(one) is None and "one seed, no interval" in text and "no difference between them" in text
    tr = _frozen({"a": [-24.1, -24.0, -23.9], "b": [-24.3, -24.2, -24.1]})
    tr.loc[(tr["estimator"] == "b") & (tr["train_seed"] == 2) & (tr["step"] == 100), ["elbo_test", "status"]] = \
        [math.nan, "diverged"]
    table = training_table(tr)
    assert table.set_index("estimator").loc["b", "status"] == "diverged (1 of 3 seeds)"
    assert "b's training diverged (1 of 3 seeds)." in training_paragraph(table)
    assert separation(table) is None  # one estimator left with all its seeds ok


def test_a_results_file_from_before_seeds_reads_as_one_seed():
    tr = _frozen({"a": [-24.0], "b": [-25.0]}).drop(columns="train_seed")
    table = training_table(tr)
    assert table["seeds"].tolist() == [1, 1]
