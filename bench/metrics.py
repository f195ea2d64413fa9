"""Metric definitions, in one place (documented in the README).

- AUROC / AUPRC: per class with scikit-learn (``roc_auc_score``, ``average_precision_score``), then the
  unweighted mean over the classes that have both positives and negatives in the evaluated set.
  Classes without positives (or without negatives) are *reported* in ``absent``, never silently
  folded into the mean.
- F1: per-class F1 of thresholded scores, macro-averaged over the same classes.
- Accuracy: mean per-label accuracy (the fraction of correct 0/1 decisions over records x classes),
  over the same classes.
- Thresholds: a score is positive when it is >= ``threshold`` (0.5 on probabilities for the linear
  head; the zero-shot suite passes its own decisions, see bench/suites/zero_shot.py).
- 95% intervals: percentile bootstrap over records (default 1000 resamples) of macro AUROC; the
  resample indices are persisted per evaluation set so every method is scored on the same resamples,
  and a paired bootstrap test compares two methods on them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score


@dataclass
class Scores:
    auroc: float
    auprc: float
    f1: float
    acc: float
    n: int
    classes_scored: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}auroc": self.auroc, f"{prefix}auprc": self.auprc, f"{prefix}f1": self.f1,
                f"{prefix}acc": self.acc, f"{prefix}n": float(self.n)}


def scorable(y_true: np.ndarray) -> np.ndarray:
    """Classes with at least one positive and one negative."""
    pos = y_true.sum(0)
    return (pos > 0) & (pos < len(y_true))


def classification_scores(y_true: np.ndarray, y_score: np.ndarray, classes: Sequence[str],
                          threshold: float = 0.5, y_pred: np.ndarray | None = None) -> Scores:
    """Macro metrics over the scorable classes; ``y_pred`` overrides the threshold rule when given."""
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=float)
    ok = scorable(y_true)
    absent = [c for c, k in zip(classes, ok) if not k]
    if not ok.any():
        return Scores(float("nan"), float("nan"), float("nan"), float("nan"), len(y_true), [], absent)
    yt, ys = y_true[:, ok], y_score[:, ok]
    pred = (ys >= threshold).astype(int) if y_pred is None else np.asarray(y_pred)[:, ok].astype(int)
    return Scores(
        auroc=float(roc_auc_score(yt, ys, average="macro")),
        auprc=float(average_precision_score(yt, ys, average="macro")),
        f1=float(f1_score(yt, pred, average="macro", zero_division=0)),
        acc=float((yt == pred).mean()),
        n=len(y_true),
        classes_scored=[c for c, k in zip(classes, ok) if k],
        absent=absent,
    )


def bootstrap_indices(n: int, n_boot: int, seed: int, store: str | Path | None = None, key: str = "") -> np.ndarray:
    """[n_boot, n] resample indices, persisted under ``store`` (named by key, n and seed) when given."""
    path = None
    if store is not None:
        tag = hashlib.sha256(key.encode()).hexdigest()[:12]
        path = Path(store) / f"boot-{tag}-n{n}-b{n_boot}-seed{seed}.npy"
        if path.is_file():
            return np.load(path)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n)).astype(np.int32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
        np.save(tmp, idx)
        os.replace(tmp, path)
    return idx


def _weighted_auroc(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one class under each row of ``weights`` [R, n] (resample counts); ties count 1/2."""
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted, w = s[order], y[order], weights[:, order]
    _, group = np.unique(s_sorted, return_inverse=True)
    g = group.max() + 1
    onehot = np.zeros((len(s), g))
    onehot[np.arange(len(s)), group] = 1.0
    neg_g = (w * (1 - y_sorted)) @ onehot  # [R, G] negatives per tie group
    pos_g = (w * y_sorted) @ onehot
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    num = (pos_g * (neg_below + 0.5 * neg_g)).sum(1)
    den = pos_g.sum(1) * neg_g.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def bootstrap_macro_auroc(y_true: np.ndarray, y_score: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Macro AUROC (over the classes scorable in the full set) for each resample: [n_boot]."""
    y_true = np.asarray(y_true).astype(float)
    ok = np.flatnonzero(scorable(y_true.astype(int)))
    n = len(y_true)
    counts = np.zeros((len(indices), n))
    np.add.at(counts, (np.repeat(np.arange(len(indices)), indices.shape[1]), indices.ravel()), 1.0)
    per_class = np.stack([_weighted_auroc(y_true[:, c], np.asarray(y_score)[:, c], counts) for c in ok], axis=1)
    return np.nanmean(per_class, axis=1)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.nanpercentile(samples, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def paired_bootstrap_test(auroc_a: np.ndarray, auroc_b: np.ndarray) -> dict[str, float]:
    """Two methods' bootstrap AUROCs on the *same* resamples: mean difference, its interval, two-sided p."""
    diff = np.asarray(auroc_a) - np.asarray(auroc_b)
    diff = diff[np.isfinite(diff)]
    lo, hi = percentile_interval(diff)
    p = 2 * min((diff <= 0).mean(), (diff >= 0).mean())
    return {"diff": float(diff.mean()), "ci_low": lo, "ci_high": hi, "p_value": float(min(1.0, p))}
