"""Metric definitions against scikit-learn on hand-made cases; bootstrap and paired test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from bench.metrics import (bootstrap_indices, bootstrap_macro_auroc, classification_scores, paired_bootstrap_test,
                           percentile_interval)


def test_macro_metrics_match_sklearn_and_report_absent_classes():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    s = np.array([[0.9, 0.2, 0.1], [0.4, 0.8, 0.3], [0.6, 0.4, 0.2], [0.1, 0.3, 0.7]])
    sc = classification_scores(y, s, ["a", "b", "c"])
    assert sc.absent == ["c"] and sc.classes_scored == ["a", "b"]
    assert sc.auroc == pytest.approx(np.mean([roc_auc_score(y[:, 0], s[:, 0]), roc_auc_score(y[:, 1], s[:, 1])]))
    assert sc.auprc == pytest.approx(np.mean([average_precision_score(y[:, k], s[:, k]) for k in (0, 1)]))
    pred = (s[:, :2] >= 0.5).astype(int)
    assert sc.f1 == pytest.approx(f1_score(y[:, :2], pred, average="macro"))
    assert sc.acc == pytest.approx((pred == y[:, :2]).mean())  # mean per-label accuracy at 0.5
    hand = classification_scores(y, s, ["a", "b", "c"], y_pred=np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]))
    assert hand.acc == pytest.approx(7 / 8)


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


def test_paired_test_separates_better_from_equal():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 2)) < 0.5).astype(int)
    good, bad = y + rng.normal(0, 0.5, y.shape), y + rng.normal(0, 2.0, y.shape)
    idx = bootstrap_indices(300, 300, seed=0)
    a, b = bootstrap_macro_auroc(y, good, idx), bootstrap_macro_auroc(y, bad, idx)
    res = paired_bootstrap_test(a, b)
    assert res["diff"] > 0.1 and res["p_value"] < 0.01 and res["ci_low"] > 0
    same = paired_bootstrap_test(a, a)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    lo, hi = percentile_interval(a)
    assert lo < np.mean(a) < hi
