"""Subgroup audit: the linear suite's per-record test predictions broken down by age band, sex, site and device.

No head is retrained: a subgroup unit reads exactly the linear units its cell's aggregate pooled (their
keys are part of its own key), so it changes whenever they do. Per subgroup: macro AUROC on the classes
scorable in every scored subgroup of that attribute, with a percentile bootstrap interval (resampling
within the subgroup, stratified, fixed class set); per attribute: the largest gap (observed best minus
worst subgroup) with its interval from the same resamples. Settings: configs/protocols/subgroup.yaml.

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


def audit(y: np.ndarray, s: np.ndarray, levels: pd.Series, min_records: int, n_boot: int, seed: int) -> tuple[dict, list[dict]]:
    """Metrics and rows for one attribute: per-level AUROC [CI] on a common class set, and the largest gap."""
    from bench.suites.metrics import bootstrap_indices, bootstrap_macro_auroc, percentile_interval, scorable

    groups = {lv: np.flatnonzero((levels == lv).to_numpy()) for lv in sorted(levels.dropna().unique(), key=str)}
    scored = {lv: rows for lv, rows in groups.items() if len(rows) >= min_records}
    common = np.ones(y.shape[1], bool)
    for rows in scored.values():
        common &= scorable(y[rows])
    rows_out = [{"level": lv, "n": len(rows), "scored": lv in scored and common.any()} for lv, rows in groups.items()]
    if not common.any() or not scored:
        return {}, rows_out
    boots, point = {}, {}
    for lv, rows in scored.items():
        yy, ss = y[rows][:, common], s[rows][:, common]
        idx = bootstrap_indices(len(rows), n_boot, seed, y_true=yy)
        boots[lv] = bootstrap_macro_auroc(yy, ss, idx)
        point[lv] = float(bootstrap_macro_auroc(yy, ss, np.arange(len(rows))[None])[0])
    metrics = {"n_classes": float(common.sum())}
    for row in rows_out:
        lv = row["level"]
        if lv in point:
            lo, hi = percentile_interval(boots[lv])
            row.update({"auroc": point[lv], "ci_low": lo, "ci_high": hi})
            metrics.update({f"{_name(lv)}.auroc": point[lv], f"{_name(lv)}.ci_low": lo, f"{_name(lv)}.ci_high": hi})
        metrics[f"{_name(lv)}.n"] = float(row["n"])
    if len(point) > 1:
        best, worst = max(point, key=point.get), min(point, key=point.get)
        lo, hi = percentile_interval(boots[best] - boots[worst])
        metrics.update({"gap": point[best] - point[worst], "gap_ci_low": lo, "gap_ci_high": hi})
        rows_out.append({"level": f"gap: {best} − {worst}", "n": len(scored[best]) + len(scored[worst]), "scored": True,
                         "auroc": point[best] - point[worst], "ci_low": lo, "ci_high": hi})
    return metrics, rows_out


class SubgroupSuite(Suite):
    name = "subgroup"
    version = "1"
    description = "audit of the linear suite's test predictions by age band, sex, site and device (AUROC and largest gap)"
    stores_predictions = False
    on_leaderboard = False

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
            for method, protocol, task, fraction, seed in itertools.product(
                    request.methods, request.protocols or list(cfg.run.protocols), request.tasks or list(cfg.data.default_tasks),
                    request.fractions or [float(f) for f in cfg.run.fractions], request.seeds or [int(s) for s in cfg.run.seeds]):
                yield self._group(ctx, linear, cfg, settings, meta, method, task, protocol, fraction, seed)

    def _group(self, ctx, linear, cfg, settings: dict, meta: pd.DataFrame, method: str, task: str, protocol: str, fraction: float,
               seed: int) -> Group:
        """The cell's linear units (run first when missing: skipped if already in MLflow) and one audit unit on them."""
        from bench.suites.base import UNIT_PROVENANCE

        ident = {"method": method, "dataset": cfg.data.name, "task": task, "protocol": protocol, "fraction": fraction, "seed": seed}
        sub = Request([method], [cfg.data.name], [task], [protocol], [fraction], [seed])
        ctx.execute(linear, sub)
        agg = ctx.store.aggregate_tags("linear", Group({"suite": "linear", **ident}).agg_key)
        if agg is None or "unit_keys" not in agg:
            raise LookupError(f"no linear aggregate for {method} on {cfg.data.name}/{task} ({protocol}, {fraction}, seed {seed})")
        keys = agg["unit_keys"].split(",")
        material = {"linear_units": keys, "metadata": frame_hash(meta), "settings": settings,
                    "n_boot": int(settings["n_boot"]), "bootstrap_seed": int(ctx.base.run.bootstrap_seed)}
        tags = {"fold": "test" if protocol == "fixed" else "pooled", "linear_unit_set": agg.get("unit_set", ""),
                "attributes": ",".join(meta.columns), **{k: agg.get(k, "") for k in UNIT_PROVENANCE}}
        return Group(ident, [Unit(tags, material)], state=(settings, meta, keys))

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        from bench.suites.classification import pooled

        settings, meta, keys = group.state
        results = ctx.unit_results("linear", keys, method=str(group.identity["method"]), dataset=str(group.identity["dataset"]))
        p = pooled([r.arrays for r in results])
        records = meta.loc[[str(r) for r in p["record_ids"]]]
        metrics: dict[str, float] = {"n_test": float(len(records))}
        rows = []
        for attribute in meta.columns:
            levels = subgroup_levels(records, attribute, settings).reset_index(drop=True)
            m, r = audit(p["y_true"], p["y_score"], levels, int(settings["min_records"]), int(settings["n_boot"]),
                         int(ctx.base.run.bootstrap_seed))
            metrics.update({f"{attribute}.{k}": v for k, v in m.items()})
            rows += [{"attribute": attribute, **row} for row in r]
        return [UnitResult(metrics, {"min_records": settings["min_records"], "age_bands": settings["age_bands"]},
                           files={"subgroups.csv": pd.DataFrame(rows).to_csv(index=False)})]

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        (unit, result), = results
        return Aggregate(dict(result.metrics), {"attributes": unit.tags["attributes"],
                                                "linear_unit_set": unit.tags["linear_unit_set"],
                                                "interval": "percentile bootstrap within each subgroup (stratified, fixed class set)"})

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        return [{"method": request.methods, "dataset": [d], "task": request.tasks or list(ctx.dataset_cfg(d).data.default_tasks),
                 "protocol": request.protocols or list(ctx.base.run.protocols), "fraction": request.fractions or list(ctx.base.run.fractions),
                 "seed": request.seeds or list(ctx.base.run.seeds)} for d in request.datasets or [ctx.base.data.name]]

    def table(self, aggregates: pd.DataFrame, fmt: str = "md", methods: Sequence[str] | None = None) -> str:
        from bench.suites.base import render_block

        blocks = []
        for (dataset, task, protocol, fraction), g in aggregates.groupby(["dataset", "task", "protocol", "fraction"], sort=True):
            g = g[g["method"].isin(methods)] if methods else g
            for attribute in str(g["attributes"].dropna().iloc[0]).split(","):
                levels = sorted({c.split(".")[1] for c in g.columns if c.startswith(f"{attribute}.") and c.endswith(".n")},
                                key=_level_order)
                cells = pd.DataFrame(index=list(g["method"]), dtype=object)
                for _, row in g.iterrows():
                    for lv in levels:
                        auc, n = row.get(f"{attribute}.{lv}.auroc", np.nan), row.get(f"{attribute}.{lv}.n", np.nan)
                        cells.loc[row["method"], f"{lv} (n={n:.0f})" if np.isfinite(n) else lv] = (
                            f"{100 * auc:.1f} [{100 * row[f'{attribute}.{lv}.ci_low']:.1f}, {100 * row[f'{attribute}.{lv}.ci_high']:.1f}]"
                            if np.isfinite(auc) else "too few")
                    gap = row.get(f"{attribute}.gap", np.nan)
                    cells.loc[row["method"], "largest gap"] = (
                        f"{100 * gap:.1f} [{100 * row[f'{attribute}.gap_ci_low']:.1f}, {100 * row[f'{attribute}.gap_ci_high']:.1f}]"
                        if np.isfinite(gap) else "–")
                    k = row.get(f"{attribute}.n_classes", np.nan)
                    cells.loc[row["method"], "classes"] = f"{k:.0f}" if np.isfinite(k) else "–"
                title = (f"subgroup audit on {dataset}/{task} by {attribute} (linear, {protocol}, {100 * float(fraction):g}% labels): "
                         f"macro AUROC [95% bootstrap CI within the subgroup] on the classes scorable in every scored subgroup")
                blocks.append(render_block(cells, title, fmt))
        return "\n\n".join(blocks)
