"""Acquisition robustness: heads trained on clean embeddings, scored on test records under acquisition shifts.

One unit per condition (configs/protocols/robustness.yaml): lead subsets (zero-filled), additive noise
and baseline wander at set SNRs, and a bandwidth mismatch. The head is the `fixed` protocol's head on
all labels (thresholds from validation); it is retrained identically for any condition computed later,
since its seed depends only on the split. Perturbed embeddings are cached per condition. The aggregate
reports AUROC per condition and the drop from clean with a paired bootstrap interval (the same
stratified resamples of the test records for both).

Written only against the suite plugin interface (bench/suites/base.py).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.suites.metrics import degenerate_classes
from bench.suites.base import Aggregate, Group, Request, Suite, Unit, UnitResult, frame_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext


@dataclass
class RobustnessState:
    cfg: Any
    handle: Any
    labels: pd.DataFrame
    split: Any
    head: Any
    seed: int
    noise_seed: int
    min_distinct: int = 5


class RobustnessSuite(Suite):
    name = "robustness"
    version = "2"  # 2: degenerate outputs marked instead of scored
    description = "clean-trained linear heads scored under lead loss, noise, baseline wander and low-pass shifts"
    on_leaderboard = False
    unit_order = ("conditions", "condition")

    def groups(self, ctx: "RunContext", request: Request):
        from omegaconf import OmegaConf

        from bench.data.perturb import Condition
        from bench.suites.linear import HeadConfig, head_seed, split_material
        from bench.suites.protocols import protocol_splits

        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            rob = OmegaConf.to_container(cfg.robustness, resolve=True)
            conditions = [Condition.from_mapping(c) for c in rob["conditions"]]
            if not conditions or conditions[0].kind != "clean":
                raise ValueError("robustness.conditions must start with the clean condition (the drops are measured from it)")
            head = HeadConfig.from_mapping(OmegaConf.to_container(cfg.linear))
            index = ctx.reader(cfg).index
            seeds = request.seeds or [int(s) for s in cfg.run.seeds]
            for method, seed in itertools.product(request.methods, seeds):
                handle = ctx.scorers(cfg, method, "fixed", seed=seed)[0].handle
                for task in request.tasks or list(cfg.data.default_tasks):
                    labels = index.task(task).labels
                    (split,) = protocol_splits(index.records, labels, "fixed")
                    handle.check_leakage(cfg.data.name, cfg.data.get("identity", cfg.data.name), split.test)
                    group = Group({"method": method, "dataset": cfg.data.name, "task": task, "protocol": "fixed", "fraction": 1.0,
                                   "seed": seed}, state=RobustnessState(cfg, handle, labels, split, head, seed, int(rob["seed"]),
                                                             int(rob["min_distinct_scores"])))
                    base = {"embedding": ctx.embedding_key(cfg, handle), "labels": frame_hash(labels), **split_material(split),
                            "head": head.as_params(), "head_seed": head_seed(split.fold, 1.0), "seed": seed,
                            "noise_seed": int(rob["seed"]), "min_distinct_scores": int(rob["min_distinct_scores"])}
                    for cond in conditions:
                        tags = {"fold": cond.name, **ctx.provenance(cfg, handle, index), "condition": cond.name,
                                "min_distinct_scores": int(rob["min_distinct_scores"])}
                        group.units.append(Unit(tags, {**base, "condition": asdict(cond)}, cond))
                    yield group

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        from bench.encoders.embeddings import EncodeSettings, cached_perturbed_embeddings
        from bench.suites.classification import unit_result
        from bench.suites.linear import fit_heads

        st: RobustnessState = group.state
        emb, reader = ctx.embeddings(st.cfg, st.handle)
        y_all = st.labels.reindex(emb.record_ids, fill_value=0).to_numpy()
        (fitted,) = fit_heads(emb, y_all, [st.split], st.head, st.seed, 1.0)
        # the shift happens to the recorded signal: before the filters and scaling an encoder's preprocessing runs
        prepared = ctx.prepared(st.cfg, st.handle, raw=st.handle.encoder.contract.steps_prepared)
        test = list(st.split.test)
        y_test = y_all[emb.rows(test)]
        out = []
        for u in units:
            cond = u.payload
            x = (emb.emb[emb.rows(test)] if cond.kind == "clean" else
                 cached_perturbed_embeddings(st.handle, prepared, test, cond, st.noise_seed, st.cfg.paths.cache, reader.index.units,
                                             EncodeSettings.from_config(st.cfg)))
            out.append(unit_result(fitted.arrays(x, y_test, test), list(st.labels.columns), {"best_epoch": fitted.best_epoch},
                                   {**st.head.as_params(), "condition": cond.name}))
        return out

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        from bench.suites.metrics import bootstrap_indices, bootstrap_macro_auroc, percentile_interval
        from bench.suites.classification import boot_dir, evaluation_set_key

        by_name = {u.tags["condition"]: r for u, r in results}
        clean = by_name["clean"].arrays
        idx = bootstrap_indices(len(clean["record_ids"]), int(ctx.base.run.n_boot), int(ctx.base.run.bootstrap_seed), boot_dir(ctx),
                                evaluation_set_key(group.identity, clean["record_ids"]), y_true=clean["y_true"])
        boot_clean = bootstrap_macro_auroc(clean["y_true"], clean["y_score"], idx)
        m: dict[str, float] = {"n_test": float(len(clean["record_ids"]))}
        min_distinct = int(group.state.min_distinct) if group.state is not None else int(results[0][0].tags.get("min_distinct_scores", 5))
        for u, r in results:
            name = u.tags["condition"]
            if not np.array_equal(r.arrays["record_ids"], clean["record_ids"]):
                raise ValueError(f"robustness {name}: not scored on the clean condition's records")
            flat = degenerate_classes(r.arrays["y_true"], r.arrays["y_score"], min_distinct)
            m[f"{name}.degenerate_classes"] = float(flat)
            if flat:  # a constant (or near-constant) output: its AUROC is an artefact, not a ranking
                m.update({f"{name}.{k}": float("nan") for k in ("auroc", "f1", "bacc", "drop", "drop_ci_low", "drop_ci_high")})
                continue
            drop = bootstrap_macro_auroc(r.arrays["y_true"], r.arrays["y_score"], idx) - boot_clean
            lo, hi = percentile_interval(drop)
            m.update({f"{name}.auroc": r.metrics["auroc"], f"{name}.f1": r.metrics["f1"], f"{name}.bacc": r.metrics["bacc"],
                      f"{name}.drop": r.metrics["auroc"] - by_name["clean"].metrics["auroc"], f"{name}.drop_ci_low": lo,
                      f"{name}.drop_ci_high": hi})
        order = [u.tags["condition"] for u, _ in results]
        return Aggregate(m, {"conditions": ",".join(order), "n_boot": int(ctx.base.run.n_boot), "min_distinct_scores": min_distinct,
                             "bootstrap_seed": int(ctx.base.run.bootstrap_seed),
                             "interval": "paired percentile bootstrap over test records (stratified, fixed class set)"})

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        return [{"method": request.methods, "dataset": [d], "task": request.tasks or list(ctx.dataset_cfg(d).data.default_tasks),
                 "seed": request.seeds or list(ctx.base.run.seeds)} for d in request.datasets or [ctx.base.data.name]]

    def table(self, aggregates: pd.DataFrame, fmt: str = "md", methods=None) -> str:
        from bench.suites.base import render_block

        blocks = []
        for (dataset, task), g in aggregates.groupby(["dataset", "task"], sort=True):
            g = g[g["method"].isin(methods)] if methods else g
            conditions = str(g["conditions"].dropna().iloc[0]).split(",") if "conditions" in g and g["conditions"].notna().any() else []
            cells = pd.DataFrame(index=list(g["method"]), dtype=object)
            for _, row in g.iterrows():
                for c in conditions:
                    auc = row.get(f"{c}.auroc", np.nan)
                    if row.get(f"{c}.degenerate_classes", 0) > 0:
                        cells.loc[row["method"], c] = f"degenerate ({row[f'{c}.degenerate_classes']:.0f} classes)"
                    elif c == "clean":
                        cells.loc[row["method"], c] = f"{100 * auc:.1f}"
                    else:
                        cells.loc[row["method"], c] = (f"{100 * auc:.1f} ({100 * row.get(f'{c}.drop', np.nan):+.1f} "
                                                       f"[{100 * row.get(f'{c}.drop_ci_low', np.nan):+.1f}, "
                                                       f"{100 * row.get(f'{c}.drop_ci_high', np.nan):+.1f}])")
            title = (f"acquisition robustness on {dataset}/{task}: macro AUROC per condition (change from clean "
                     f"[95% paired bootstrap CI]); head trained on clean embeddings, fixed split; degenerate = for some class "
                     f"the head gave fewer than {int(g['min_distinct_scores'].astype(float).max()) if 'min_distinct_scores' in g else 5} "
                     f"distinct scores to its positives or negatives (e.g. one constant output), so no AUROC is reported")
            blocks.append(render_block(cells, title, fmt))
        return "\n\n".join(blocks)
