"""Paired comparison of two methods on the same evaluation records and the same bootstrap resamples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.metrics import bootstrap_indices, bootstrap_macro_auroc, paired_bootstrap_test
from bench.results_store import ResultStore


def pooled_predictions(store: ResultStore, suite: str, method: str, dataset: str, task: str, protocol: str, fraction: float,
                       seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Test predictions of the units behind the current aggregate, pooled and sorted by record id."""
    agg = store.aggregates([suite])
    if agg.empty:
        raise LookupError(f"no {suite} results")
    sel = agg[(agg["method"] == method) & (agg["dataset"] == dataset) & (agg["task"] == task) & (agg["protocol"] == protocol)
              & (agg["fraction"].astype(float) == fraction) & (agg["seed"].astype(str) == str(seed))]
    if sel.empty:
        raise LookupError(f"no {suite} aggregate for {method} on {dataset}/{task} ({protocol}, fraction {fraction}, seed {seed})")
    ckpts = set(str(sel.iloc[0]["checkpoint_hash"]).split(","))
    runs = [r for r in store.finished_units(suite, method=method, dataset=dataset, task=task, protocol=protocol).values()
            if float(r.data.tags["fraction"]) == fraction and r.data.tags["seed"] == str(seed)
            and r.data.tags.get("checkpoint_hash") in ckpts]
    arrays = [store.predictions(r) for r in runs]
    ids = np.concatenate([a["record_ids"] for a in arrays])
    order = np.argsort(ids, kind="stable")
    y = np.concatenate([a["y_true"] for a in arrays])[order]
    s = np.concatenate([a["y_score"] for a in arrays])[order]
    return ids[order], y, s, str(sel.iloc[0].get("boot_key", ""))


def compare_methods(store: ResultStore, cache_dir: str | Path, a: str, b: str, *, suite: str = "linear", dataset: str,
                    task: str, protocol: str = "fixed", fraction: float = 1.0, seed: int = 0, n_boot: int = 1000,
                    boot_seed: int = 0) -> dict:
    ids_a, y_a, s_a, key = pooled_predictions(store, suite, a, dataset, task, protocol, fraction, seed)
    ids_b, y_b, s_b, _ = pooled_predictions(store, suite, b, dataset, task, protocol, fraction, seed)
    if not np.array_equal(ids_a, ids_b) or not np.array_equal(y_a, y_b):
        raise ValueError(f"{a} and {b} were not evaluated on the same records; a paired test needs the same evaluation set")
    idx = bootstrap_indices(len(ids_a), n_boot, boot_seed, Path(cache_dir) / "bootstrap", key)
    res = paired_bootstrap_test(bootstrap_macro_auroc(y_a, s_a, idx), bootstrap_macro_auroc(y_b, s_b, idx))
    return {"a": a, "b": b, "n": len(ids_a), **res}
