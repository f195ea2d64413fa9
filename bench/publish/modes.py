"""`bench table modes`: does the answer depend on how an encoder is evaluated? Methods x modes per task with intervals,
the paired difference between modes for each method (Holm-adjusted), and the Spearman correlation of the methods'
rankings between each pair of modes with a bootstrap interval over test records (the same resamples for every
method and mode). ``with_reference`` puts the reality check's published numbers beside ours where the dataset,
task and mode match, labelled as theirs (full datasets, released weights)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.publish.compare import compare_methods, shared_resample_aurocs, with_holm
from bench.publish.tables import _fmt, auroc_estimate, not_applicable, seed_words
from bench.suites.base import render_block
from bench.suites.metrics import format_p
from bench.suites.modes import MODES


def _cells(aggregates: pd.DataFrame, dataset: str, protocol: str, fraction: float, seed: int | str) -> pd.DataFrame:
    if aggregates.empty:  # a store with no linear results has no columns either
        return aggregates
    df = aggregates[(aggregates["dataset"] == dataset) & (aggregates["protocol"] == protocol)
                    & (aggregates["fraction"].astype(float) == float(fraction)) & (aggregates["seed"].astype(str) == str(seed))
                    & ~not_applicable(aggregates)].copy()
    df["mode"] = df["mode"].fillna("linear") if "mode" in df else "linear"
    if "leads" in df:  # modes are compared on the full record; reduced lead sets have their own table (bench table leads)
        df = df[df["leads"].fillna("12").astype(str) == "12"]
    return df


def spearman_between_modes(store, boot_cache: Path, methods: list[str], mode_a: str, mode_b: str, *, dataset: str, task: str,
                           protocol: str, fraction: float, seed: int | str, n_boot: int, boot_seed: int) -> dict[str, Any]:
    """Spearman rho of the methods' macro AUROC rankings in two modes, on the full test set and on each bootstrap
    resample of its records (shared by every method and mode), with the percentile interval."""
    from scipy.stats import spearmanr

    cells = {(m, mode): (m, mode) for m, mode in itertools.product(methods, (mode_a, mode_b))}
    stats, n = shared_resample_aurocs(store, boot_cache, cells, dataset=dataset, task=task, protocol=protocol,
                                      fraction=fraction, seed=seed, n_boot=n_boot, boot_seed=boot_seed)
    boot = {k: v[0] for k, v in stats.items()}
    whole = {k: v[1] for k, v in stats.items()}
    rho = float(spearmanr([whole[m, mode_a] for m in methods], [whole[m, mode_b] for m in methods]).statistic)
    per = np.array([spearmanr([boot[m, mode_a][b] for m in methods], [boot[m, mode_b][b] for m in methods]).statistic
                    for b in range(len(boot[methods[0], mode_a]))], dtype=float)
    lo, hi = bias_corrected_interval(per[np.isfinite(per)], rho)
    return {"rho": rho, "ci_low": lo, "ci_high": hi, "n_methods": len(methods), "n": n}


def bias_corrected_interval(samples: np.ndarray, estimate: float, level: float = 0.95) -> tuple[float, float]:
    """Efron's bias-corrected percentile interval: the percentiles shifted by z0 = Φ⁻¹(share of resamples below the
    estimate, ties counted half). Over a handful of methods ρ takes few values and its resamples pile up on the
    estimate, so the plain percentile interval can start at the estimate or miss it; this one contains it whenever
    the share lies in [(1 - level) / 2, (1 + level) / 2]. Outside that, (nan, nan): the resamples say nothing usable."""
    from scipy.stats import norm

    share = (np.sum(samples < estimate) + 0.5 * np.sum(samples == estimate)) / len(samples)
    if not (1 - level) / 2 <= share <= (1 + level) / 2:
        return float("nan"), float("nan")
    z0, z = norm.ppf(share), norm.ppf((1 + level) / 2)
    lo, hi = np.nanquantile(samples, [norm.cdf(2 * z0 - z), norm.cdf(2 * z0 + z)])
    return float(min(lo, estimate)), float(max(hi, estimate))


def monte_carlo_p(test: dict) -> str:
    """A bootstrap p with its Monte Carlo standard error √(p(1−p)/B) (none at the floor: it is a bound there)."""
    p, floor = float(test["p_value"]), float(test["p_floor"])
    if p <= floor + 1e-12:
        return format_p(p, floor)
    return f"{format_p(p, floor)} ± {np.sqrt(p * (1 - p) / float(test['n_boot'])):.1g}"


def resampled(seed: int | str) -> str:
    """What a modes interval resamples, in words."""
    return ("seeds drawn with replacement, then the test records, the same for every method and mode" if str(seed) == "all"
            else "the test records of seed 0, the same for every method and mode")


def _reference(ref: dict | None, identity: str, task: str) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(method, mode) -> the reality check's (point, low, high) for this dataset and task, where they publish one."""
    if not ref or not Path(ref.get("file", "")).is_file():
        return {}
    name = (ref.get("datasets", {}).get(identity) or {}).get(task)
    if not name:
        return {}
    table = pd.read_csv(ref["file"])
    table = table[table["dataset"] == name]
    out = {}
    for mode, their_mode in ref.get("modes", {}).items():
        models = ref.get("scratch_models", {}) if mode == "scratch" else ref.get("models", {})
        for method, model in models.items():
            hit = table[(table["mode"] == their_mode) & (table["model"] == model)]
            if len(hit):
                r = hit.iloc[0]
                out[method, mode] = (float(r["point"]), float(r.get("low", np.nan)), float(r.get("high", np.nan)))
    return out


def modes_table(store, aggregates: pd.DataFrame, boot_cache: Path, dataset: str, *, protocol: str = "fixed", fraction: float = 1.0,
                seed: int | str = "auto", n_boot: int = 1000, boot_seed: int = 0, reference: dict | None = None, identity: str = "",
                fmt: str = "md") -> str:
    """The three tables per task: methods x modes, paired mode differences, rank correlations between modes. ``seed``
    "auto": the cells over all their seeds where the store has them, else seed 0."""
    if seed == "auto":
        seed = "all" if not _cells(aggregates, dataset, protocol, fraction, "all").empty else 0
    df = _cells(aggregates, dataset, protocol, fraction, seed)
    if df.empty or set(df["mode"]) == {"linear"}:
        raise LookupError(f"no results of a mode beside the linear probe for {dataset} ({protocol}, {100 * fraction:g}% labels, "
                          f"seed {seed}): run bench run --suite linear --modes linear,attentive,finetune,scratch first")
    blocks = []
    split = df["split_hash"].fillna("").astype(str) if "split_hash" in df else pd.Series("", index=df.index)
    parts = [(task, sh) for task in sorted(set(df["task"])) for sh in sorted(set(split[df["task"] == task]))]
    for task, sh in parts:
        g = df[(df["task"] == task) & (split == sh)]
        where = f"{dataset}/{task}" + (f" (records: split {sh[:8]})" if sum(t == task for t, _ in parts) > 1 else "")
        if set(g["mode"]) == {"linear"}:  # the linear tables show it; this table compares modes
            continue
        modes = [m for m in MODES if m in set(g["mode"])]
        methods = sorted(set(g["method"]))
        theirs = _reference(reference, identity, task)
        cells = pd.DataFrame(index=methods, columns=modes, dtype=object)
        for r in g.itertuples():
            row = r._asdict()
            cells.loc[r.method, r.mode] = _fmt(auroc_estimate(row), row.get("auroc_ci_low"), row.get("auroc_ci_high"))
        for (method, mode), (p, lo, hi) in sorted(theirs.items()):
            if method in cells.index:
                cells.loc[method, f"{mode} (theirs)"] = _fmt(p, lo, hi)
        n = int(pd.to_numeric(g["n_test"], errors="coerce").max())
        note = ("; (theirs) = the reality check's published number for the same dataset, task and mode (full dataset, "
                "released weights)" if theirs else
                f"; --with-reference: the reality check publishes no number for {identity or dataset}/{task}"
                if reference is not None else "")
        blocks.append(render_block(cells.fillna("–"), f"{where}: macro AUROC (%) [95% CI] by evaluation mode, "
                                                      f"{protocol}, {100 * fraction:g}% labels, {seed_words(g)}, n={n}{note}", fmt))
        tests = []
        for method in methods:
            have = set(g[g["method"] == method]["mode"])
            pairs = [(m, "linear") for m in modes if m != "linear" and "linear" in have and m in have]
            pairs += [("finetune", "scratch")] if {"finetune", "scratch"} <= have else []
            for a, b in pairs:
                r = compare_methods(store, boot_cache, method, method, dataset=dataset, task=task, protocol=protocol,
                                    fraction=fraction, seed=seed, n_boot=n_boot, boot_seed=boot_seed, mode_a=a, mode_b=b)
                tests.append({**r, "pair": f"{method}: {a} − {b}"})
        if tests:
            rows = [[t["pair"], f"{100 * t['diff']:+.2f}", f"[{100 * t['ci_low']:+.2f}, {100 * t['ci_high']:+.2f}]",
                     monte_carlo_p(t),
                     format_p(t["p_holm"], t["p_floor"])] for t in with_holm(tests)]
            blocks.append(render_block(pd.DataFrame(rows, columns=["difference", "Δ macro AUROC (points)", "95% CI",
                                                                   "p ± Monte Carlo error", "Holm p"])
                                       .set_index("difference"), f"{where}: paired difference between modes ({n_boot} "
                                       f"shared resamples ({resampled(seed)}); Holm over the {len(rows)} comparisons; Monte "
                                       f"Carlo error of a p: ± √(p(1−p)/B))", fmt))
        corr = []
        for a, b in itertools.combinations(modes, 2):
            both = sorted(set(g[g["mode"] == a]["method"]) & set(g[g["mode"] == b]["method"]))
            if len(both) >= 3:
                r = spearman_between_modes(store, boot_cache, both, a, b, dataset=dataset, task=task, protocol=protocol,
                                           fraction=fraction, seed=seed, n_boot=n_boot, boot_seed=boot_seed)
                ci = (f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if np.isfinite(r["ci_low"])
                      else "– (the estimate lies outside its resamples' central 95%)")
                corr.append([f"{a} vs {b}", r["n_methods"], f"{r['rho']:+.2f}", ci])
        if corr:
            blocks.append(render_block(pd.DataFrame(corr, columns=["modes", "methods", "Spearman ρ", "95% CI"]).set_index("modes"),
                                       f"{where}: agreement of the methods' rankings between modes (Spearman ρ of macro "
                                       f"AUROC over the {sorted({c[1] for c in corr})[0]}–{sorted({c[1] for c in corr})[-1]} "
                                       f"methods each pair of modes shares; 95% bias-corrected percentile interval over "
                                       f"{n_boot} resamples ({resampled(seed)}); no test here sets two ρ against each other)",
                                       fmt))
    return "\n\n".join(blocks) + "\n"
