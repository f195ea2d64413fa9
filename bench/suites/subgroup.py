"""Subgroup audit: the linear suite's per-record test predictions (in any evaluation mode, ``--modes``) broken down by
age band, sex, site and device.

No head is retrained: a subgroup unit reads exactly the linear units its cell's aggregate pooled (their
keys are part of its own key), so it changes whenever they do. Per attribute, every subgroup is compared
with one reference subgroup (configs/protocols/subgroup.yaml: e.g. female − male, each age band − 60-79):
a class enters a comparison only with ``min_positives`` positives and as many negatives in both subgroups,
the gap is the difference of their macro AUROCs on those classes, and its interval and two-sided p come from
DeLong's variance of each (independent records; no resampling floor, so a gap can survive Holm over many). The table
adjusts the p-values with Holm over every gap it shows and prints the smallest gap it could detect. A subgroup with
too few records, or no class with enough positives here and in the reference, is listed with the reason instead of a
number; a cell whose predictions are degenerate (bench/suites/metrics.py) is not audited at all.

Written only against the suite plugin interface (bench/suites/base.py).
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from bench.suites.base import Aggregate, Group, Request, Suite, Unit, UnitResult, frame_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext


def _name(value: Any) -> str:
    """A subgroup level as an MLflow-safe metric name part."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(value).strip()) or "blank"


def _level_order(level: str) -> tuple:
    """Age bands youngest first, numbered sites in numeric order, the rest by name."""
    number = re.search(r"\d+", level)
    return (not level.startswith("under"), int(number.group()) if number else float("inf"), level)


def subgroup_levels(records: pd.DataFrame, attribute: str, settings: dict) -> pd.Series:
    """Each record's level of ``attribute`` (NaN where unknown)."""
    col = records[attribute]
    if attribute == "age":
        edges = [int(e) for e in settings["age_bands"]]
        names = [f"under_{edges[0]}"] + [f"{a}_{b - 1}" for a, b in zip(edges, edges[1:])] + [f"{edges[-1]}_plus"]
        age = pd.to_numeric(col, errors="coerce")
        return pd.cut(age, [-np.inf, *edges, np.inf], right=False, labels=names).astype(object).where(age.notna())
    if attribute == "sex":
        names = {int(k): v for k, v in settings["sex_names"].items()}
        return pd.to_numeric(col, errors="coerce").map(lambda v: names.get(int(v), _name(v)) if pd.notna(v) else np.nan)
    if attribute == "site":
        return pd.to_numeric(col, errors="coerce").map(lambda v: f"site_{int(v)}" if pd.notna(v) else np.nan)
    return col.map(lambda v: _name(v) if pd.notna(v) and str(v).strip() else np.nan)


def _eligible(y: np.ndarray, min_positives: int) -> np.ndarray:
    """Classes with at least ``min_positives`` positives and as many negatives among these records."""
    pos = y.sum(0)
    return (pos >= min_positives) & (len(y) - pos >= min_positives)


def reference_level(levels: pd.Series, attribute: str, settings: dict) -> str | None:
    """The subgroup every other one is compared with: configured per attribute (``references``), or the largest."""
    named = (settings.get("references") or {}).get(attribute, "largest")
    counts = levels.value_counts()
    if named != "largest":
        return named if named in counts.index else None
    return str(counts.index[0]) if len(counts) else None


def audit(y: np.ndarray, s: np.ndarray, levels: pd.Series, reference: str | None, min_records: int,
          min_positives: int) -> tuple[dict, list[dict]]:
    """One attribute's gaps against its reference subgroup. A class enters a comparison only with ``min_positives``
    positives and negatives in both subgroups; the gap (subgroup − reference) is the difference of their macro AUROCs
    on those classes, with DeLong's interval and two-sided p for independent records (bench/suites/metrics.py: no
    resampling floor, so a gap can survive Holm over many). Every subgroup that cannot be compared is listed with the
    reason."""
    from bench.suites.metrics import delong_gap_test, delong_macro_auroc

    groups = {str(lv): np.flatnonzero((levels == lv).to_numpy()) for lv in levels.dropna().unique()}
    rows = []

    def row(lv: str, **values) -> dict:
        rows_ = groups.get(lv, np.array([], int))
        return {"level": lv, "n": len(rows_), "reference": reference, **values}

    if reference is None or reference not in groups:
        return ({f"{_name(lv)}.n": float(len(r)) for lv, r in groups.items()},
                [row(lv, why=f"no reference subgroup ({reference or 'none'}) among the test records") for lv in sorted(groups)])
    ref_rows = groups[reference]
    metrics: dict[str, float] = {}
    ref_ok = _eligible(y[ref_rows], min_positives) if len(ref_rows) >= min_records else np.zeros(y.shape[1], bool)
    for lv in sorted(groups, key=_level_order):
        r = groups[lv]
        metrics[f"{_name(lv)}.n"] = float(len(r))
        if lv == reference:
            if not ref_ok.any():
                rows.append(row(lv, why=f"reference: no class with >= {min_positives} positives and negatives in {len(r)} records"))
                continue
            auc = delong_macro_auroc(y[r][:, ref_ok], s[r][:, ref_ok])[0]
            rows.append(row(lv, auroc=auc, classes=int(ref_ok.sum()), positives=int(y[r][:, ref_ok].sum(0).min()),
                            why="reference"))
            metrics.update({f"{_name(lv)}.auroc": auc, f"{_name(lv)}.classes": float(ref_ok.sum())})
            continue
        if len(r) < min_records:
            rows.append(row(lv, why=f"{len(r)} records < {min_records}"))
            continue
        both = ref_ok & _eligible(y[r], min_positives)
        if not both.any():
            rows.append(row(lv, why=f"no class with >= {min_positives} positives and negatives here and in {reference}"))
            continue
        test = delong_gap_test(y[r][:, both], s[r][:, both], y[ref_rows][:, both], s[ref_rows][:, both])
        auc, ref_auc = test["auroc_a"], test["auroc_b"]
        positives = int(min(y[r][:, both].sum(0).min(), y[ref_rows][:, both].sum(0).min()))
        rows.append(row(lv, auroc=auc, reference_auroc=ref_auc, gap=test["diff"], ci_low=test["ci_low"], ci_high=test["ci_high"],
                        p=test["p_value"], classes=int(both.sum()), positives=positives))
        metrics.update({f"{_name(lv)}.auroc": auc, f"{_name(lv)}.classes": float(both.sum()),
                        f"{_name(lv)}.positives": float(positives), f"{_name(lv)}.gap": test["diff"],
                        f"{_name(lv)}.gap_ci_low": test["ci_low"], f"{_name(lv)}.gap_ci_high": test["ci_high"],
                        f"{_name(lv)}.gap_p": test["p_value"], f"{_name(lv)}.gap_se": test["se"], f"{_name(lv)}.p_floor": 0.0})
    return metrics, rows


INTERVAL_DELONG = "DeLong: each subgroup's macro AUROC variance from its own records (independent); gap = subgroup - reference"
INTERVAL_BOOTSTRAP = ("each subgroup and its reference resampled within themselves (stratified, fixed class set); "
                      "gap = subgroup - reference")


class SubgroupSuite(Suite):
    name = "subgroup"
    version = "3"  # 2: gaps to a named reference subgroup on classes with enough positives, Holm-adjusted; 3: DeLong p and CI
    description = ("audit of the linear suite's test predictions by age band, sex, site and device: each subgroup's AUROC gap "
                   "to a reference subgroup, only where both have enough positives and negatives")
    stores_predictions = False
    on_leaderboard = False
    takes_modes = True

    def groups(self, ctx: "RunContext", request: Request):
        from omegaconf import OmegaConf

        from bench.suites.base import get_suite

        linear = get_suite("linear")
        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            settings = OmegaConf.to_container(cfg.subgroup, resolve=True)
            records = ctx.reader(cfg).index.records
            attributes = [a for a in settings["attributes"] if a in records]
            meta = records[attributes]
            for method, protocol, task, fraction, seed, mode in itertools.product(
                    request.methods, request.protocols or list(cfg.run.protocols), request.tasks or list(cfg.data.default_tasks),
                    request.fractions or [float(f) for f in cfg.run.fractions], request.seeds or [int(s) for s in cfg.run.seeds],
                    request.modes or list(cfg.run.modes)):
                yield self._group(ctx, linear, cfg, settings, meta, method, task, protocol, fraction, seed, mode)

    def _group(self, ctx, linear, cfg, settings: dict, meta: pd.DataFrame, method: str, task: str, protocol: str, fraction: float,
               seed: int, mode: str) -> Group:
        """The cell's linear-suite units in its evaluation mode (run first when missing: skipped if already in MLflow) and
        one audit unit on them."""
        from bench.suites.base import UNIT_PROVENANCE

        ident = {"method": method, "dataset": cfg.data.name, "task": task, "protocol": protocol, "fraction": fraction, "seed": seed,
                 "mode": mode}
        sub = Request([method], [cfg.data.name], [task], [protocol], [fraction], [seed], modes=[mode])
        ctx.execute(linear, sub)
        agg = ctx.store.aggregate_tags("linear", Group({"suite": "linear", **ident}).agg_key)
        if agg is not None and agg.get("applicable") == "no":
            group = Group(ident)
            group.applicable, group.why_not = False, agg.get("why_not") or f"no {mode} units to audit"
            return group
        if agg is None or "unit_keys" not in agg:
            raise LookupError(f"no linear aggregate for {method} on {cfg.data.name}/{task} ({protocol}, {fraction}, seed {seed}, {mode})")
        keys = agg["unit_keys"].split(",")
        material = {"linear_units": keys, "metadata": frame_hash(meta), "settings": settings}
        tags = {"fold": "test" if protocol == "fixed" else "pooled", "linear_unit_set": agg.get("unit_set", ""),
                "attributes": ",".join(meta.columns), **{k: agg.get(k, "") for k in UNIT_PROVENANCE}}
        return Group(ident, [Unit(tags, material)], state=(settings, meta, keys))

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        from bench.suites.classification import pooled
        from bench.suites.metrics import degenerate_reason

        settings, meta, keys = group.state
        results = ctx.unit_results("linear", keys, method=str(group.identity["method"]), dataset=str(group.identity["dataset"]))
        p = pooled([r.arrays for r in results])
        records = meta.loc[[str(r) for r in p["record_ids"]]]
        metrics: dict[str, float] = {"n_test": float(len(records))}
        stored = results[0].arrays.get("classes")
        classes = [str(c) for c in stored] if stored is not None else [str(k) for k in range(p["y_true"].shape[1])]
        flat = degenerate_reason(p["y_true"], p["y_score"], classes)
        if flat:
            return [UnitResult(metrics, {}, tags={"unscored": f"all: degenerate predictions ({flat})", "references": ""})]
        rows, references = [], {}
        for attribute in meta.columns:
            levels = subgroup_levels(records, attribute, settings).reset_index(drop=True)
            references[attribute] = reference_level(levels, attribute, settings)
            m, r = audit(p["y_true"], p["y_score"], levels, references[attribute], int(settings["min_records"]),
                         int(settings["min_positives"]))
            metrics.update({f"{attribute}.{k}": v for k, v in m.items()})
            rows += [{"attribute": attribute, **row} for row in r]
        why = "; ".join(f"{r['attribute']}.{_name(r['level'])}: {r['why']}" for r in rows if r.get("why") not in (None, "reference"))
        return [UnitResult(metrics, {"min_records": settings["min_records"], "min_positives": settings["min_positives"],
                                     "age_bands": settings["age_bands"]},
                           files={"subgroups.csv": pd.DataFrame(rows).to_csv(index=False)},
                           tags={"unscored": why or "-", "references": ",".join(f"{a}:{_name(r)}" for a, r in references.items() if r)})]

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        (unit, result), = results
        tags = {**unit.tags, **result.tags}  # a unit computed now carries its result's tags there
        return Aggregate(dict(result.metrics), {"attributes": tags["attributes"], "linear_unit_set": tags["linear_unit_set"],
                                                "unscored": tags.get("unscored", "-"), "references": tags.get("references", ""),
                                                "min_positives": result.params.get("min_positives", ""),
                                                "interval": INTERVAL_DELONG if any(k.endswith(".gap_se") for k in result.metrics)
                                                            else INTERVAL_BOOTSTRAP})

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        return [{"method": request.methods, "dataset": [d], "task": request.tasks or list(ctx.dataset_cfg(d).data.default_tasks),
                 "protocol": request.protocols or list(ctx.base.run.protocols), "fraction": request.fractions or list(ctx.base.run.fractions),
                 "seed": request.seeds or list(ctx.base.run.seeds), "mode": request.modes or list(ctx.base.run.modes)}
                for d in request.datasets or [ctx.base.data.name]]

    def table(self, aggregates: pd.DataFrame, fmt: str = "md", methods: Sequence[str] | None = None) -> str:
        """Per task and attribute: each subgroup's gap to the reference subgroup [95% CI], Holm-adjusted over every gap
        of the table, with the classes compared, their fewest positives and n; a subgroup that cannot be compared says
        why."""
        from bench.suites.base import render_block
        from bench.suites.metrics import format_p, holm

        blocks = []
        modes = aggregates["mode"].fillna("linear") if "mode" in aggregates else pd.Series("linear", index=aggregates.index)
        for (dataset, task, protocol, fraction, mode), g in aggregates.assign(mode=modes).groupby(
                ["dataset", "task", "protocol", "fraction", "mode"], sort=True):
            g = g[g["method"].isin(methods)] if methods else g
            seeds = g["seed"].astype(str) if "seed" in g else pd.Series("0", index=g.index)
            label = {i: f"{m} (seed {sd})" if seeds.nunique() > 1 else m for i, m, sd in zip(g.index, g["method"], seeds)}
            gaps = [(i, c[:-len(".gap_p")]) for i in g.index for c in g.columns if c.endswith(".gap_p") and np.isfinite(g.at[i, c])]
            adjusted = dict(zip(gaps, holm([float(g.at[i, f"{c}.gap_p"]) for i, c in gaps])))
            refs = {k: v for item in str(g["references"].dropna().iloc[0] if "references" in g and g["references"].notna().any() else "")
                    .split(",") if ":" in item for k, v in [item.split(":", 1)]}
            for attribute in str(g["attributes"].dropna().iloc[0]).split(","):
                ref = refs.get(attribute)
                levels = sorted({c.split(".")[1] for c in g.columns if c.startswith(f"{attribute}.") and c.endswith(".n")}, key=_level_order)
                cells = pd.DataFrame(index=[label[i] for i in g.index], dtype=object)
                for i in g.index:
                    row, why = g.loc[i], _reasons(g.loc[i])
                    for lv in levels:
                        n = row.get(f"{attribute}.{lv}.n", np.nan)
                        col = f"{lv}{' (reference)' if lv == ref else ' − ' + str(ref)} (n={n:.0f})" if np.isfinite(n) else lv
                        if lv == ref:
                            auc = row.get(f"{attribute}.{lv}.auroc", np.nan)
                            cells.loc[label[i], col] = f"{100 * auc:.1f}" if np.isfinite(auc) else why.get(f"{attribute}.{lv}", "–")
                            continue
                        key = (i, f"{attribute}.{lv}")
                        if key not in adjusted:
                            cells.loc[label[i], col] = why.get(f"{attribute}.{lv}", "–")
                            continue
                        cells.loc[label[i], col] = (
                            f"{100 * row[f'{attribute}.{lv}.gap']:+.1f} [{100 * row[f'{attribute}.{lv}.gap_ci_low']:+.1f}, "
                            f"{100 * row[f'{attribute}.{lv}.gap_ci_high']:+.1f}] Holm p {format_p(adjusted[key], row[f'{attribute}.{lv}.p_floor'])}"
                            f" ({row[f'{attribute}.{lv}.classes']:.0f} classes, ≥ {row[f'{attribute}.{lv}.positives']:.0f} positives)")
                interval = ("DeLong" if str(g["interval"].iloc[0] if "interval" in g else "").startswith("DeLong")
                            else "each resampled within itself")
                title = (f"subgroup audit on {dataset}/{task} by {attribute} ({mode}, {protocol}, {100 * float(fraction):g}% labels): "
                         f"gap = macro AUROC of the subgroup − the reference subgroup ({ref}), in points [95% CI: {interval}], "
                         f"on the classes with ≥ {int(g['min_positives'].astype(float).max()) if 'min_positives' in g else 10} "
                         f"positives and negatives in both; Holm over the {len(adjusted)} gaps of this task's tables"
                         f"{_detectable(g, gaps)}; the reference column is its own AUROC; a subgroup that cannot be compared says why")
                blocks.append(render_block(cells, title, fmt))
        return "\n\n".join(blocks)


def _detectable(g: pd.DataFrame, gaps: list[tuple[Any, str]]) -> str:
    """Words on what the table's gaps can show: the smallest detectable gap (80% power, Holm's first step over the
    family) over its cells, and for bootstrap units the smallest Holm p their resolution allows."""
    from bench.suites.metrics import detectable_gap

    m = len(gaps)
    if not m:
        return ""
    se = [float(g.at[i, f"{c}.gap_se"]) if f"{c}.gap_se" in g and np.isfinite(g.at[i, f"{c}.gap_se"])
          else (float(g.at[i, f"{c}.gap_ci_high"]) - float(g.at[i, f"{c}.gap_ci_low"])) / 3.92 for i, c in gaps]
    sizes = [100 * detectable_gap(x, m) for x in se if np.isfinite(x)]
    words = (f"; smallest gap detectable with 80% power after Holm over the {m} gaps: {min(sizes):.1f}–{max(sizes):.1f} "
             f"points, by the cells' n") if sizes else ""
    floors = [float(g.at[i, f"{c}.p_floor"]) for i, c in gaps if float(g.at[i, f"{c}.p_floor"]) > 0]
    if floors and m * min(floors) >= 0.05:
        words += (f"; these units used a bootstrap p (smallest {min(floors):.2g}): × {m} gaps no gap can reach Holm p < 0.05 "
                  f"(rerun the audit for DeLong's p)")
    return words


def _reasons(row) -> dict[str, str]:
    """``attribute.level`` -> why that subgroup was not compared, from the aggregate's ``unscored`` tag."""
    text = str(row.get("unscored", "") or "")
    return {k.strip(): v.strip() for part in text.split("; ") if ": " in part for k, v in [part.split(": ", 1)]}
