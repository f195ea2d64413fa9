"""Patient characteristics as regression targets: which encoder's embedding holds age, height, weight, BMI.

A unit is one method x dataset x target x seed: a ridge head on the frozen embedding of the fixed split's training
records (features and target standardised on them), its regularisation chosen on the validation records, scored on the
test records in the target's own units. Metrics (defined here once, README "Metrics" says the same):

- MAE: mean absolute error, in the target's unit; RMSE likewise;
- R²: 1 − residual sum of squares / total sum of squares around the test mean (NaN when the targets are constant);
- Pearson r between predictions and targets.

A cell over S seeds is the mean over seeds; its 95 % interval is a two-level bootstrap (seeds drawn with replacement,
then one resample of the test records shared by every seed), percentile. Records without the value are left out of
that target. Targets are data (configs/protocols/regression.yaml). Written only against the suite plugin interface.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from bench.suites.base import Aggregate, Group, Request, Suite, Unit, UnitResult, content_hash, ids_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext

METRICS = ("mae", "rmse", "r2", "pearson_r")


def target_values(records: pd.DataFrame, spec: dict) -> pd.Series:
    """A target's value per record in its unit, records without one left out; None when the dataset has none of its
    columns. Forms: ``column``; ``ratio: [weight, height]`` (BMI, height in cm); ``difference: [a, b]`` (a - b);
    ``bazett: {qt: [a, b], rr: column}`` ((a - b) / sqrt(rr / 1000), none where rr is 0). ``valid: {column: [lo, hi]}``
    makes a raw value outside its range missing first; ``censored`` replaces coded values; values of 0 or below are left
    out unless ``positive_only: false``."""
    needed = ([spec["column"]] if "column" in spec else list(spec.get("ratio") or spec.get("difference") or [])
              or [*spec["bazett"]["qt"], spec["bazett"]["rr"]])
    if any(c not in records for c in needed):
        return None
    raw = {c: pd.to_numeric(records[c], errors="coerce") for c in needed}
    for column, (lo, hi) in (spec.get("valid") or {}).items():
        raw[column] = raw[column].where((raw[column] >= lo) & (raw[column] <= hi))
    if "ratio" in spec:
        num, den = spec["ratio"]
        values = raw[num] / (raw[den] / 100.0) ** 2
    elif "difference" in spec:
        a, b = spec["difference"]
        values = raw[a] - raw[b]
    elif "bazett" in spec:
        (a, b), rr = spec["bazett"]["qt"], spec["bazett"]["rr"]
        values = ((raw[a] - raw[b]) / np.sqrt(raw[rr] / 1000.0)).where(raw[rr] != 0)
    else:
        values = raw[spec["column"]]
        for code, meant in (spec.get("censored") or {}).items():
            values = values.mask(values == float(code), float(meant))
    kept = np.isfinite(values) & ((values > 0) if spec.get("positive_only", True) else True)
    return values[kept].astype(float)


def regression_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Every metric of the module docstring on targets ``y`` and predictions ``p`` (R² and r of constant values: NaN)."""
    return {name: _metric(name, y, p) for name in METRICS}


def fit_ridge(x_train, y_train, x_val, y_val, alphas: Sequence[float]) -> tuple[Any, float, dict]:
    """Ridge on standardised features and target, the alpha with the lowest validation MSE; returns a predictor in the
    target's unit, the alpha and the validation MSE of each alpha."""
    from sklearn.linear_model import Ridge

    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    ym, ys = float(y_train.mean()), float(y_train.std() + 1e-12)
    zt, zv = (x_train - mu) / sd, (x_val - mu) / sd
    fits = {float(a): Ridge(alpha=float(a)).fit(zt, (y_train - ym) / ys) for a in alphas}
    val_mse = {a: float(np.mean((m.predict(zv) * ys + ym - y_val) ** 2)) for a, m in fits.items()}
    best = min(val_mse, key=lambda a: (val_mse[a], a))

    def predict(x):
        return fits[best].predict((x - mu) / sd) * ys + ym

    return predict, best, val_mse


@dataclass
class RegressionState:
    cfg: Any
    handle: Any
    values: pd.Series
    split: dict[str, list[str]]
    alphas: list[float]
    mode: Any = None  # a ModeConfig for the attentive, finetune and scratch modes; None for the ridge probe
    seed: int = 0


class RegressionSuite(Suite):
    name = "regression"
    version = "1"
    description = ("patient characteristics (age, height, weight, BMI) and ECG measurements (intervals, axes): a ridge head "
                   "on the frozen embedding, or an MSE head in the attentive, finetune and scratch modes; MAE / R² / r")
    board_metric = "MAE"
    pools_seeds = True
    takes_modes = True

    def groups(self, ctx: "RunContext", request: Request):
        from omegaconf import OmegaConf

        settings = OmegaConf.to_container(ctx.base.regression, resolve=True)
        alphas = [float(a) for a in settings["alphas"]]
        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            records = ctx.reader(cfg).index.records
            targets = request.tasks or list(settings["default_targets"])
            unknown = [t for t in targets if t not in settings["targets"]]
            if unknown:
                from bench.config import ConfigError

                raise ConfigError(f"regression target(s) {', '.join(unknown)} are not in configs/protocols/regression.yaml "
                                  f"(targets: {', '.join(settings['targets'])})")
            from bench.suites.modes import ModeConfig

            modes = {m: None if m == "linear" else ModeConfig.from_config(cfg, m) for m in request.modes or ["linear"]}
            for method, mode, seed in itertools.product(request.methods, modes, request.seeds or [int(s) for s in cfg.run.seeds]):
                handle = ctx.scorers(cfg, method, "fixed", untrained=mode == "scratch", seed=seed)[0].handle
                for target in targets:
                    yield self._group(ctx, cfg, records, handle, method, target, seed, settings, alphas, modes[mode])

    def _group(self, ctx, cfg, records, handle, method: str, target: str, seed: int, settings: dict, alphas: list[float],
               mode=None) -> Group:
        from bench.suites.modes import mode_material, trainable

        ident = {"method": method, "dataset": cfg.data.name, "task": target, "protocol": "fixed", "fraction": 1.0, "seed": seed,
                 **({"mode": mode.mode} if mode else {})}
        if mode is not None and mode.mode in ("finetune", "scratch") and not trainable(handle.encoder):
            group = Group(ident)
            group.applicable, group.why_not = False, f"nothing to train in {mode.mode}"
            return group
        spec = settings["targets"][target]
        values = target_values(records, spec)
        if values is None or values.empty:
            group = Group(ident)
            group.applicable, group.why_not = False, f"{cfg.data.name} records no {target}"
            return group
        where = records.loc[values.index, "split"]
        split = {part: sorted(map(str, values.index[where == part])) for part in ("train", "val", "test")}
        if min(len(v) for v in split.values()) < 2:
            group = Group(ident)
            group.applicable, group.why_not = False, f"too few records with {target} in a split ({ {k: len(v) for k, v in split.items()} })"
            return group
        handle.check_leakage(cfg.data.name, cfg.data.get("identity", cfg.data.name), split["test"])
        material = {"embedding": ctx.embedding_key(cfg, handle), "target": content_hash({"spec": spec,
                    "values": values.round(6).astype(str).to_dict()}), **{part: ids_hash(ids) for part, ids in split.items()},
                    "seed": seed, **({"alphas": alphas} if mode is None else {"mode": mode_material(mode), "head": "mse"})}
        tags = {"fold": "test", **ctx.provenance(cfg, handle, ctx.reader(cfg).index), "unit_of_target": spec["unit"],
                "n_with_value": int(len(values)), "mode": mode.mode if mode else "linear"}
        group = Group(ident, [Unit(tags, material)], state=RegressionState(cfg, handle, values, split, alphas, mode, seed))
        return group

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        st: RegressionState = group.state
        if st.mode is not None:
            return [self._compute_mode(ctx, st, unit) for unit in units]
        emb, _ = ctx.embeddings(st.cfg, st.handle)
        x = {part: emb.emb[emb.rows(ids)].astype(np.float64) for part, ids in st.split.items()}
        by_id = {str(k): float(v) for k, v in st.values.items()}
        y = {part: np.array([by_id[i] for i in ids]) for part, ids in st.split.items()}
        predict, alpha, val_mse = fit_ridge(x["train"], y["train"], x["val"], y["val"], st.alphas)
        pred_test, pred_val = (predict(x[p]).astype(np.float32) for p in ("test", "val"))  # scored as stored: verify recomputes them
        metrics = {**regression_scores(y["test"].astype(np.float32), pred_test), "alpha": alpha, "n": float(len(y["test"])),
                   "n_train": float(len(y["train"])), "n_val": float(len(y["val"]))}
        arrays = {"record_ids": np.array(st.split["test"]), "y_true": y["test"].astype(np.float32),
                  "y_pred": pred_test.astype(np.float32), "val_record_ids": np.array(st.split["val"]),
                  "val_y_true": y["val"].astype(np.float32), "val_y_pred": pred_val.astype(np.float32),
                  "selection_mse": np.array([val_mse[a] for a in st.alphas], np.float32)}
        return [UnitResult(metrics, {"head": "ridge, standardised features and target", "alphas": str(st.alphas)}, arrays)
                for _ in units]

    def _compute_mode(self, ctx: "RunContext", st: RegressionState, unit: Unit) -> UnitResult:
        """An attentive, finetune or scratch unit: the modes' trainers with an MSE head on the target standardised on the
        training records, the epoch with the lowest validation MSE kept; outputs back in the target's unit."""
        from pathlib import Path

        from bench.suites.modes import CONTINUOUS, fit_and_predict, mode_inputs

        cfg, handle = st.mode, st.handle
        by_id = {str(k): float(v) for k, v in st.values.items()}
        ids, data, present = mode_inputs(ctx, st.cfg, handle, cfg.mode, [r for part in ("train", "val", "test") for r in st.split[part]])
        where = {r: i for i, r in enumerate(ids)}
        rows = {part: np.array([where[r] for r in st.split[part]], dtype=np.int64) for part in ("train", "val", "test")}
        y_train = np.array([by_id[r] for r in st.split["train"]])
        mean, scale = float(y_train.mean()), float(y_train.std() + 1e-12)
        y = np.zeros((len(ids), 1), np.float32)
        for r, i in where.items():
            if r in by_id:
                y[i, 0] = (by_id[r] - mean) / scale
        val, test, info = fit_and_predict(cfg, handle.encoder, data, y, rows, st.seed * 1_000_003 + 17,
                                          Path(st.cfg.paths.cache) / "modes" / unit.key, present, bool(ctx.progress), CONTINUOUS)
        truth = {p: np.array([by_id[r] for r in st.split[p]], dtype=np.float32) for p in ("val", "test")}
        pred = {p: (v[:, 0].astype(np.float64) * scale + mean).astype(np.float32)  # back in the target's unit, scored as stored
                for p, v in (("val", val), ("test", test))}
        metrics = {**regression_scores(truth["test"], pred["test"]), "n": float(len(truth["test"])),
                   "n_train": float(len(y_train)), "n_val": float(len(truth["val"])), **{k: float(v) for k, v in info.items()}}
        arrays = {"record_ids": np.array(st.split["test"]), "y_true": truth["test"], "y_pred": pred["test"],
                  "val_record_ids": np.array(st.split["val"]), "val_y_true": truth["val"], "val_y_pred": pred["val"]}
        return UnitResult(metrics, {**cfg.as_params(), "head": "MSE on the target standardised on the training records"}, arrays)

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        from bench.suites.classification import seed_sides
        from bench.suites.metrics import percentile_interval, seed_draws, two_level_bootstrap

        sides = seed_sides(results, group.identity.get("seed"))
        per_seed = [side[0][1].arrays for side in sides.values()]
        ids = per_seed[0]["record_ids"]
        if any(not np.array_equal(p["record_ids"], ids) for p in per_seed):
            raise ValueError(f"the seeds of {group.agg_key} were tested on different records")
        n_boot, seed = int(ctx.base.run.n_boot), int(ctx.base.run.bootstrap_seed)
        idx = np.random.default_rng([seed, len(ids)]).integers(0, len(ids), size=(n_boot, len(ids)))
        draws = seed_draws(len(per_seed), n_boot, seed)
        m: dict[str, float] = {"n_test": float(len(ids)), "n_seeds": float(len(per_seed))}
        for name in METRICS:
            whole = np.array([_metric(name, p["y_true"], p["y_pred"]) for p in per_seed])
            boot = np.array([[_metric(name, p["y_true"][b], p["y_pred"][b]) for b in idx] for p in per_seed])  # [S, B]
            lo, hi = percentile_interval(two_level_bootstrap(boot, draws))
            m.update({name: float(whole.mean()), f"{name}_ci_low": lo, f"{name}_ci_high": hi})
            if len(per_seed) > 1:
                m[f"{name}_seed_std"] = float(np.std(whole, ddof=1))
        unit = results[0][0].tags
        return Aggregate(m, {"unit_of_target": unit.get("unit_of_target", ""), "n_boot": n_boot, "bootstrap_seed": seed,
                             "bootstrap": "test records resampled with replacement" + (
                                 "; two-level: seeds drawn with replacement, then one record resample shared by every seed"
                                 if len(per_seed) > 1 else "")})

    def table(self, aggregates: pd.DataFrame, fmt: str = "md", methods: Sequence[str] | None = None) -> str:
        """Per dataset: methods x targets, MAE in the target's unit [95% CI], R² and r."""
        from bench.suites.base import render_block

        df = aggregates[aggregates["applicable"] != "no"] if "applicable" in aggregates else aggregates
        if len(df):  # the cell over its seeds where there is one, else its smallest seed
            rank = df["seed"].astype(str).map(lambda s: -1 if s == "all" else int(s))
            df = df.assign(_rank=rank, mode=df["mode"].fillna("linear") if "mode" in df else "linear")
            df = df.sort_values("_rank").drop_duplicates(["method", "dataset", "task", "mode"])
        if df.empty:
            raise NotImplementedError("no regression results")
        heads = {"linear": "ridge head on the frozen embedding",
                 "attentive": "attentive MSE head on the frozen tokens", "finetune": "fine-tuned encoder with an MSE head",
                 "scratch": "the architecture trained from scratch with an MSE head"}
        blocks = []
        for (dataset, mode), g in df.groupby(["dataset", "mode"], sort=True):
            g = g[g["method"].isin(methods)] if methods else g
            cells = pd.DataFrame(index=sorted(set(g["method"])), dtype=object)
            for r in g.to_dict("records"):
                col = f"{r['task']} ({r.get('unit_of_target', '')}, n={float(r['n_test']):.0f})"
                cells.loc[r["method"], f"{col} MAE"] = (f"{r['mae']:.2f} [{r['mae_ci_low']:.2f}, {r['mae_ci_high']:.2f}]")
                cells.loc[r["method"], f"{col} R²"] = f"{r['r2']:.2f} [{r['r2_ci_low']:.2f}, {r['r2_ci_high']:.2f}]"
                cells.loc[r["method"], f"{col} r"] = f"{r['pearson_r']:.2f}"
            n_seeds = sorted({int(float(s)) for s in g["n_seeds"]})
            seeds = (f"mean over S = {'/'.join(map(str, n_seeds))} seeds (interval: seeds drawn, then records)" if n_seeds != [1]
                     else "S = 1 seed (interval: test records)")
            blocks.append(render_block(cells.fillna("–"),
                                       f"continuous targets on {dataset}, {mode}: {heads.get(mode, mode)} (the epoch or alpha "
                                       f"chosen on validation), test MAE in the target's unit [95% CI], R² [95% CI], Pearson r; "
                                       f"{seeds}", fmt))
        return "\n\n".join(blocks)


def mean_absolute_error(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """MAE over the last axis in float64: one value, or one per row of resampled [B, n] arrays (``bench table summary``)."""
    return np.abs(np.asarray(y, np.float64) - np.asarray(p, np.float64)).mean(-1)


def _metric(name: str, y: np.ndarray, p: np.ndarray) -> float:
    """One metric (module docstring): defined once here, on the test set and on each of its resamples."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    with np.errstate(all="ignore"):
        if name == "mae":
            return float(mean_absolute_error(y, p))
        if name == "rmse":
            return float(np.sqrt(np.mean((y - p) ** 2)))
        if name == "r2":
            total = np.sum((y - y.mean()) ** 2)
            return float(1 - np.sum((y - p) ** 2) / total) if total > 0 else float("nan")
        return float(np.corrcoef(y, p)[0, 1]) if np.std(y) > 0 and np.std(p) > 0 else float("nan")
