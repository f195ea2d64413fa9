"""Paired comparison of two methods on the same evaluation records and the same bootstrap resamples.

Over several seeds both sides are the cells over all their seeds: the test resamples the same seed draws and the
same record resamples for both (two-level bootstrap). Each side is exactly the set of units its aggregate pooled (the aggregate's ``unit_keys``), never a
tag filter that could also match stale units from other settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.suites.metrics import (bootstrap_indices, bootstrap_macro_auroc, holm, paired_bootstrap_test, seed_draws,
                                  two_level_bootstrap)
from bench.run.store import ResultStore
from bench.suites.base import Group
from bench.suites.classification import pooled


def cell_seed(store: ResultStore, suite: str, identity: dict) -> int | str:
    """The seed a comparison reads: the cell over all its seeds ("all") when the store has it, else seed 0."""
    key = Group({"suite": suite, **identity, "seed": "all"}).agg_key
    tags = store.aggregate_tags(suite, key)
    return "all" if tags is not None and tags.get("applicable") != "no" else 0


def pooled_predictions(store: ResultStore, suite: str, method: str, dataset: str, task: str, protocol: str, fraction: float,
                       seed: int | str, mode: str = "linear", leads: str = "12") -> tuple[list[dict[str, np.ndarray]], str]:
    """Test predictions of exactly the units behind the current aggregate, pooled per run seed (one entry unless the
    aggregate is the cell over its seeds) and sorted by record id; and the aggregate's bootstrap key."""
    agg_key = Group({"suite": suite, "method": method, "dataset": dataset, "task": task, "protocol": protocol,
                     "fraction": float(fraction), "seed": seed, "mode": mode, "leads": leads}).agg_key
    tags = store.aggregate_tags(suite, agg_key)
    if tags is None or tags.get("applicable") == "no":
        raise LookupError(f"no {suite} aggregate for {method} on {dataset}/{task} ({protocol}, {mode}, fraction {fraction}, "
                          f"seed {seed})")
    if not tags.get("unit_keys"):
        raise LookupError(f"the {suite} aggregate of {method} on {dataset}/{task} predates exact unit sets (fix: re-run the suite)")
    runs = store.units_by_key(suite, tags["unit_keys"].split(","), method=method, dataset=dataset)
    by_seed: dict[str, list] = {}
    for r in runs:
        by_seed.setdefault(str(r.data.tags.get("seed", seed)), []).append(store.predictions(r))
    sides = [pooled(by_seed[k]) for k in sorted(by_seed, key=lambda k: (len(k), k))]
    for p in sides:
        if len(set(p["record_ids"])) != len(p["record_ids"]):
            raise ValueError(f"the {suite} units of {method} on {dataset}/{task} score a record twice; a paired test needs one "
                             f"prediction per record")
    return sides, str(tags.get("boot_key", ""))


def side_auroc(side: list[dict[str, np.ndarray]], idx: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, float]:
    """One side's macro AUROC on each resample (two-level over its seeds; ``draws`` from ``seed_draws``) and observed
    (the mean over its seeds on all test records)."""
    whole = np.arange(idx.shape[1])[None]
    resampled = two_level_bootstrap(np.stack([bootstrap_macro_auroc(p["y_true"], p["y_score"], idx) for p in side]), draws)
    return resampled, float(np.mean([bootstrap_macro_auroc(p["y_true"], p["y_score"], whole)[0] for p in side]))


def _one_evaluation_set(sides: dict, dataset: str, task: str) -> dict:
    """The cells' sides, refused unless every cell scored the same records at the same number of seeds."""
    ref = next(iter(sides.values()))[0]
    if any(not np.array_equal(p["record_ids"], ref["record_ids"]) for side in sides.values() for p in side):
        raise ValueError(f"the cells on {dataset}/{task} were scored on different records; comparing them needs one "
                         f"evaluation set")
    if len({len(side) for side in sides.values()}) > 1:
        raise ValueError(f"the cells on {dataset}/{task} have different numbers of seeds; comparing them over seeds needs "
                         f"the same seeds")
    return sides


def shared_resample_aurocs(store: ResultStore, cache_dir: str | Path, cells: dict, *, dataset: str, task: str,
                           protocol: str, fraction: float, seed: int | str, n_boot: int,
                           boot_seed: int) -> tuple[dict[Any, tuple[np.ndarray, float]], int]:
    """Several linear cells of one evaluation set, ``cells``: key -> (method, mode), each on the same B record resamples
    and seed draws: key -> (AUROC on each resample [B], AUROC on the full test set), as ``side_auroc`` gives them; and
    the number of test records."""
    sides, key = {}, ""
    for k, (method, mode) in cells.items():
        sides[k], key = pooled_predictions(store, "linear", method, dataset, task, protocol, fraction, seed, mode)
    ref = next(iter(_one_evaluation_set(sides, dataset, task).values()))[0]
    idx = bootstrap_indices(len(ref["record_ids"]), n_boot, boot_seed, Path(cache_dir) / "bootstrap", key, y_true=ref["y_true"])
    draws = seed_draws(len(next(iter(sides.values()))), n_boot, boot_seed)
    return {k: side_auroc(side, idx, draws) for k, side in sides.items()}, len(ref["record_ids"])


def shared_resample_maes(store: ResultStore, cells: dict, *, dataset: str, task: str, seed: int | str, n_boot: int,
                         boot_seed: int) -> tuple[dict[Any, tuple[np.ndarray, float]], int, int]:
    """Several regression cells of one continuous target, ``cells``: key -> (method, mode), each on the same B resamples
    of the test records (drawn as the suite's own intervals draw them) and the same seed draws: key -> (MAE on each
    resample [B], two-level over seeds; MAE on the full test set, mean over seeds); the number of test records and of
    seeds."""
    from bench.suites.regression import mean_absolute_error

    sides = {k: pooled_predictions(store, "regression", method, dataset, task, "fixed", 1.0, seed, mode)[0]
             for k, (method, mode) in cells.items()}
    n = len(next(iter(_one_evaluation_set(sides, dataset, task).values()))[0]["record_ids"])
    idx = np.random.default_rng([boot_seed, n]).integers(0, n, size=(n_boot, n))
    n_seeds = len(next(iter(sides.values())))
    draws = seed_draws(n_seeds, n_boot, boot_seed)
    return {k: (two_level_bootstrap(np.stack([mean_absolute_error(p["y_true"][idx], p["y_pred"][idx]) for p in side]), draws),
                float(np.mean([mean_absolute_error(p["y_true"], p["y_pred"]) for p in side])))
            for k, side in sides.items()}, n, n_seeds


def compare_methods(store: ResultStore, cache_dir: str | Path, a: str, b: str, *, suite: str = "linear", dataset: str,
                    task: str, protocol: str = "fixed", fraction: float = 1.0, seed: int | str = "auto", n_boot: int = 1000,
                    boot_seed: int = 0, mode_a: str = "linear", mode_b: str | None = None, suite_b: str | None = None,
                    leads_a: str = "12", leads_b: str | None = None) -> dict:
    """Paired bootstrap of macro AUROC between ``a`` (in ``mode_a``) and ``b`` (in ``mode_b``, default the same; of
    ``suite_b``, default ``suite``; on lead sets ``leads_a`` and ``leads_b``): two methods, one method in two modes or on
    two lead sets, or two suites' cells on one evaluation set. ``seed="auto"`` compares the cells over all their seeds
    where both sides have them (the two-level bootstrap: the same seed draws and record resamples for both sides), else
    seed 0 of each (like with like: a one-seed cell is never set against a mean over seeds)."""
    if seed == "auto":
        where = {"dataset": dataset, "task": task, "protocol": protocol, "fraction": float(fraction)}
        seeds = {cell_seed(store, suite, {"method": a, **where, "mode": mode_a, "leads": leads_a}),
                 cell_seed(store, suite_b or suite, {"method": b, **where, "mode": mode_b or mode_a, "leads": leads_b or leads_a})}
        seed = "all" if seeds == {"all"} else 0
    if "regression" in (suite, suite_b):
        return _compare_continuous(store, a, b, (suite, suite_b or suite), dataset=dataset, task=task, seed=seed, n_boot=n_boot,
                                   boot_seed=boot_seed, mode_a=mode_a, mode_b=mode_b or mode_a)
    side_a, key = pooled_predictions(store, suite, a, dataset, task, protocol, fraction, seed, mode_a, leads_a)
    side_b, _ = pooled_predictions(store, suite_b or suite, b, dataset, task, protocol, fraction, seed, mode_b or mode_a,
                                   leads_b or leads_a)
    if len(side_a) != len(side_b):
        raise ValueError(f"{a} has {len(side_a)} seed(s) and {b} {len(side_b)}; a paired test over seeds needs the same seeds")
    ref = side_a[0]
    if any(not np.array_equal(p["record_ids"], ref["record_ids"]) or not np.array_equal(p["y_true"], ref["y_true"])
           for p in side_a + side_b):
        raise ValueError(f"{a} and {b} were not evaluated on the same records; a paired test needs the same evaluation set")
    idx = bootstrap_indices(len(ref["record_ids"]), n_boot, boot_seed, Path(cache_dir) / "bootstrap", key, y_true=ref["y_true"])
    draws = seed_draws(len(side_a), n_boot, boot_seed)
    (boot_a, obs_a), (boot_b, obs_b) = side_auroc(side_a, idx, draws), side_auroc(side_b, idx, draws)
    res = paired_bootstrap_test(boot_a, boot_b, obs_a, obs_b)
    return {"a": a, "b": b, "n": len(ref["record_ids"]), "n_seeds": len(side_a), "seed": str(seed), "metric": "macro AUROC",
            "unit": "", **res}


def _compare_continuous(store: ResultStore, a: str, b: str, suites: tuple[str, str], *, dataset: str, task: str,
                        seed: int | str, n_boot: int, boot_seed: int, mode_a: str, mode_b: str) -> dict:
    """The paired bootstrap of two regression cells' MAE on one continuous target (a - b: negative when ``a`` errs less),
    on the resamples the suite's own intervals draw."""
    if set(suites) != {"regression"}:
        raise ValueError(f"{task} is a continuous target (suite regression); it compares only with another regression cell")
    stats, n, n_seeds = shared_resample_maes(store, {"a": (a, mode_a), "b": (b, mode_b)}, dataset=dataset, task=task, seed=seed,
                                    n_boot=n_boot, boot_seed=boot_seed)
    key = Group({"suite": "regression", "method": a, "dataset": dataset, "task": task, "protocol": "fixed", "fraction": 1.0,
                 "seed": seed, "mode": mode_a, "leads": "12"}).agg_key
    res = paired_bootstrap_test(stats["a"][0], stats["b"][0], stats["a"][1], stats["b"][1])
    return {"a": a, "b": b, "n": n, "n_seeds": n_seeds, "seed": str(seed), "metric": "MAE",
            "unit": str((store.aggregate_tags("regression", key) or {}).get("unit_of_target", "")), **res}


def with_holm(results: Sequence[dict]) -> list[dict]:
    """The comparisons of one table with Holm-adjusted p-values beside the raw ones."""
    adjusted = holm([r["p_value"] for r in results])
    return [{**r, "p_holm": float(p)} for r, p in zip(results, adjusted)]
