"""`bench run`: compose datasets, encoders, caches and a suite into logged units of work.

Flow (one way): dataset reader -> prepared-array cache -> encoder (checkpoint resolved, pretrained on
the leakage-safe pool if needed) -> embedding cache -> suite computation -> metrics -> MLflow.
Every unit has a key; units already FINISHED in MLflow are skipped, so a killed run resumes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import typer
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bench import code_version
from bench.config import ConfigError, load_config
from bench.data.cache import prepare
from bench.data.preprocess import PreprocessConfig
from bench.data.registry import open_from_config
from bench.embeddings import Embeddings, cached_embeddings
from bench.encoders import create_encoder
from bench.encoders.loading import EncoderHandle, load_encoder
from bench.metrics import (bootstrap_indices, bootstrap_macro_auroc, classification_scores, percentile_interval)
from bench.results_store import MissingUnits, ResultStore
from bench.suites.linear import HeadConfig, train_heads
from bench.suites.protocols import Split, protocol_splits
from bench.suites.transfer import DIRECTIONS, aligned_classes, aligned_labels, load_label_maps
from bench.suites.zero_shot import load_prompts, zero_shot_predict

SUITES = ("linear", "zero_shot", "transfer", "textgen")
TEXTGEN_CONTROL = "llm_only"  # the text-free control: the same LLM and schedule with no ECG prefix


# the provenance tags (Runner._provenance) every aggregate carries over from its units
UNIT_PROVENANCE = ("checkpoint_hash", "checkpoint", "split_hash", "code_version", "pool", "preset", "input_contract", "input",
                   "corpora", "contaminated")


@dataclass
class RunSummary:
    units_total: int = 0
    units_skipped: int = 0
    units_run: int = 0
    not_applicable: list[str] = field(default_factory=list)


def _stable_int(*parts: Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Scorer:
    """An encoder and the folds it may score (None = all); several for a cross-fitted cv10."""

    handle: EncoderHandle
    folds: set[str] | None = None


class Runner:
    def __init__(self, overrides: Sequence[str] = (), ckpts: dict[str, str] | None = None, progress: bool = True,
                 echo: Callable[[str], None] = typer.echo, after_unit: Callable[[int], None] | None = None, *,
                 folds: Sequence[str] | None = None, aggregate: bool = True, compute: bool = True):
        """``folds``, ``aggregate=False``: run only some units and leave the aggregates to a later pass (a
        launcher job); ``compute=False``: only collect and aggregate, failing if a unit is missing."""
        self.overrides = list(overrides)
        self.folds = {str(f) for f in folds} if folds is not None else None
        self.aggregate, self.compute = aggregate, compute
        self.ckpts = dict(ckpts or {})
        self.progress = progress
        self.echo = echo
        self.after_unit = after_unit
        self.base = load_config(self.overrides)
        self.store = ResultStore.from_config(self.base)
        self._embeddings: dict[tuple, Embeddings] = {}
        self._readers: dict[str, Any] = {}
        self._units_logged = 0

    # ---- composition helpers -------------------------------------------------------------------
    def dataset_cfg(self, dataset: str) -> DictConfig:
        return load_config(self.overrides, data=dataset)

    def reader(self, cfg: DictConfig):
        """One reader (and parsed index) per resolved data config for the whole run."""
        key = json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True, default=str)
        if key not in self._readers:
            self._readers[key] = open_from_config(cfg)
        return self._readers[key]

    def scorers(self, cfg: DictConfig, method: str, protocol: str) -> list[Scorer]:
        """Checkpoint(s) for ``method``: --ckpt, an untrained control, or the small preset pretrained
        on the leakage-safe pool(s) of ``protocol`` (cached)."""
        options = OmegaConf.to_container(cfg.encoder, resolve=True)
        identity = {cfg.data.name: cfg.data.get("identity", cfg.data.name)}
        if method in self.ckpts:
            return [Scorer(load_encoder(method, options, self.ckpts[method], identity_of=identity,
                                        allow_contamination=bool(cfg.run.get("allow_contamination", False))))]
        if not create_encoder(method, **options).requires_pretraining:
            return [Scorer(load_encoder(method, options, None, seed=int(cfg.pretrain.seed)))]
        if not cfg.data.get("auto_pretrain"):
            raise ConfigError(f"no checkpoint for {method} on {cfg.data.name} (fix: pass --ckpt {method}=/path/to/encoder.pt; "
                              f"auto-pretraining is only on for the demo data and ptbxl_1819)")
        from bench.pretrain import run_pretraining

        pools = [list(p) for p in cfg.protocols[protocol].pretrain_pools]
        out = []
        for pool in pools:
            pcfg = cfg.copy()
            pcfg.pretrain_pool.folds = pool
            self.echo(f"{method}: no checkpoint given -> the {options.get('preset', '')} preset pretrained on "
                      f"{cfg.data.name} folds {pool[0]}-{pool[-1]}")
            try:
                result = run_pretraining(pcfg, method, progress=self.progress, cached_only=not self.compute)
            except FileNotFoundError as exc:
                raise MissingUnits(f"{exc}: the launcher's jobs did not pretrain it (fix: read the job logs under "
                                   f"<cache>/launch, then re-run the same command)") from exc
            how = "cached" if result.seconds == 0 else f"pretrained now in {result.seconds:.0f} s"
            self.echo(f"  {how}: {result.checkpoint}")
            handle = load_encoder(method, options, result.checkpoint, identity_of=identity)
            scored = None if len(pools) == 1 else {str(k) for k in range(1, 11) if k not in pool}
            out.append(Scorer(handle, scored))
        return out

    def embeddings(self, cfg: DictConfig, handle: EncoderHandle) -> tuple[Embeddings, Any]:
        key = (cfg.data.name, handle.method, handle.checkpoint_hash)
        reader = self.reader(cfg)
        if key not in self._embeddings:
            spec = handle.encoder.spec
            pcfg = PreprocessConfig.from_mapping(spec.contract.preprocess_mapping(OmegaConf.to_container(cfg.preprocess)))
            prepared = prepare(reader, pcfg, cfg.paths.cache, on_error=cfg.data.get("on_error", "raise"), progress=self.progress)
            self._embeddings[key] = cached_embeddings(handle, prepared, cfg.paths.cache, reader.index.units, progress=self.progress)
        return self._embeddings[key], reader

    def _provenance(self, cfg: DictConfig, handle: EncoderHandle, index) -> dict[str, Any]:
        contract = handle.encoder.contract
        return {"checkpoint_hash": handle.checkpoint_hash, "checkpoint": str(handle.checkpoint or "untrained"),
                "split_hash": index.split_hash(), "code_version": code_version(),
                "pool": f"{handle.pool_dataset}:{handle.pool_folds}" if handle.pool_dataset else "none",
                "preset": OmegaConf.to_container(cfg.encoder).get("preset", ""),
                "input_contract": contract.key(), "input": contract.describe()[:500],
                "corpora": ",".join(handle.corpora) or "none",
                "contaminated": "yes" if handle.contaminated(cfg.data.get("identity", cfg.data.name)) else "no"}

    def _log_unit(self, suite: str, tags: dict, scores, extra_metrics: dict, params: dict, arrays: dict) -> None:
        self.store.log_run(suite, "unit", tags, {**scores.as_dict(), **extra_metrics}, params, arrays)
        self._units_logged += 1
        if self.after_unit is not None:
            self.after_unit(self._units_logged)

    def _aggregate(self, suite: str, group: dict, units: list[tuple[dict, dict[str, np.ndarray]]], classes: list[str],
                   cfg: DictConfig, extra_tags: dict) -> None:
        """Fold means/spreads of the unit metrics + bootstrap interval on the pooled test predictions."""
        per_unit = []
        ys, ss, ids, preds = [], [], [], []
        for _, arr in units:
            pred = arr.get("y_pred")
            per_unit.append(classification_scores(arr["y_true"], arr["y_score"], classes, y_pred=pred))
            ys.append(arr["y_true"]), ss.append(arr["y_score"]), ids.append(arr["record_ids"])
            preds.append(pred if pred is not None else (arr["y_score"] >= 0.5).astype(int))
        y, s, rid = np.concatenate(ys), np.concatenate(ss), np.concatenate(ids)
        pooled = classification_scores(y, s, classes, y_pred=np.concatenate(preds))
        n_boot = int(cfg.run.n_boot)
        order = np.argsort(rid, kind="stable")  # resamples index records in a fixed (sorted id) order
        boot_key = f"{group['dataset']}|{group['task']}|{group['protocol']}|{_hash(sorted(map(str, rid)))}"
        idx = bootstrap_indices(len(rid), n_boot, int(cfg.run.bootstrap_seed), Path(cfg.paths.cache) / "bootstrap", boot_key)
        boot = bootstrap_macro_auroc(y[order], s[order], idx)
        lo, hi = percentile_interval(boot)
        m = {f"{k}_mean": float(np.nanmean([getattr(u, k) for u in per_unit])) for k in ("auroc", "auprc", "f1", "acc")}
        m.update({f"{k}_std": float(np.nanstd([getattr(u, k) for u in per_unit])) for k in ("auroc", "auprc", "f1", "acc")})
        m.update({"auroc_pooled": pooled.auroc, "auroc_ci_low": lo, "auroc_ci_high": hi, "n_test": float(len(rid)),
                  "n_units": float(len(units))})
        tags = {**group, **extra_tags, "absent_classes": ",".join(pooled.absent) or "-", "boot_key": boot_key,
                "n_boot": n_boot, "applicable": "yes"}
        agg_key = "|".join(str(group[k]) for k in ("suite", "method", "dataset", "task", "protocol", "fraction", "seed"))
        self.store.replace_aggregate(suite, agg_key, tags, m)
        bootdir = Path(cfg.paths.cache) / "bootstrap" / "auroc"
        bootdir.mkdir(parents=True, exist_ok=True)
        np.save(bootdir / f"{_hash(agg_key)}.npy", boot)

    def _require_computable(self, missing: list[dict]) -> None:
        if missing and not self.compute:
            keys = "\n  ".join(t["unit_key"] for t in missing[:5])
            raise MissingUnits(f"{len(missing)} unit(s) are not in {self.store.uri} after the launcher finished, e.g.\n  {keys}\n"
                               f"(fix: read the job logs under the sweep folder, then re-run the same command: "
                               f"finished units are skipped)")

    def _not_applicable(self, suite: str, group: dict) -> None:
        if not self.aggregate:
            return
        agg_key = "|".join(str(group[k]) for k in ("suite", "method", "dataset", "task", "protocol", "fraction", "seed"))
        self.store.replace_aggregate(suite, agg_key, {**group, "applicable": "no"}, {})

    # ---- suites ----------------------------------------------------------------------------------
    def run(self, suite: str, methods: Sequence[str], datasets: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
            protocols: Sequence[str] | None = None, fractions: Sequence[float] | None = None,
            seeds: Sequence[int] | None = None) -> RunSummary:
        if suite not in SUITES:
            raise ConfigError(f"unknown suite '{suite}'. Available: {', '.join(SUITES)}")
        run_cfg = self.base.run
        requested_seeds = [int(s) for s in seeds] if seeds else None
        protocols = list(protocols or run_cfg.protocols)
        fractions = [float(f) for f in (fractions or run_cfg.fractions)]
        seeds = [int(s) for s in (seeds or run_cfg.seeds)]
        summary = RunSummary()
        if suite == "transfer":
            self._run_transfer(methods, datasets, seeds, summary)
            return summary
        if suite == "textgen":
            for dataset in datasets or [self.base.data.name]:
                cfg = self.dataset_cfg(dataset)
                for method in methods:
                    self._run_textgen(cfg, method, requested_seeds, summary)
            return summary
        for dataset in datasets or [self.base.data.name]:
            cfg = self.dataset_cfg(dataset)
            for method in methods:
                for protocol in (protocols if suite == "linear" else ["fixed"]):
                    if suite == "linear":
                        self._run_linear(cfg, method, protocol, tasks, fractions, seeds, summary)
                    else:
                        self._run_zero_shot(cfg, method, tasks, seeds, summary)
        return summary

    def _run_linear(self, cfg, method, protocol, tasks, fractions, seeds, summary: RunSummary) -> None:
        head_cfg = HeadConfig.from_mapping(OmegaConf.to_container(cfg.linear))
        head_hash = _hash(head_cfg.as_params())
        scorers = self.scorers(cfg, method, protocol)
        reader = self.reader(cfg)
        index = reader.index
        identity = cfg.data.get("identity", cfg.data.name)
        for task in tasks or list(cfg.data.default_tasks):
            labels = index.task(task).labels
            classes = list(labels.columns)
            for fraction in fractions:
                for seed in seeds:
                    splits = protocol_splits(index.records, labels, protocol, fraction, seed)
                    group = {"suite": "linear", "method": method, "dataset": cfg.data.name, "task": task, "protocol": protocol,
                             "fraction": fraction, "seed": seed}
                    results: list[tuple[dict, dict]] = []
                    pending: list[tuple[int, Split, dict]] = []
                    for split in splits:
                        if self.folds is not None and split.fold not in self.folds:
                            continue
                        k = next(i for i, sc in enumerate(scorers) if sc.folds is None or split.fold in sc.folds)
                        handle = scorers[k].handle
                        handle.check_leakage(cfg.data.name, identity, split.test)
                        tags = {**group, "fold": split.fold, **self._provenance(cfg, handle, index), "head_hash": head_hash}
                        tags["unit_key"] = "|".join(str(tags[t]) for t in ("suite", "method", "dataset", "task", "protocol", "fold",
                                                                              "fraction", "seed", "checkpoint_hash", "split_hash", "head_hash"))
                        pending.append((k, split, tags))
                    summary.units_total += len(pending)
                    with self.store.claim("linear", [t["unit_key"] for _, _, t in pending], method=method, dataset=cfg.data.name,
                                          task=task, protocol=protocol) as done:
                        todo: dict[int, list[tuple[Split, dict]]] = {}
                        for k, split, tags in pending:
                            if tags["unit_key"] in done:
                                summary.units_skipped += 1
                                results.append((tags, self.store.predictions(done[tags["unit_key"]])))
                            else:
                                todo.setdefault(k, []).append((split, tags))
                        self._require_computable([t for items in todo.values() for _, t in items])
                        for k, items in todo.items():
                            emb, _ = self.embeddings(cfg, scorers[k].handle)
                            y_all = labels.reindex(emb.record_ids, fill_value=0).to_numpy()
                            heads = [(emb.rows(sp.train), emb.rows(sp.val)) for sp, _ in items]
                            trained = train_heads(emb.emb, y_all, heads, head_cfg, seed=seed,
                                                  head_seeds=[_stable_int(sp.fold, fraction) for sp, _ in items])
                            for h, (sp, tags) in enumerate(items):
                                rows = emb.rows(sp.test)
                                arrays = {"record_ids": np.array(sp.test), "y_true": y_all[rows].astype(np.int8),
                                          "y_score": trained.predict(emb.emb[rows], h).astype(np.float32)}
                                scores = classification_scores(arrays["y_true"], arrays["y_score"], classes)
                                self._log_unit("linear", tags, scores, {"best_epoch": trained.best_epoch[h], "n_train": len(sp.train),
                                                                        "n_val": len(sp.val)},
                                               {**head_cfg.as_params(), "fraction_requested": fraction, "n_train_actual": len(sp.train)},
                                               arrays)
                                summary.units_run += 1
                                results.append((tags, arrays))
                    if not self.aggregate:
                        continue
                    results.sort(key=lambda r: (len(r[0]["fold"]), r[0]["fold"]))
                    prov = {k: ",".join(sorted({str(r[0].get(k, "")) for r in results})) for k in UNIT_PROVENANCE + ("head_hash",)}
                    self._aggregate("linear", group, results, classes, cfg, prov)

    def _run_zero_shot(self, cfg, method, tasks, seeds, summary: RunSummary) -> None:
        zs = cfg.zero_shot
        options = OmegaConf.to_container(cfg.encoder, resolve=True)
        for task in tasks or list(cfg.data.default_tasks):
            for seed in seeds:
                group = {"suite": "zero_shot", "method": method, "dataset": cfg.data.name, "task": task, "protocol": "fixed",
                         "fraction": 0.0, "seed": seed}
                if not create_encoder(method, **options).spec.has_text_tower:
                    self._not_applicable("zero_shot", group)
                    summary.not_applicable.append(method)
                    continue
                scorer = self.scorers(cfg, method, "fixed")[0]
                reader = self.reader(cfg)
                index = reader.index
                labels = index.task(task).labels
                classes = list(labels.columns)
                test = [r for r in labels.index if index.records.at[r, "split"] == zs.eval_split]
                scorer.handle.check_leakage(cfg.data.name, cfg.data.get("identity", cfg.data.name), test)
                tags = {**group, "fold": zs.eval_split, **self._provenance(cfg, scorer.handle, index), "prompts": Path(zs.prompts).name}
                tags["unit_key"] = "|".join(str(tags[t]) for t in ("suite", "method", "dataset", "task", "fold", "seed",
                                                                      "checkpoint_hash", "split_hash", "prompts"))
                summary.units_total += 1
                with self.store.claim("zero_shot", [tags["unit_key"]], method=method, dataset=cfg.data.name, task=task) as done:
                    if tags["unit_key"] in done:
                        summary.units_skipped += 1
                        arrays = self.store.predictions(done[tags["unit_key"]])
                    else:
                        self._require_computable([tags])
                        emb, _ = self.embeddings(cfg, scorer.handle)
                        rows = emb.rows(test)
                        enc = scorer.handle.encoder
                        import torch

                        with torch.no_grad():
                            encode = lambda texts: enc.encode_text(texts).float().cpu().numpy()
                            scores, decisions = zero_shot_predict(emb.aligned[rows], classes, load_prompts(zs.prompts, zs.lowercase), encode)
                        arrays = {"record_ids": np.array(test), "y_true": labels.loc[test].to_numpy().astype(np.int8),
                                  "y_score": scores.astype(np.float32), "y_pred": decisions.astype(np.int8)}
                        sc = classification_scores(arrays["y_true"], arrays["y_score"], classes, y_pred=decisions)
                        self._log_unit("zero_shot", tags, sc, {}, {"decision": zs.decision, "lowercase": zs.lowercase}, arrays)
                        summary.units_run += 1
                if self.aggregate:
                    prov = {k: tags[k] for k in UNIT_PROVENANCE}
                    self._aggregate("zero_shot", group, [(tags, arrays)], classes, cfg, prov)

    def _run_transfer(self, methods, directions, seeds, summary: RunSummary) -> None:
        tcfg = self.base.transfer
        maps = load_label_maps(tcfg.label_maps)
        pairs = [tuple(d.split(":")) for d in directions] if directions else list(DIRECTIONS)
        head_cfg = HeadConfig.from_mapping(OmegaConf.to_container(self.base.linear))
        for source, target in pairs:
            if (source, target) not in DIRECTIONS:
                raise ConfigError(f"unknown transfer direction {source}:{target}; use SOURCE:TARGET from {sorted(DIRECTIONS)}")
            sfam, tfam = tcfg.families[source], tcfg.families[target]
            scfg, tgt_cfg = self.dataset_cfg(sfam.dataset), self.dataset_cfg(tfam.dataset)
            classes = aligned_classes(maps, source, target)
            names = [c.name for c in classes]
            for method in methods:
                for seed in seeds:
                    group = {"suite": "transfer", "method": method, "dataset": source, "task": f"to_{target}", "protocol": "fixed",
                             "fraction": 1.0, "seed": seed}
                    scorer = self.scorers(scfg, method, "fixed")[0]
                    s_reader, t_reader = self.reader(scfg), self.reader(tgt_cfg)
                    s_idx, t_idx = s_reader.index, t_reader.index
                    s_lab = aligned_labels(s_idx.task(sfam.task).labels, classes, "source")
                    t_lab = aligned_labels(t_idx.task(tfam.task).labels.reindex(t_idx.records.index, fill_value=0), classes, "target")
                    t_ids = list(t_lab.index)
                    t_ident = tgt_cfg.data.get("identity", tfam.dataset)
                    if tcfg.exclude_pool_records and scorer.handle.pool_identity == t_ident:
                        t_ids = [r for r in t_ids if r not in scorer.handle.pool_ids]
                    scorer.handle.check_leakage(tfam.dataset, t_ident, t_ids)
                    tags = {**group, "fold": "target", **self._provenance(scfg, scorer.handle, s_idx), "source_dataset": sfam.dataset,
                            "target_dataset": tfam.dataset, "head_hash": _hash(head_cfg.as_params())}
                    tags["unit_key"] = "|".join(str(tags[t]) for t in ("suite", "method", "dataset", "task", "seed", "checkpoint_hash",
                                                                          "source_dataset", "target_dataset", "head_hash"))
                    summary.units_total += 1
                    with self.store.claim("transfer", [tags["unit_key"]], method=method, dataset=source, task=f"to_{target}") as done:
                        if tags["unit_key"] in done:
                            summary.units_skipped += 1
                            arrays = self.store.predictions(done[tags["unit_key"]])
                        else:
                            self._require_computable([tags])
                            s_emb, _ = self.embeddings(scfg, scorer.handle)
                            t_emb, _ = self.embeddings(tgt_cfg, scorer.handle)
                            split = s_idx.records.loc[s_lab.index, "split"]
                            train, val = list(s_lab.index[split == "train"]), list(s_lab.index[split == "val"])
                            y_src = s_lab.reindex(s_emb.record_ids, fill_value=0).to_numpy()
                            trained = train_heads(s_emb.emb, y_src, [(s_emb.rows(train), s_emb.rows(val))], head_cfg, seed=seed)
                            rows = t_emb.rows(t_ids)
                            arrays = {"record_ids": np.array(t_ids), "y_true": t_lab.loc[t_ids].to_numpy().astype(np.int8),
                                      "y_score": trained.predict(t_emb.emb[rows], 0).astype(np.float32)}
                            sc = classification_scores(arrays["y_true"], arrays["y_score"], names)
                            self._log_unit("transfer", tags, sc, {"n_train": len(train)}, {**head_cfg.as_params(),
                                           "aligned_classes": ";".join(f"{c.name}={'+'.join(c.source_codes)}->{'+'.join(c.target_codes)}" for c in classes)},
                                           arrays)
                            summary.units_run += 1
                    if self.aggregate:
                        prov = {k: tags[k] for k in UNIT_PROVENANCE + ("source_dataset", "target_dataset")}
                        self._aggregate("transfer", group, [(tags, arrays)], names, self.base, prov)

    def _run_textgen(self, cfg, method, seeds, summary: RunSummary) -> None:
        """Train projector + LoRA on the train split's instruction set, generate for the test split; >= 3 seeds."""
        import ast
        from scipy import stats

        from bench.suites.textgen import instruction_set, load_qa_json, train_and_generate
        from bench.textmetrics import all_metrics

        tg = OmegaConf.to_container(cfg.textgen, resolve=True)
        seeds = list(seeds or tg["seeds"])
        reader = self.reader(cfg)
        index = reader.index
        rec = index.records
        if tg.get("medtvt_qa"):
            examples = {e.record_id: e for e in load_qa_json(tg["medtvt_qa"])}
            train_ids = [r for r in rec.index[rec["split"] == "train"] if r in examples]
            test_ids = [r for r in rec.index[rec["split"] == "test"] if r in examples]
        else:
            statements = None
            if "scp_codes" in rec and cfg.data.reader in ("ptbxl", "ptbxl_1819"):
                from bench.data.ptbxl import read_statements

                root = Path(cfg.data.get("meta_root") or cfg.data.root)
                statements = read_statements(Path(cfg.data.get("statements") or root / "scp_statements.csv"))
            labelled = rec.index[rec["label_text"].fillna("").str.len() > 0]
            rng = np.random.default_rng(0)
            pick = lambda ids, n: sorted(rng.choice(ids, size=min(n, len(ids)), replace=False).tolist()) if n else list(ids)
            train_ids = pick([r for r in labelled if rec.at[r, "split"] == "train"], tg["train_size"])
            test_ids = pick([r for r in labelled if rec.at[r, "split"] == "test"], tg["test_size"])
            examples = {e.record_id: e for e in instruction_set(rec, train_ids + test_ids, tg["instructions"], statements,
                                                                 tg["superclass_names"])}
        group = {"suite": "textgen", "method": method, "dataset": cfg.data.name, "task": "interpretation", "protocol": "fixed",
                 "fraction": 1.0, "seed": ",".join(map(str, seeds))}
        if method == TEXTGEN_CONTROL:
            handle, emb = None, None
            prov = {"checkpoint_hash": "none", "checkpoint": "none", "pool": "none", "preset": "", "split_hash": index.split_hash(),
                    "code_version": code_version()}
        else:
            handle = self.scorers(cfg, method, "fixed")[0].handle
            handle.check_leakage(cfg.data.name, cfg.data.get("identity", cfg.data.name), test_ids)
            emb, _ = self.embeddings(cfg, handle)
            prov = self._provenance(cfg, handle, index)
        llm_name = tg["llm"]["kind"] if tg["llm"]["kind"] != "path" else Path(tg["llm"]["path"]).name
        settings = {k: tg[k] for k in ("prefix", "n_prefix", "epochs", "batch_size", "lr", "train_size", "test_size", "greedy")}
        per_seed = []
        for seed in seeds:
            tags = {**group, "seed": seed, "fold": "test", **prov, "llm": llm_name, "settings_hash": _hash(settings)}
            tags["unit_key"] = "|".join(str(tags[t]) for t in ("suite", "method", "dataset", "seed", "checkpoint_hash", "split_hash",
                                                                  "llm", "settings_hash"))
            summary.units_total += 1
            with self.store.claim("textgen", [tags["unit_key"]], method=method, dataset=cfg.data.name) as done:
                if tags["unit_key"] in done:
                    summary.units_skipped += 1
                    per_seed.append(dict(done[tags["unit_key"]].data.metrics))
                    continue
                self._require_computable([tags])
                e_tr = emb.emb[emb.rows(train_ids)] if emb is not None else None
                e_te = emb.emb[emb.rows(test_ids)] if emb is not None else None
                preds, losses = train_and_generate(tg, e_tr, [examples[r] for r in train_ids], e_te, [examples[r] for r in test_ids],
                                                   seed, progress=self.progress)
                refs = [examples[r].answer for r in test_ids]
                metrics = all_metrics(preds, refs, Path(cfg.paths.cache) / "nltk_data", tg["bertscore_model"], tg["bertscore_layer"])
                metrics.update({"train_loss_first": losses[0], "train_loss_last": losses[-1], "n_test": float(len(test_ids)),
                                "n_train": float(len(train_ids))})
                lines = "\n".join(json.dumps({"record_id": r, "instruction": examples[r].instruction, "reference": examples[r].answer,
                                               "prediction": p}) for r, p in zip(test_ids, preds)) + "\n"
                self.store.log_run("textgen", "unit", tags, metrics, {**settings, "bertscore_model": tg["bertscore_model"] or "all-MiniLM-L6-v2",
                                                                    "bertscore_layer": tg["bertscore_layer"]}, files={"generations.jsonl": lines})
                self._units_logged += 1
                summary.units_run += 1
                per_seed.append(metrics)
        if not self.aggregate:
            return
        agg = {}
        for key in ("bleu", "bleu_nltk", "meteor", "rouge_l_f1", "rouge_l_recall", "bertscore_f1"):
            vals = np.array([m[key] for m in per_seed], dtype=float)
            half = float(stats.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else float("nan")
            agg[f"{key}_mean"], agg[f"{key}_ci_half"] = float(vals.mean()), half
        agg["n_seeds"] = float(len(per_seed))
        agg_key = "|".join(str(group[k]) for k in ("suite", "method", "dataset", "task", "protocol", "fraction", "seed"))
        self.store.replace_aggregate("textgen", agg_key, {**group, **prov, "llm": llm_name, "applicable": "yes"}, agg)
