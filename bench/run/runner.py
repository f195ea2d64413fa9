"""`bench run`: the one generic executor, and the run context every suite computes through.

Flow (one way): dataset reader -> prepared-array cache -> encoder (checkpoint resolved, pretrained on
the leakage-safe pool if needed) -> embedding cache -> suite computation -> metrics -> MLflow.
A suite (bench/suites/base.py) only declares its groups of units, computes a unit and folds a group;
this module alone gives each unit its content-addressed key, claims it, skips it when it is already
FINISHED in MLflow (so a killed run resumes and an unchanged re-run computes nothing), logs it, and
writes each aggregate with exactly the unit keys it pooled.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import typer
from omegaconf import DictConfig, OmegaConf

from bench import code_version
from bench.config import check_workspace, ConfigError, encoder_options, load_config
from bench.data.cache import PreparedArrays, prepare, prepared_key, report_lines
from bench.data.leads import FULL_SET, lead_set
from bench.data.preprocess import PreprocessConfig, check_lead_set
from bench.data.registry import open_from_config
from bench.encoders.embeddings import (EncodeSettings, Embeddings, TokenFeatures, cached_embeddings, cached_token_features,
                                       embedding_key)
from bench.encoders import create_encoder
from bench.encoders.base import needs_pretraining
from bench.encoders.loading import EncoderHandle, load_encoder
from bench.run.store import MissingUnits, ResultStore
from bench.suites.base import LATER_PROVENANCE, UNIT_PROVENANCE, Group, Request, Suite, Unit, UnitResult, content_hash, get_suite, unit_key



def portable_path(path, cache) -> str:
    """A checkpoint as provenance shows it, never one machine's absolute path: relative to the cache
    (``cache:checkpoints/...``), or ``external:<file name>`` for a file given with --ckpt (its content hash
    is the checkpoint_hash beside it)."""
    from pathlib import Path

    if path is None:
        return "untrained"
    path, cache = Path(path).resolve(), Path(cache).resolve()
    return f"cache:{path.relative_to(cache).as_posix()}" if path.is_relative_to(cache) else f"external:{path.name}"


@dataclass
class RunSummary:
    units_total: int = 0
    units_skipped: int = 0
    units_run: int = 0
    seconds_computing: float = 0.0
    not_applicable: list[str] = field(default_factory=list)


def unit_line(unit: Unit, result: UnitResult, summary: RunSummary, seconds: float) -> str:
    """One line as a unit lands: where the run is (units done of those planned so far, time left at this pace), what the
    unit is and its headline number."""
    t = unit.tags
    done = summary.units_run + summary.units_skipped
    left = max(0, summary.units_total - done) * (summary.seconds_computing / max(1, summary.units_run))
    where = "/".join(str(t[k]) for k in ("dataset", "task") if t.get(k) is not None)
    detail = " ".join(f"{k} {t[k]}" for k in ("protocol", "mode", "fraction", "fold", "seed", "condition", "direction")
                      if t.get(k) not in (None, "", "linear"))
    metric = next((f"{name} {result.metrics[name]:.3f}" for name in ("auroc", "r2", "mae", "bleu") if name in result.metrics), "")
    pace = f"{seconds:.1f} s" + (f", ~{left / 60:.1f} min for the {summary.units_total - done} planned after it" if left else "")
    return f"[unit {done} of {summary.units_total} planned so far, {pace}] {t.get('method')} {where} {detail}: {metric}".rstrip(": ")


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
        # a dataset's own options (data.*) apply to the datasets a run names (dataset_cfg), not to the default one
        self.base = load_config([o for o in self.overrides if not o.lstrip("+~").startswith("data.")])
        if str(self.base.tracking.uri).startswith(f"sqlite:///{self.base.paths.workspace}"):
            check_workspace(self.base)  # an unusable workspace is one line before any work
        self._store: ResultStore | None = None
        self._embeddings: dict[str, Embeddings] = {}
        self._readers: dict[str, Any] = {}
        self._units_logged = 0
        self._reported: set[str] = set()

    @property
    def store(self) -> ResultStore:
        """The MLflow store, opened when a unit is first looked up or logged (embedding alone writes no store)."""
        if self._store is None:
            self._store = ResultStore.from_config(self.base)
        return self._store

    # ---- the run context suites compute through ---------------------------------------------------
    def dataset_cfg(self, dataset: str) -> DictConfig:
        return load_config(self.overrides, data=dataset)

    def reader(self, cfg: DictConfig):
        """One reader (and parsed index) per resolved data config for the whole run."""
        key = json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True, default=str)
        if key not in self._readers:
            self._readers[key] = open_from_config(cfg)
        return self._readers[key]

    def scorers(self, cfg: DictConfig, method: str, protocol: str, untrained: bool = False, seed: int = 0) -> list[Scorer]:
        """The scorers of ``_scorers``; under an evaluation lead set, an encoder whose contract takes subsets natively
        is told which leads it has (``Encoder.take_leads``: its contract, hence every key of its numbers, names them);
        the others read the absent leads as zeros (``preprocess_config``)."""
        scorers = self._scorers(cfg, method, protocol, untrained, seed)
        chosen = str(cfg.preprocess.get("lead_set", FULL_SET))
        if chosen != FULL_SET:
            keep = set(lead_set(chosen))
            for scorer in scorers:
                encoder = scorer.handle.encoder
                if encoder.contract.lead_subset == "native" and keep & set(encoder.contract.leads):
                    encoder.take_leads([lead for lead in encoder.contract.leads if lead in keep])
        return scorers

    def _scorers(self, cfg: DictConfig, method: str, protocol: str, untrained: bool = False, seed: int = 0) -> list[Scorer]:
        """Checkpoint(s) for ``method``: --ckpt, an untrained control, or the small preset pretrained
        on the leakage-safe pool(s) of ``protocol`` (cached); ``untrained``: the architecture's seeded initial weights
        whatever the method (training from scratch). ``seed`` is the run seed: pretraining and initial weights use
        ``pretrain.seed + seed``, so seed 0 is the configured pretraining and every run seed its own (a released
        checkpoint is the same whatever the seed)."""
        if seed:
            cfg = cfg.copy()
            cfg.pretrain.seed = int(cfg.pretrain.seed) + int(seed)
        options = encoder_options(cfg)
        identity = {cfg.data.name: self.identity(cfg)}
        if untrained:
            return [Scorer(load_encoder(method, options, None, seed=int(cfg.pretrain.seed)))]
        if method in self.ckpts:
            from bench.encoders.weights import resolve_checkpoint

            spec = str(self.ckpts[method])
            handle = load_encoder(method, options, resolve_checkpoint(spec, cfg.paths.cache), identity_of=identity,
                                  allow_contamination=bool(cfg.run.get("allow_contamination", False)),
                                  trust_code=bool(cfg.run.get("trust_checkpoint_code", False)))
            handle.source = spec if spec.startswith(("hf:", "url:")) else ""
            return [Scorer(handle)]
        if not needs_pretraining(create_encoder(method, **options)):
            return [Scorer(load_encoder(method, options, None, seed=int(cfg.pretrain.seed)))]
        if not cfg.data.get("auto_pretrain"):
            raise ConfigError(f"no checkpoint for {method} on {cfg.data.name} (fix: pass --ckpt {method}=/path/to/encoder.pt; "
                              f"auto-pretraining is only on for the demo data and ptbxl_1819)")
        from bench.encoders.pretrain import run_pretraining

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

    def identity(self, cfg: DictConfig) -> str:
        """Which published dataset the records are: the dataset's declared identity; for a generic folder of records
        (``identity: wfdb``) whose records all come from one recognised source (CPSC2018 by its record names, ...), that
        source, so its upstream rules (MERL's and MELP's CPSC2018 window) and contamination checks apply to it too."""
        declared = str(cfg.data.get("identity", cfg.data.name))
        if declared != "wfdb":
            return declared
        records = self.reader(cfg).index.records
        sources = set(records["source"]) if "source" in records else set()
        return sources.pop() if len(sources) == 1 and "unknown" not in sources else declared

    def preprocess_config(self, cfg: DictConfig, handle: EncoderHandle) -> PreprocessConfig:
        """The shared preprocessing with the encoder's input contract applied (rate, samples, leads, resampler); an
        encoder that reads leads the dataset lacks is refused here, before anything is prepared."""
        contract = handle.encoder.spec.contract
        pcfg = PreprocessConfig.from_mapping(contract.preprocess_mapping(OmegaConf.to_container(cfg.preprocess),
                                                                         self.identity(cfg)))
        chosen = str(cfg.preprocess.get("lead_set", FULL_SET))
        check_lead_set(pcfg, self.reader(cfg).index.leads, cfg.data.name, handle.method)
        if chosen != FULL_SET:  # an evaluation lead set: the encoder's other leads are zeros
            keep = lead_set(chosen)
            if not set(keep) & set(pcfg.leads):
                raise ConfigError(f"lead set {chosen} ({', '.join(keep)}) shares no lead with {handle.method}'s input "
                                  f"({', '.join(pcfg.leads)}): there would be nothing to read")
            pcfg = replace(pcfg, keep_leads=tuple(lead for lead in pcfg.leads if lead in keep))
        return pcfg

    def prepared(self, cfg: DictConfig, handle: EncoderHandle, raw: bool = False) -> PreparedArrays:
        """The encoder's prepared arrays; ``raw``: without the contract's filters and scaling where the preprocessing
        runs them (``steps_prepared``), for a suite that changes the recorded signal first (robustness)."""
        pcfg = self.preprocess_config(cfg, handle)
        if raw:
            pcfg = replace(pcfg, record_steps=None, window_steps=None)
        out = prepare(self.reader(cfg), pcfg, cfg.paths.cache,
                      on_error=cfg.data.get("on_error", "raise"), workers=cfg.data.get("workers"), progress=self.progress)
        if out.key not in self._reported:  # once per prepared set: records left out and doubtful signals
            self._reported.add(out.key)
            for line in report_lines(out.manifest):
                self.echo(f"note: {cfg.data.name}: {line}")
        return out

    def embedding_key(self, cfg: DictConfig, handle: EncoderHandle) -> str:
        """The embedding cache key (weights, data options, preprocessing, input contract, encoder options),
        known without encoding anything: the part of every unit key that names its inputs."""
        return embedding_key(handle, prepared_key(self.reader(cfg), self.preprocess_config(cfg, handle)),
                             EncodeSettings.from_config(cfg).precision)

    def embeddings(self, cfg: DictConfig, handle: EncoderHandle) -> tuple[Embeddings, Any]:
        key = self.embedding_key(cfg, handle)
        reader = self.reader(cfg)
        if key not in self._embeddings:
            self._embeddings[key] = cached_embeddings(handle, self.prepared(cfg, handle), cfg.paths.cache, reader.index.units,
                                                      EncodeSettings.from_config(cfg), progress=self.progress)
        return self._embeddings[key], reader

    def token_features(self, cfg: DictConfig, handle: EncoderHandle) -> TokenFeatures:
        """The frozen encoder's token features of the dataset's records (cached like the embeddings)."""
        return cached_token_features(handle, self.prepared(cfg, handle), cfg.paths.cache, EncodeSettings.from_config(cfg),
                                     progress=self.progress)

    def provenance(self, cfg: DictConfig, handle: EncoderHandle | None, index) -> dict[str, Any]:
        """The tags every unit row carries: weights, split, code, pool, preset, input contract, corpora."""
        base = {"split_hash": index.split_hash(), "code_version": code_version(),
                "synthetic": "yes" if cfg.data.get("demo") else "no"}  # generated records: every row they touch says so
        if handle is None:  # a suite's control without an encoder (e.g. a text-only control)
            return {**base, "checkpoint_hash": "none", "checkpoint": "none", "checkpoint_sha256": "none", "pool": "none", "preset": "",
                    "pretrain_budget": "none",
                    "input_contract": "none", "input": "none", "corpora": "none", "contaminated": "no", "pretrain_text": "none",
                    "trust_checkpoint_code": "no"}
        contract = handle.encoder.contract
        return {**base, "checkpoint_hash": handle.checkpoint_hash,
                "checkpoint": handle.source or portable_path(handle.checkpoint, cfg.paths.cache),
                "checkpoint_sha256": handle.file_sha256 or "none", "trust_checkpoint_code": "yes" if handle.trusted_code else "no",
                "pretrain_budget": handle.budget,
                "pretrain_text": handle.pretrain_text,
                "pool": f"{handle.pool_dataset}:{handle.pool_folds}" if handle.pool_dataset else "none",
                "preset": encoder_options(cfg).get("preset", ""),
                "input_contract": contract.key(), "input": contract.describe()[:500],
                "corpora": ",".join(handle.corpora) or "none",
                "contaminated": "yes" if handle.contaminated(self.identity(cfg)) else "no"}

    def unit_results(self, suite: str, keys: Sequence[str], **tags: str) -> list[UnitResult]:
        """Finished units of ``suite`` by exact key (a suite that builds on another's units reads them here)."""
        return [self._stored_result(run, True) for run in self.store.units_by_key(suite, keys, **tags)]

    # ---- the executor ----------------------------------------------------------------------------
    def run(self, suite: str, methods: Sequence[str], datasets: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
            protocols: Sequence[str] | None = None, fractions: Sequence[float] | None = None,
            seeds: Sequence[int] | None = None, directions: Sequence[str] | None = None,
            modes: Sequence[str] | None = None) -> RunSummary:
        request = Request(list(methods), list(datasets) if datasets else None, list(tasks) if tasks else None,
                          list(protocols) if protocols else None, [float(f) for f in fractions] if fractions else None,
                          [int(s) for s in seeds] if seeds else None, list(directions) if directions else None,
                          list(modes) if modes else None)
        return self.execute(get_suite(suite), request)

    def execute(self, suite: Suite, request: Request) -> RunSummary:
        leads = str(self.base.preprocess.get("lead_set", FULL_SET))
        if leads != FULL_SET and not suite.takes_lead_sets:
            raise ConfigError(f"the {suite.name} suite does not name a lead set in its cells, so preprocess.lead_set={leads} "
                              f"would be tabled as 12 leads (fix: --leads with --suite linear, any mode)")
        summary = RunSummary()
        cells: dict[str, list[tuple[Group, list]]] = {}  # a cell's groups over the run's seeds
        for group in suite.groups(self, request):
            group.identity = {"suite": suite.name, **group.identity}
            if not group.applicable:
                summary.not_applicable.append(f"{group.identity['method']} ({group.why_not})")
                if self.aggregate:
                    self.store.replace_aggregate(suite.name, group.agg_key, {**group.identity, "applicable": "no", "why_not": group.why_not}, {})
                continue
            units = [u for u in group.units if self.folds is None or str(u.tags.get("fold")) in self.folds]
            for u in units:
                u.key = unit_key(suite, u.material)
                u.tags = {**group.identity, **u.tags, "unit_key": u.key, "suite_version": suite.version}
            summary.units_total += len(units)
            results = self._collect(suite, group, units, summary)
            if self.aggregate and results:
                self._write_aggregate(suite, group, results)
                if suite.pools_seeds:
                    cells.setdefault(group.cell, []).append((group, results))
        for groups in cells.values():
            if len({str(g.identity["seed"]) for g, _ in groups}) > 1:
                first = groups[0][0]
                self._write_aggregate(suite, Group({**first.identity, "seed": "all"}, state=first.state),
                                      [r for _, results in groups for r in results])
        return summary

    def _collect(self, suite: Suite, group: Group, units: list[Unit], summary: RunSummary) -> list[tuple[Unit, UnitResult]]:
        """Each unit's result: reloaded when FINISHED in MLflow, computed (and logged) otherwise."""
        ident = group.identity
        with self.store.claim(suite.name, [u.key for u in units], method=str(ident["method"]), dataset=str(ident["dataset"])) as done:
            todo = [u for u in units if u.key not in done]
            summary.units_skipped += len(units) - len(todo)
            if todo and not self.compute:
                keys = "\n  ".join(u.key for u in todo[:5])
                raise MissingUnits(f"{len(todo)} unit(s) are not in {self.store.uri} after the launcher finished, e.g.\n  {keys}\n"
                                   f"(fix: read the job logs under the sweep folder, then re-run the same command: "
                                   f"finished units are skipped)")
            began = time.perf_counter()
            computed = dict(zip((u.key for u in todo), suite.compute(self, group, todo))) if todo else {}
            took = (time.perf_counter() - began) / max(1, len(todo))
            for u in todo:
                self._log_unit(suite, u, computed[u.key])
                summary.units_run += 1
                summary.seconds_computing += took
                if self.progress:
                    self.echo(unit_line(u, computed[u.key], summary, took))
            return [(u, computed[u.key] if u.key in computed else self._stored_result(done[u.key], suite.stores_predictions))
                    for u in units]

    def _stored_result(self, run, with_predictions: bool) -> UnitResult:
        return UnitResult(dict(run.data.metrics), dict(run.data.params), self.store.predictions(run) if with_predictions else None,
                          tags=dict(run.data.tags))

    def _log_unit(self, suite: Suite, unit: Unit, result: UnitResult) -> None:
        files = {**(result.files or {}), "unit.json": json.dumps({"unit_key": unit.key, "suite": suite.name, "version": suite.version,
                                                                  "material": unit.material}, indent=1, sort_keys=True, default=str)}
        self.store.log_run(suite.name, "unit", {**unit.tags, **result.tags}, result.metrics, result.params, result.arrays, files)
        self._units_logged += 1
        if self.after_unit is not None:
            self.after_unit(self._units_logged)

    def _write_aggregate(self, suite: Suite, group: Group, results: list[tuple[Unit, UnitResult]]) -> None:
        record = aggregate_record(suite, group, results, suite.aggregate(self, group, results))
        self.store.replace_aggregate(suite.name, group.agg_key, record["tags"], record["metrics"])


def pooled_provenance(unit_tags: list[dict]) -> dict[str, str]:
    """Each provenance tag over the units, as logged with them (a unit reloaded from the store keeps the code version,
    checkpoint, ... that computed it, not the re-aggregating process's): the sorted distinct values, comma-joined. A tag
    none of the units carries (one added after they were computed) is left out rather than written empty."""
    return {k: ",".join(sorted({str(t.get(k, "")) for t in unit_tags})) for k in UNIT_PROVENANCE
            if k not in LATER_PROVENANCE or any(k in t for t in unit_tags)}


def repool_provenance(store, suites: list[str]) -> list[str]:
    """Aggregates whose provenance tags differ from what their units say (written by a re-aggregating process before
    pooled_provenance read the stored units' tags), rewritten with the same metrics and the units' provenance; returns
    their keys. Numbers are untouched: only tags the units already hold are carried over."""
    fixed = []
    for suite in suites:
        units = store.finished_units(suite)  # once per suite: an aggregate names some of them
        for run in store.aggregate_runs(suite):
            tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
            keys = [k for k in tags.get("unit_keys", "").split(",") if k]
            if not keys or tags.get("applicable") == "no":
                continue
            missing = [k for k in keys if k not in units]
            if missing:
                raise LookupError(f"{suite} aggregate {tags.get('agg_key')}: unit {missing[0]} is not in {store.uri} (fix: re-run the suite)")
            pooled = pooled_provenance([dict(units[k].data.tags) for k in keys])
            if any(tags.get(k, "") != v for k, v in pooled.items()):
                store.replace_aggregate(suite, tags["agg_key"], {**tags, **pooled}, dict(run.data.metrics))
                fixed.append(tags["agg_key"])
    return fixed


def aggregate_record(suite: Suite, group: Group, results: list[tuple[Unit, UnitResult]], agg) -> dict[str, dict]:
    """An aggregate's tags and metrics as logged: the cell, its units' provenance, exactly the unit keys it
    pooled (`bench verify` rebuilds it the same way from the bundle)."""
    keys = sorted(u.key for u, _ in results)
    pooled = pooled_provenance([{**u.tags, **r.tags} for u, r in results])
    tags = {**group.identity, **pooled, **agg.tags, "unit_keys": ",".join(keys), "unit_set": content_hash(keys),
            "suite_version": suite.version, "applicable": "yes"}
    return {"tags": {k: str(v) for k, v in tags.items()}, "metrics": dict(agg.metrics)}
