"""Metric definitions, in one place (the README's "Metrics" section says the same).

- AUROC / AUPRC: per class with scikit-learn (``roc_auc_score``, ``average_precision_score``), then the
  unweighted mean over the classes that have both positives and negatives in the evaluated set
  ("classes scored"; the others are reported in ``absent``, never silently folded into the mean).
- Decisions: the linear and transfer suites threshold each class at the score that maximises that
  class's F1 on the *validation* split (``val_thresholds``; recorded per unit); the zero-shot suite
  decides top-1 (the class with the highest similarity is the one predicted).
- F1: per-class F1 of those decisions, macro-averaged over the classes scored.
- Balanced accuracy (``bacc``, the tables' decision metric): per class (sensitivity + specificity) / 2,
  macro-averaged over the classes scored; robust to prevalence, unlike Hamming accuracy.
- Hamming accuracy (``hamming_acc``): the fraction of correct 0/1 decisions over records x classes;
  dominated by negatives when labels are rare, so it is logged but not tabled.
- Challenge score (``challenge``; CinC 2020/2021 label spaces only, beside macro AUROC): the PhysioNet/CinC Challenge
  metric of those decisions on the classes the challenge scores (their SNOMED codes), with the challenge's weights
  table; 1 = the true labels, 0 = sinus rhythm for every record (``challenge_score``); a cell's value is the mean over
  its seeds of the score of its pooled test predictions. Only a cell whose every class is a class of its dataset's
  CinC vocabulary has one (a transfer's mapped class groups have none).
- Seeds: a run seed drives the pretraining, the head's initialisation and shuffles, and the label-fraction draw together.
  A cell over S >= 2 seeds reports the mean over seeds of the pooled AUROC, and its interval is a two-level bootstrap:
  each resample draws S seeds with replacement, then one record resample shared by every seed, and averages the drawn
  seeds' AUROCs on it (``seed_draws``, ``two_level_bootstrap``). With one seed it is the record bootstrap below.
- 95 % intervals: percentile bootstrap over test records (``run.n_boot`` resamples, default 1000) of
  macro AUROC on a fixed class set: resampling is stratified by each record's rarest positive class
  and a resample in which a class scored on the full set lost all its positives or negatives is
  redrawn, so every resample averages the same classes. The indices are persisted per evaluation set,
  so every method is scored on the same resamples and a paired test compares two methods on them.
- Degenerate outputs are never scored: a cell in which, for some scored class, the positives or the negatives got fewer
  than ``MIN_DISTINCT_SCORES`` distinct scores (or fewer than there are records, when there are fewer) carries no metric,
  only "degenerate" and the reason (``degenerate_reason``). A head fed broken input gives (nearly) every record one
  score; its AUROC near 0.5, or far from it through a handful of ties, measures nothing. One rule for every suite.
- Gap between two independent sets of records (subgroup audits): DeLong's variance of each set's macro AUROC, from
  the per-record structural components of every class averaged over the classes (so classes scored on the same
  records covary as they should), and z = gap / sqrt(var_a + var_b) with a two-sided normal p (``delong_gap_test``).
  Unlike a bootstrap p it has no floor of 2 / (B + 1), so a Holm family of many gaps can still reach significance.
- Paired test: the observed difference of macro AUROC, the percentile interval of the resampled
  differences, and a two-sided p = 2 (1 + #resamples on the other side of 0) / (B + 1), capped at 1:
  it never goes below 2 / (B + 1), the resolution B resamples allow. Holm's step-down adjustment
  (statsmodels ``multipletests``) is applied across the comparisons of one table.
"""

from __future__ import annotations

import collections
import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from bench.files import atomic_path


MIN_TRAIN_POSITIVES = 5  # a scored class with fewer training positives marks the cell (tables: "†")
MIN_DISTINCT_SCORES = 5  # a scored class whose positives or negatives got fewer distinct scores is degenerate


@dataclass
class Scores:
    auroc: float
    auprc: float
    f1: float
    bacc: float
    hamming_acc: float
    n: int
    classes_scored: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}auroc": self.auroc, f"{prefix}auprc": self.auprc, f"{prefix}f1": self.f1, f"{prefix}bacc": self.bacc,
                f"{prefix}hamming_acc": self.hamming_acc, f"{prefix}n": float(self.n),
                f"{prefix}classes_scored": float(len(self.classes_scored)),
                f"{prefix}classes_total": float(len(self.classes_scored) + len(self.absent))}


def scorable(y_true: np.ndarray) -> np.ndarray:
    """Classes with at least one positive and one negative."""
    pos = y_true.sum(0)
    return (pos > 0) & (pos < len(y_true))


def classification_scores(y_true: np.ndarray, y_score: np.ndarray, classes: Sequence[str],
                          threshold: float | np.ndarray = 0.5, y_pred: np.ndarray | None = None) -> Scores:
    """Macro metrics over the scorable classes; decisions are ``y_score >= threshold`` (a scalar or one per
    class) unless ``y_pred`` is given."""
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=float)
    ok = scorable(y_true)
    absent = [c for c, k in zip(classes, ok) if not k]
    if not ok.any():
        return Scores(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), len(y_true), [], absent)
    yt, ys = y_true[:, ok], y_score[:, ok]
    pred = (y_score >= np.asarray(threshold)).astype(int)[:, ok] if y_pred is None else np.asarray(y_pred)[:, ok].astype(int)
    return Scores(
        auroc=float(roc_auc_score(yt, ys, average="macro")),
        auprc=float(average_precision_score(yt, ys, average="macro")),
        f1=float(f1_score(yt, pred, average="macro", zero_division=0)),
        bacc=macro_balanced_accuracy(yt, pred),
        hamming_acc=float((yt == pred).mean()),
        n=len(y_true),
        classes_scored=[c for c, k in zip(classes, ok) if k],
        absent=absent,
    )


CHALLENGE_WEIGHTS = Path(__file__).resolve().parents[2] / "configs" / "labels" / "challenge2021_weights.csv"
SINUS_RHYTHM = "426783006"  # the challenge's "inactive" baseline predicts this class for every record


@functools.lru_cache(maxsize=1)
def challenge_table() -> tuple[dict[str, int], np.ndarray]:
    """SNOMED code -> class index of the challenge's weights table (codes of one class share it), and the weights."""
    table = pd.read_csv(CHALLENGE_WEIGHTS, comment="#", index_col=0)
    return {code: i for i, group in enumerate(table.columns) for code in str(group).split("|")}, table.to_numpy(float)


def challenge_score(y_true: np.ndarray, y_pred: np.ndarray, snomed: Sequence[str | None]) -> float:
    """The PhysioNet/CinC Challenge 2020/2021 metric (Perez Alday et al. 2020; Reyna et al. 2021) on the decisions
    ``y_pred``. The classes are mapped to the challenge's scored classes by their SNOMED codes (``snomed``, None for a
    class without one; codes of one challenge class are merged); unscored classes are left out. Each record gives one
    unit of credit, split equally over the pairs (true class, predicted class) of the classes true or predicted on it,
    and each pair counts with its weight in configs/labels/challenge2021_weights.csv; the sum is normalised so that
    predicting every record's true classes scores 1 and predicting sinus rhythm alone scores 0. NaN when no class is
    scored or sinus rhythm is not one of them (the baseline is then undefined)."""
    index, weights = challenge_table()
    columns = [(k, index[str(code)]) for k, code in enumerate(snomed) if code is not None and str(code) in index]
    scored = sorted({i for _, i in columns})
    if not scored or index[SINUS_RHYTHM] not in scored:
        return float("nan")
    where = {i: n for n, i in enumerate(scored)}

    def merged(y: np.ndarray) -> np.ndarray:
        out = np.zeros((len(y), len(scored)), dtype=bool)
        for k, i in columns:
            out[:, where[i]] |= np.asarray(y)[:, k].astype(bool)
        return out

    labels, w = merged(y_true), weights[np.ix_(scored, scored)]

    def credit(outputs: np.ndarray) -> float:
        share = outputs / np.maximum((labels | outputs).sum(1), 1)[:, None]
        return float((w * (labels.T.astype(float) @ share)).sum())

    inactive = np.zeros_like(labels)
    inactive[:, where[index[SINUS_RHYTHM]]] = True
    observed, correct, baseline = credit(merged(y_pred)), credit(labels), credit(inactive)
    return (observed - baseline) / (correct - baseline) if correct != baseline else 0.0


def _flat_classes(y_true: np.ndarray, y_score: np.ndarray, min_distinct: int) -> list[tuple[int, str, int, int]]:
    """(class index, "positives"/"negatives", distinct scores, records) of each scorable class that is flat."""
    y_true, y_score = np.asarray(y_true).astype(bool), np.asarray(y_score)
    flat = []
    for k in np.flatnonzero(scorable(y_true.astype(int))):
        for part, word in ((y_true[:, k], "positives"), (~y_true[:, k], "negatives")):
            distinct = len(np.unique(y_score[part, k]))
            if distinct < min(min_distinct, int(part.sum())):
                flat.append((int(k), word, distinct, int(part.sum())))
                break
    return flat


def degenerate_classes(y_true: np.ndarray, y_score: np.ndarray, min_distinct: int = MIN_DISTINCT_SCORES) -> int:
    """How many scored classes are flat (module docstring: degenerate outputs)."""
    return len(_flat_classes(y_true, y_score, min_distinct))


def degenerate_reason(y_true: np.ndarray, y_score: np.ndarray, classes: Sequence[str],
                      min_distinct: int = MIN_DISTINCT_SCORES) -> str:
    """Why these predictions are no measurement ("" when they are): each flat class with its count of distinct scores."""
    flat = _flat_classes(y_true, y_score, min_distinct)
    return "; ".join(f"{classes[k]}: {d} distinct score(s) for {n} {word}" for k, word, d, n in flat)


def macro_balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over classes of (sensitivity + specificity) / 2; every column must have both outcomes."""
    from sklearn.metrics import balanced_accuracy_score

    return float(np.mean([balanced_accuracy_score(y_true[:, k], y_pred[:, k]) for k in range(y_true.shape[1])]))


def val_thresholds(y_val: np.ndarray, s_val: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per class, the score threshold that maximises F1 on the validation records (the midpoint between
    the chosen score and the next lower one, so a slightly shifted test score keeps its side); ``default``
    for a class without a validation positive."""
    from sklearn.metrics import precision_recall_curve

    out = np.full(y_val.shape[1], default, dtype=np.float64)
    for k in range(y_val.shape[1]):
        if y_val[:, k].sum() == 0:
            continue
        precision, recall, thr = precision_recall_curve(y_val[:, k], s_val[:, k])
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)[:-1]
        best = thr[int(np.argmax(f1))]
        lower = s_val[:, k][s_val[:, k] < best]
        out[k] = (best + lower.max()) / 2 if len(lower) else best
    return out


def _rarest_positive(y: np.ndarray) -> np.ndarray:
    """Stratum of each record: its rarest positive class (-1 without positives)."""
    pos = y.sum(0).astype(float)
    rank = np.where(y > 0, pos[None, :], np.inf)
    return np.where(np.isfinite(rank.min(1)), rank.argmin(1), -1)


def _stratified_draw(strata: np.ndarray, rng: np.random.Generator, rows: int) -> np.ndarray:
    out = np.empty((rows, len(strata)), dtype=np.int32)
    col = 0
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        out[:, col:col + len(members)] = rng.choice(members, size=(rows, len(members)), replace=True)
        col += len(members)
    return out


def bootstrap_indices(n: int, n_boot: int, seed: int, store: str | Path | None = None, key: str = "",
                      y_true: np.ndarray | None = None) -> np.ndarray:
    """[n_boot, n] resample indices, persisted under ``store`` (named by key, n and seed) when given.

    With ``y_true`` the resampling keeps the class set fixed (module docstring): stratified by each
    record's rarest positive class, redrawing any resample where a class scorable on the full set is not.
    """
    path = None
    if store is not None:
        # a stratified draw depends on the labels too: two heads scoring one record set with other class sets (the
        # robustness suite's and the linear suite's) must not share a file, or the first to draw decides the other's
        strata = "|stratified:" + _digest(np.asarray(y_true).astype(np.int8)).hex() if y_true is not None else ""
        tag = hashlib.sha256((key + strata).encode()).hexdigest()[:12]
        path = Path(store) / f"boot-{tag}-n{n}-b{n_boot}-seed{seed}.npy"
        if path.is_file():
            return np.load(path)
    rng = np.random.default_rng(seed)
    if y_true is None:
        idx = rng.integers(0, n, size=(n_boot, n)).astype(np.int32)
    else:
        y = np.asarray(y_true).astype(int)
        ok = scorable(y)
        strata = _rarest_positive(y[:, ok])
        idx = _stratified_draw(strata, rng, n_boot)
        for _ in range(1000):
            pos = y[:, ok][idx].sum(1)  # [n_boot, classes]
            bad = np.flatnonzero(((pos == 0) | (pos == n)).any(1))
            if not len(bad):
                break
            idx[bad] = _stratified_draw(strata, rng, len(bad))
        else:
            raise RuntimeError("could not draw bootstrap resamples that keep every scored class scorable")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, idx)
    return idx


def _weighted_auroc(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one class under each row of ``weights`` [R, n] (resample counts); ties count 1/2.

    Each positive is credited with the weight of the negatives below its score plus half of those tied with it, read
    from the cumulative weights of the negatives in score order (``searchsorted``): integer sums in float64, so every
    resample's value is exact whatever the order of summation."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y != 1)
    neg_order = neg[np.argsort(s[neg], kind="mergesort")]
    neg_scores = s[neg_order]
    cneg = np.zeros((weights.shape[0], len(neg) + 1))
    np.cumsum(weights[:, neg_order], axis=1, out=cneg[:, 1:])
    lo = np.searchsorted(neg_scores, s[pos], side="left")
    hi = np.searchsorted(neg_scores, s[pos], side="right")
    wpos = weights[:, pos]
    num = 0.5 * np.einsum("rp,rp->r", wpos, cneg[:, lo] + cneg[:, hi])
    den = wpos.sum(1) * cneg[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


_BOOT_MEMO: "collections.OrderedDict[bytes, np.ndarray]" = collections.OrderedDict()


def _digest(*arrays: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.view(np.uint8).reshape(-1).data)
    return h.digest()


def bootstrap_macro_auroc(y_true: np.ndarray, y_score: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Macro AUROC (over the classes scorable in the full set) for each resample: [n_boot]. With indices from
    ``bootstrap_indices(..., y_true=...)`` every resample averages the same classes. A pure function of its inputs,
    remembered for the last few hundred (a publication bootstraps one cell in its table, its paired tests and its
    column's leader)."""
    key = _digest(np.asarray(y_true), np.asarray(y_score), np.asarray(indices))
    if key in _BOOT_MEMO:
        _BOOT_MEMO.move_to_end(key)
        return _BOOT_MEMO[key].copy()
    out = _bootstrap_macro_auroc(y_true, y_score, indices)
    _BOOT_MEMO[key] = out.copy()
    while len(_BOOT_MEMO) > 512:
        _BOOT_MEMO.popitem(last=False)
    return out


def _bootstrap_macro_auroc(y_true: np.ndarray, y_score: np.ndarray, indices: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true).astype(float)
    ok = np.flatnonzero(scorable(y_true.astype(int)))
    n = len(y_true)
    rows = np.repeat(np.arange(len(indices)), indices.shape[1]) * n
    counts = np.bincount(rows + np.asarray(indices).ravel(), minlength=len(indices) * n).reshape(len(indices), n).astype(float)
    per_class = np.stack([_weighted_auroc(y_true[:, c], np.asarray(y_score)[:, c], counts) for c in ok], axis=1)
    return np.nanmean(per_class, axis=1)


def seed_draws(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_seeds] seed indices drawn with replacement: the outer level of the two-level bootstrap. They depend only
    on (n_seeds, n_boot, seed), so every method with S seeds is resampled with the same draws (a paired test pairs them)."""
    if n_seeds == 1:
        return np.zeros((n_boot, 1), dtype=np.int64)
    return np.random.default_rng([seed, n_seeds]).integers(0, n_seeds, size=(n_boot, n_seeds))


def two_level_bootstrap(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Resampled means over seeds: ``per_seed`` [S, B] is each seed's statistic on record resample b (the same record
    resample for every seed), ``draws`` [B, S] the seeds of resample b; returns [B] means of the drawn seeds. With one
    seed it is that seed's record bootstrap unchanged."""
    per_seed = np.asarray(per_seed, dtype=float)
    return per_seed[draws, np.arange(per_seed.shape[1])[:, None]].mean(1)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.nanpercentile(samples, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def paired_bootstrap_test(auroc_a: np.ndarray, auroc_b: np.ndarray, observed_a: float, observed_b: float) -> dict[str, float]:
    """Two methods' bootstrap AUROCs on the *same* resamples and their AUROCs on the full test set:
    the observed difference, the percentile interval of the resampled differences, and the two-sided p
    (module docstring; ``p_floor`` = 2 / (B + 1) is the smallest p B resamples can give)."""
    diff = np.asarray(auroc_a) - np.asarray(auroc_b)
    diff = diff[np.isfinite(diff)]
    b = len(diff)
    lo, hi = percentile_interval(diff)
    p = 2 * (1 + min(int((diff <= 0).sum()), int((diff >= 0).sum()))) / (b + 1)
    return {"diff": float(observed_a - observed_b), "ci_low": lo, "ci_high": hi, "p_value": float(min(1.0, p)),
            "p_floor": 2 / (b + 1), "n_boot": float(b)}


def delong_macro_auroc(y_true: np.ndarray, y_score: np.ndarray) -> tuple[float, float]:
    """Macro AUROC over the scorable classes and its DeLong variance (module docstring)."""
    from scipy.stats import rankdata

    y_true, y_score = np.asarray(y_true).astype(bool), np.asarray(y_score, dtype=float)
    ok = np.flatnonzero(scorable(y_true.astype(int)))
    influence = np.zeros(len(y_true))
    aucs = []
    for k in ok:
        pos, s = y_true[:, k], y_score[:, k]
        m, n = int(pos.sum()), int((~pos).sum())
        rank_all, rank_pos, rank_neg = rankdata(s), rankdata(s[pos]), rankdata(s[~pos])
        v10 = (rank_all[pos] - rank_pos) / n   # per positive: share of negatives it outranks (ties half)
        v01 = 1 - (rank_all[~pos] - rank_neg) / m  # per negative: share of positives that outrank it
        auc = float(v10.mean())
        aucs.append(auc)
        influence[pos] += (v10 - auc) / np.sqrt(m * max(m - 1, 1))
        influence[~pos] += (v01 - auc) / np.sqrt(n * max(n - 1, 1))
    if not aucs:
        return float("nan"), float("nan")
    influence /= len(aucs)
    return float(np.mean(aucs)), float(np.sum(influence ** 2))


def delong_gap_test(y_a: np.ndarray, s_a: np.ndarray, y_b: np.ndarray, s_b: np.ndarray) -> dict[str, float]:
    """Macro AUROC gap a − b between two independent sets of records (with each side's AUROC), its 95% normal interval
    and two-sided p."""
    from scipy.stats import norm

    auc_a, var_a = delong_macro_auroc(y_a, s_a)
    auc_b, var_b = delong_macro_auroc(y_b, s_b)
    se = float(np.sqrt(var_a + var_b))
    gap = auc_a - auc_b
    p = float(2 * norm.sf(abs(gap) / se)) if se > 0 else (1.0 if gap == 0 else 0.0)
    return {"diff": gap, "auroc_a": auc_a, "auroc_b": auc_b, "se": se, "ci_low": gap - 1.959964 * se,
            "ci_high": gap + 1.959964 * se, "p_value": p}


def detectable_gap(se: float, family: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest gap a two-sided test with standard error ``se`` finds with ``power`` at Holm's first step over
    ``family`` comparisons (level alpha / family)."""
    from scipy.stats import norm

    return float((norm.isf(alpha / (2 * max(family, 1))) + norm.ppf(power)) * se)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error) for the comparisons of one table."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    return multipletests(p, method="holm")[1] if len(p) else p


def format_p(p: float, floor: float) -> str:
    """A p-value as the resampling resolution allows: at the floor it is printed as "≤ floor"."""
    if p <= floor + 1e-12:
        return f"≤ {floor:.2g}"
    return f"{p:.3f}" if p >= 0.01 else f"{p:.2g}"
