"""What the classification suites (linear, zero-shot, transfer) share: a unit's scores and the aggregate
of a group (fold means and spreads, pooled macro AUROC with its stratified bootstrap interval, classes
scored of classes existing, and the minimum-support flag). Definitions: bench/suites/metrics.py."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bench.suites.metrics import (MIN_DISTINCT_SCORES, MIN_TRAIN_POSITIVES, bootstrap_indices, bootstrap_macro_auroc,
                                  challenge_score, classification_scores, degenerate_reason, percentile_interval, scorable,
                                  seed_draws, two_level_bootstrap)
from bench.suites.base import Aggregate, Group, Unit, UnitResult, content_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext

UNIT_METRICS = ("auroc", "auprc", "f1", "bacc", "hamming_acc")


def unit_result(arrays: dict[str, np.ndarray], classes: Sequence[str], extra: dict[str, float] | None = None,
                params: dict | None = None) -> UnitResult:
    """Scores of one unit from its arrays (``y_true``, ``y_score``, ``y_pred``; ``train_positives`` when
    it trained a head: then ``min_train_positives`` is the fewest training positives of a scored class)."""
    scores = classification_scores(arrays["y_true"], arrays["y_score"], classes, y_pred=arrays["y_pred"])
    metrics = {**scores.as_dict(), **(extra or {})}
    arrays = {**arrays, "classes": np.array(list(classes), dtype=str)}  # so the aggregate can be recomputed from the unit alone
    if "train_positives" in arrays:
        ok = scorable(arrays["y_true"])
        metrics["min_train_positives"] = float(arrays["train_positives"][ok].min()) if ok.any() else float("nan")
    return UnitResult(metrics, dict(params or {}), arrays)


@functools.lru_cache(maxsize=None)
def _vocabulary_codes(dataset: str) -> dict[str, str]:
    """Class code -> SNOMED code in ``dataset``'s label vocabulary (configs/labels/; empty for a vocabulary without
    SNOMED codes, such as PTB-XL's statements)."""
    from bench.config import dataset_configs
    from bench.data.cinc import load_vocabulary

    cfg = dataset_configs().get(dataset)
    name = cfg.data.get("vocabulary") if cfg is not None else None
    if not name:
        return {}
    vocabulary = load_vocabulary(str(name))
    codes = {str(c["code"]): str(c["snomed"]) for c in vocabulary.get("classes", []) if c.get("snomed")}
    return codes


def snomed_codes(dataset: str, classes: Sequence[str]) -> list[str | None]:
    """Each class's SNOMED code in ``dataset``'s vocabulary (None where it has none): what the challenge score reads."""
    codes = _vocabulary_codes(str(dataset))
    return [codes.get(str(c)) for c in classes]


def boot_dir(ctx: "RunContext") -> Path:
    return Path(ctx.base.paths.cache) / "bootstrap"


def evaluation_set_key(identity: dict, record_ids: np.ndarray) -> str:
    """Names an evaluation set (dataset, task, protocol, records): methods scored on it share resamples."""
    return f"{identity['dataset']}|{identity['task']}|{identity['protocol']}|{content_hash(sorted(map(str, record_ids)), 12)}"


def pooled(arrays: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Units' test predictions concatenated and sorted by record id (a continuous target's have no ``y_score``)."""
    ids = np.concatenate([a["record_ids"] for a in arrays])
    order = np.argsort(ids, kind="stable")
    return {k: np.concatenate([a[k] for a in arrays])[order] for k in ("record_ids", "y_true", "y_score", "y_pred") if k in arrays[0]}


def seed_sides(results: list[tuple[Unit, UnitResult]], fallback) -> dict[str, list[tuple[Unit, UnitResult]]]:
    """A group's results by the run seed of their units (one entry for a one-seed cell)."""
    out: dict[str, list] = {}
    for u, r in results:
        out.setdefault(str(u.tags.get("seed", fallback)), []).append((u, r))
    return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0])))


def classification_aggregate(ctx: "RunContext", group: Group, results: list[tuple[Unit, UnitResult]],
                             classes: Sequence[str]) -> Aggregate:
    """Fold means, the pooled macro AUROC and its interval; ``classes`` serve units logged before they stored
    their own. Over several seeds (a ``seed="all"`` cell): the mean over seeds of each seed's pooled AUROC, and the
    two-level bootstrap interval (bench/suites/metrics.py)."""
    stored = results[0][1].arrays.get("classes") if results[0][1].arrays else None
    classes = [str(c) for c in stored] if stored is not None else list(classes)
    per_unit = [r.metrics for _, r in results]
    sides = seed_sides(results, group.identity.get("seed"))
    per_seed = [pooled([r.arrays for _, r in side]) for side in sides.values()]
    p = per_seed[0]
    if any(not np.array_equal(q["record_ids"], p["record_ids"]) for q in per_seed[1:]):
        raise ValueError(f"the seeds of {group.agg_key} were tested on different records; seeds are pooled only on one evaluation set")
    totals = [classification_scores(q["y_true"], q["y_score"], classes, y_pred=q["y_pred"]) for q in per_seed]
    n_boot, seed = int(ctx.base.run.n_boot), int(ctx.base.run.bootstrap_seed)
    boot_key = evaluation_set_key(group.identity, p["record_ids"])
    idx = bootstrap_indices(len(p["record_ids"]), n_boot, seed, boot_dir(ctx), boot_key, y_true=p["y_true"])
    boot = two_level_bootstrap(np.stack([bootstrap_macro_auroc(q["y_true"], q["y_score"], idx) for q in per_seed]),
                               seed_draws(len(per_seed), n_boot, seed))
    lo, hi = percentile_interval(boot)
    m = {f"{k}_mean": float(np.nanmean([u.get(k, np.nan) for u in per_unit])) for k in UNIT_METRICS}
    m.update({f"{k}_std": float(np.nanstd([u.get(k, np.nan) for u in per_unit])) for k in UNIT_METRICS})
    m.update({"auroc_pooled": float(np.mean([t.auroc for t in totals])), "auroc_ci_low": lo, "auroc_ci_high": hi,
              "n_test": float(len(p["record_ids"])), "n_units": float(len(results)), "n_seeds": float(len(per_seed)),
              "classes_scored": float(len(totals[0].classes_scored)), "classes_total": float(len(classes))})
    codes = snomed_codes(group.identity.get("dataset", ""), classes)
    if all(codes):  # the cell's classes are the dataset's own CinC label space (not a transfer's mapped groups)
        challenge = [challenge_score(q["y_true"], q["y_pred"], codes) for q in per_seed]
        if np.isfinite(challenge).all():
            m["challenge_mean"] = float(np.mean(challenge))
    support = [u["min_train_positives"] for u in per_unit if np.isfinite(u.get("min_train_positives", np.nan))]
    tags = {"absent_classes": ",".join(totals[0].absent) or "-", "boot_key": boot_key, "n_boot": n_boot, "bootstrap_seed": seed,
            "bootstrap": "stratified by rarest positive class; fixed class set"}
    if len(per_seed) > 1:
        m["auroc_seed_std"] = float(np.std([t.auroc for t in totals], ddof=1))  # the sample SD over the S seeds
        tags.update({"seeds": ",".join(sides), "auroc_by_seed": ",".join(f"{t.auroc:.6f}" for t in totals),
                     "bootstrap": tags["bootstrap"] + "; two-level: seeds drawn with replacement, then one record resample "
                                                      "shared by every seed"})
    if support:
        m["min_train_positives"] = float(min(support))
        tags["low_support"] = "yes" if min(support) < MIN_TRAIN_POSITIVES else "no"
    flat = {seed: degenerate_reason(q["y_true"], q["y_score"], classes) for seed, q in zip(sides, per_seed)}
    flat = {seed: why for seed, why in flat.items() if why}
    if flat:  # never scored: the cell says why instead (bench/suites/metrics.py)
        m.update({k: float("nan") for k in m if k.split("_")[0] in ("auroc", "auprc", "f1", "bacc", "hamming", "challenge")})
        tags["degenerate"] = " | ".join(f"seed {seed}: {why}" for seed, why in flat.items())
        tags["min_distinct_scores"] = MIN_DISTINCT_SCORES
        tags.pop("auroc_by_seed", None)
        boot = np.full_like(boot, np.nan)
    bootdir = boot_dir(ctx) / "auroc"
    bootdir.mkdir(parents=True, exist_ok=True)
    np.save(bootdir / f"{content_hash(group.agg_key, 12)}.npy", boot)
    return Aggregate(m, tags)
