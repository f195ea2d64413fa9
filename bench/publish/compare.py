"""Paired comparison of two methods on the same evaluation records and the same bootstrap resamples.

Each side is exactly the set of units its aggregate pooled (the aggregate's ``unit_keys``), never a
tag filter that could also match stale units from other settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from bench.suites.metrics import bootstrap_indices, bootstrap_macro_auroc, holm, paired_bootstrap_test
from bench.run.store import ResultStore
from bench.suites.base import Group
from bench.suites.classification import pooled


def pooled_predictions(store: ResultStore, suite: str, method: str, dataset: str, task: str, protocol: str, fraction: float,
                       seed: int, mode: str = "linear") -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Test predictions of exactly the units behind the current aggregate, pooled and sorted by record id."""
    agg_key = Group({"suite": suite, "method": method, "dataset": dataset, "task": task, "protocol": protocol,
                     "fraction": float(fraction), "seed": seed, "mode": mode}).agg_key
    tags = store.aggregate_tags(suite, agg_key)
    if tags is None or tags.get("applicable") == "no":
        raise LookupError(f"no {suite} aggregate for {method} on {dataset}/{task} ({protocol}, {mode}, fraction {fraction}, "
                          f"seed {seed})")
    if not tags.get("unit_keys"):
        raise LookupError(f"the {suite} aggregate of {method} on {dataset}/{task} predates exact unit sets (fix: re-run the suite)")
    runs = store.units_by_key(suite, tags["unit_keys"].split(","), method=method, dataset=dataset)
    p = pooled([store.predictions(r) for r in runs])
    if len(set(p["record_ids"])) != len(p["record_ids"]):
        raise ValueError(f"the {suite} units of {method} on {dataset}/{task} score a record twice; a paired test needs one "
                         f"prediction per record")
    return p["record_ids"], p["y_true"], p["y_score"], str(tags.get("boot_key", ""))


def compare_methods(store: ResultStore, cache_dir: str | Path, a: str, b: str, *, suite: str = "linear", dataset: str,
                    task: str, protocol: str = "fixed", fraction: float = 1.0, seed: int = 0, n_boot: int = 1000,
                    boot_seed: int = 0, mode_a: str = "linear", mode_b: str | None = None) -> dict:
    """Paired bootstrap of macro AUROC between ``a`` (in ``mode_a``) and ``b`` (in ``mode_b``, default the same): two
    methods, or one method in two modes."""
    ids_a, y_a, s_a, key = pooled_predictions(store, suite, a, dataset, task, protocol, fraction, seed, mode_a)
    ids_b, y_b, s_b, _ = pooled_predictions(store, suite, b, dataset, task, protocol, fraction, seed, mode_b or mode_a)
    if not np.array_equal(ids_a, ids_b) or not np.array_equal(y_a, y_b):
        raise ValueError(f"{a} and {b} were not evaluated on the same records; a paired test needs the same evaluation set")
    idx = bootstrap_indices(len(ids_a), n_boot, boot_seed, Path(cache_dir) / "bootstrap", key, y_true=y_a)
    whole = np.arange(len(ids_a))[None]
    res = paired_bootstrap_test(bootstrap_macro_auroc(y_a, s_a, idx), bootstrap_macro_auroc(y_b, s_b, idx),
                                float(bootstrap_macro_auroc(y_a, s_a, whole)[0]), float(bootstrap_macro_auroc(y_b, s_b, whole)[0]))
    return {"a": a, "b": b, "n": len(ids_a), **res}


def with_holm(results: Sequence[dict]) -> list[dict]:
    """The comparisons of one table with Holm-adjusted p-values beside the raw ones."""
    adjusted = holm([r["p_value"] for r in results])
    return [{**r, "p_holm": float(p)} for r, p in zip(results, adjusted)]
