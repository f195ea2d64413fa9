"""Metric definitions against scikit-learn on hand-made cases; bootstrap and paired test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

from bench.suites.metrics import (bootstrap_indices, bootstrap_macro_auroc, classification_scores, format_p, holm,
                           paired_bootstrap_test, percentile_interval, val_thresholds)


def test_macro_metrics_match_sklearn_and_report_absent_classes():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    s = np.array([[0.9, 0.2, 0.1], [0.4, 0.8, 0.3], [0.6, 0.4, 0.2], [0.1, 0.3, 0.7]])
    sc = classification_scores(y, s, ["a", "b", "c"])
    assert sc.absent == ["c"] and sc.classes_scored == ["a", "b"]
    assert sc.auroc == pytest.approx(np.mean([roc_auc_score(y[:, 0], s[:, 0]), roc_auc_score(y[:, 1], s[:, 1])]))
    assert sc.auprc == pytest.approx(np.mean([average_precision_score(y[:, k], s[:, k]) for k in (0, 1)]))
    pred = (s[:, :2] >= 0.5).astype(int)
    assert sc.f1 == pytest.approx(f1_score(y[:, :2], pred, average="macro"))
    assert sc.hamming_acc == pytest.approx((pred == y[:, :2]).mean())  # mean per-label accuracy
    assert sc.bacc == pytest.approx(np.mean([balanced_accuracy_score(y[:, k], pred[:, k]) for k in (0, 1)]))
    hand = classification_scores(y, s, ["a", "b", "c"], y_pred=np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]))
    assert hand.hamming_acc == pytest.approx(7 / 8)
    # a: 1 of 2 positives found, both negatives right -> (0.5 + 1) / 2; b: both found, both negatives right -> 1
    assert hand.bacc == pytest.approx((0.75 + 1.0) / 2)


def test_all_negative_predictor_gets_half_balanced_accuracy_though_hamming_looks_high():
    y = np.zeros((100, 4), int)
    y[:3, 0] = y[3:6, 1] = y[6:9, 2] = y[9:12, 3] = 1
    sc = classification_scores(y, np.zeros((100, 4)), list("abcd"), y_pred=np.zeros((100, 4), int))
    assert sc.hamming_acc == pytest.approx(0.97) and sc.bacc == pytest.approx(0.5)


def test_validation_thresholds_separate_a_separable_toy_case():
    rng = np.random.default_rng(0)
    y_val = (rng.random((60, 2)) < 0.3).astype(int)
    y_val[0] = [1, 1]
    s_val = np.where(y_val == 1, 0.15, 0.05) + rng.uniform(0, 0.02, y_val.shape)  # positives score 0.15-0.17, all below 0.5
    thr = val_thresholds(y_val, s_val)
    assert np.all((thr > 0.07) & (thr < 0.15))
    y_test = (rng.random((40, 2)) < 0.3).astype(int)
    y_test[0] = [1, 1]
    s_test = np.where(y_test == 1, 0.15, 0.05) + rng.uniform(0, 0.02, y_test.shape)
    assert classification_scores(y_test, s_test, ["a", "b"], threshold=thr).f1 == pytest.approx(1.0)
    assert classification_scores(y_test, s_test, ["a", "b"]).f1 == 0.0  # the old fixed 0.5 predicts nothing
    assert val_thresholds(np.zeros((5, 1), int), np.zeros((5, 1)))[0] == 0.5  # no validation positive: the default


def test_bootstrap_auroc_equals_sklearn_on_each_resample_and_is_persisted(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random((80, 3)) < 0.4).astype(int)
    s = np.round(rng.random((80, 3)) + 0.5 * y, 1)  # rounded: ties included
    idx = bootstrap_indices(80, 40, seed=1, store=tmp_path, key="k")
    assert np.array_equal(idx, bootstrap_indices(80, 40, seed=1, store=tmp_path, key="k"))
    assert len(list(tmp_path.glob("boot-*.npy"))) == 1
    fast = bootstrap_macro_auroc(y, s, idx)
    for r in range(40):
        yy, ss = y[idx[r]], s[idx[r]]
        ok = [k for k in range(3) if 0 < yy[:, k].sum() < len(yy)]
        assert fast[r] == pytest.approx(np.mean([roc_auc_score(yy[:, k], ss[:, k]) for k in ok]))


def test_stratified_resamples_keep_a_single_positive_class_scorable():
    rng = np.random.default_rng(0)
    y = (rng.random((194, 4)) < 0.3).astype(int)
    y[:, 3] = 0
    y[17, 3] = 1  # one positive, as WPW in fold 10
    s = rng.random(y.shape)
    plain = bootstrap_indices(194, 400, seed=0)
    lost = np.mean([y[i, 3].sum() == 0 for i in plain])
    assert 0.3 < lost < 0.45  # plain resampling drops it from ~(1 - 1/n)^n = 37% of the resamples
    strat = bootstrap_indices(194, 400, seed=0, y_true=y)
    assert all(0 < y[i, k].sum() < 194 for i in strat for k in range(4))
    boot = bootstrap_macro_auroc(y, s, strat)
    assert np.isfinite(boot).all()
    for r in range(0, 400, 50):  # every resample averages all four classes
        assert boot[r] == pytest.approx(np.mean([roc_auc_score(y[strat[r], k], s[strat[r], k]) for k in range(4)]))


def test_paired_test_reports_observed_difference_and_never_goes_below_its_floor():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 2)) < 0.5).astype(int)
    good, bad = y + rng.normal(0, 0.5, y.shape), y + rng.normal(0, 2.0, y.shape)
    idx = bootstrap_indices(300, 199, seed=0, y_true=y)
    whole = np.arange(300)[None]
    obs_a, obs_b = bootstrap_macro_auroc(y, good, whole)[0], bootstrap_macro_auroc(y, bad, whole)[0]
    a, b = bootstrap_macro_auroc(y, good, idx), bootstrap_macro_auroc(y, bad, idx)
    res = paired_bootstrap_test(a, b, obs_a, obs_b)
    assert res["diff"] == pytest.approx(obs_a - obs_b) and res["diff"] != pytest.approx(np.mean(a - b), abs=1e-9)
    assert res["ci_low"] > 0 and res["p_value"] == pytest.approx(2 / 200) == res["p_floor"]  # every resample favours a
    assert format_p(res["p_value"], res["p_floor"]) == "≤ 0.01"
    assert format_p(0.0004, 2 / 10001) == "0.0004" and format_p(0.0312, 0.002) == "0.031"  # never a bare 0.000
    same = paired_bootstrap_test(a, a, obs_a, obs_a)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    half = paired_bootstrap_test(np.array([1.0, -1.0, 2.0, -2.0]), np.zeros(4), 0.0, 0.0)
    assert half["p_value"] == pytest.approx(min(1.0, 2 * (1 + 2) / 5))


def test_holm_matches_statsmodels_and_a_hand_computation():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03]
    assert np.allclose(holm(p), [0.03, 0.06, 0.06])  # 3 x 0.01; max(2 x 0.03, ...) = 0.06; 0.04 raised to 0.06
    q = np.random.default_rng(1).random(12) ** 3
    assert np.allclose(holm(q), multipletests(q, method="holm")[1])


def test_percentile_interval_matches_scipy_percentile_bootstrap_on_the_same_resamples():
    from scipy.stats import bootstrap

    x = np.random.default_rng(2).normal(size=50)
    res = bootstrap((x,), np.mean, n_resamples=2000, method="percentile", random_state=np.random.default_rng(3))
    means = x[np.random.default_rng(3).integers(0, 50, size=(2000, 50))].mean(1)
    lo, hi = percentile_interval(means)
    assert (lo, hi) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), abs=0.03)


def test_challenge_score_equals_the_challenges_own_evaluation_code():
    """The PhysioNet/CinC Challenge metric on bench's cinc2021 and cpsc2018 label spaces equals what evaluation-2021's
    evaluate_model.compute_challenge_metric gives on the same labels and decisions (tests/golden/metrics/challenge, written
    by scripts/golden/regenerate.py --challenge); the true labels score 1, sinus rhythm for every record 0, and a label
    space without sinus rhythm has no score."""
    import json
    from pathlib import Path

    import yaml

    from bench.suites.metrics import challenge_score

    folder = Path(__file__).parent / "golden" / "metrics" / "challenge"
    case = json.loads((folder / "case.json").read_text())
    arrays = np.load(folder / "expected.npz")
    for entry in case["cases"]:
        name = entry["vocabulary"]
        classes = yaml.safe_load((Path(__file__).parents[1] / "configs" / "labels" / f"{name}.yaml").read_text())["classes"]
        snomed = [str(c["snomed"]) for c in classes]
        y_true, y_pred = arrays[f"{name}_true"], arrays[f"{name}_pred"]
        assert abs(challenge_score(y_true, y_pred, snomed) - entry["score"]) < 1e-12, name
        assert challenge_score(y_true, y_true, snomed) == pytest.approx(1.0)
        sinus = np.zeros_like(y_true)
        sinus[:, snomed.index("426783006")] = True
        assert challenge_score(y_true, sinus, snomed) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(challenge_score(y_true[:, :2], y_pred[:, :2], ["164889003", None]))


def test_a_cinc_label_space_gets_the_challenge_score_beside_auroc(tmp_path):
    """A linear run on a CPSC2018-layout dataset (the demo's synthetic records, its cpsc2018 vocabulary): the cell carries
    challenge_mean, the mean over seeds of challenge_score on its pooled decisions, and `bench table linear` prints a
    Challenge column for it; a PTB-XL-statement task gets none."""
    import pandas as pd
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.run.store import ResultStore

    store = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"tracking.artifacts={tmp_path}/artifacts", f"paths.cache={tmp_path}/cache",
             "data.demo.n_records=300", "linear.epochs=4", "run.n_boot=50"]
    cli = CliRunner()
    for dataset in ("demo_cpsc2018", "demo_ptbxl"):
        done = cli.invoke(app, ["run", "--suite", "linear", "--methods", "signal_stats", "--datasets", dataset, "--tasks",
                                "all" if dataset == "demo_cpsc2018" else "super", *store])
        assert done.exit_code == 0, done.output
    aggregates = ResultStore(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts").aggregates(["linear"])
    cinc = aggregates[aggregates["dataset"] == "demo_cpsc2018"]
    assert np.isfinite(pd.to_numeric(cinc["challenge_mean"])).all()
    assert pd.to_numeric(aggregates[aggregates["dataset"] == "demo_ptbxl"]["challenge_mean"], errors="coerce").isna().all()
    from bench.suites.classification import snomed_codes

    assert all(snomed_codes("demo_cpsc2018", ["AFIB", "NORM", "STD"])) and not all(snomed_codes("demo_cpsc2018", ["NORM", "MI"]))
    table = cli.invoke(app, ["table", "linear", *store])
    assert table.exit_code == 0, table.output
    assert "demo_cpsc2018/all Challenge" in table.output and "demo_ptbxl/super Challenge" not in table.output
