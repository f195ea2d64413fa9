"""The results bundle (``results/bundle``): what every published number is computed from, small enough to commit.

- ``manifest.json``: every aggregate (its tags, metrics, unit keys and the hash of its inputs), every unit (its
  key, tags, metrics, params and the hash of its predictions), the publication settings, the sha256 of every
  file of the bundle, and the pretrained checkpoints the rows name with their hashes (the weights themselves
  are not in the bundle: model weights are never committed; `scripts/republish.sh run` regenerates them,
  deterministically on CPU, and their file hash must equal ``checkpoint_hash``);
- ``predictions/<suite>.parquet``: the units' per-record test predictions, one row per unit and record
  (``y_true`` / ``y_score`` / ``y_pred`` as lists over the classes).

``bench verify results/`` (``verify``) recomputes, from the bundle alone, each unit's metrics from its predictions,
each aggregate from its units with the suite's own aggregation, and then the leaderboard, every table and the
page with the same code as `bench publish`; any difference fails, naming the row, table line or file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from bench.encoders.checkpoint import file_hash
from bench.workers import available_cores, chunks, fork_map
from bench.publish.publication import LEADERBOARD, PublishSettings, readme_path, write_publication

BUNDLE = "bundle"
MANIFEST = "manifest.json"
FORMAT = 1
DROPPED_TAGS = ("worker",)  # host:pid of the process that logged the run: machine facts, not provenance
README_TEMPLATE = "readme_template.md"
#: what `bench publish` writes into the publication folder (everything else there, e.g. perf.md, is kept as it is)
PUBLISHED = ("README.md", "bundle", "index.html", "leaderboard.csv", "tables")
#: aggregate tags a recomputation keeps as they are: the store's run kind, and who submitted a row (bench leaderboard add)
KEPT_TAGS = ("kind", "submitted", "submitter", "submission_command", "submission")
SUBMISSIONS = "submissions"  # bundle/submissions/<hash>.json: each added submission's submission.json, as it came


class BundleError(RuntimeError):
    """The bundle is missing, damaged, or disagrees with what it recomputes."""


def arrays_hash(arrays: dict[str, np.ndarray]) -> str:
    """Content hash of a unit's arrays (names, dtypes, shapes and bytes), independent of how they are stored."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes() if a.dtype.kind != "U" else "\x1f".join(a.ravel().tolist()).encode())
    return h.hexdigest()[:16]


def _clean_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(tags.items()) if not k.startswith("mlflow.") and k not in DROPPED_TAGS}


# ---- predictions <-> parquet ---------------------------------------------------------------------------
def _per_record(arrays: dict[str, np.ndarray]) -> list[str]:
    n = len(arrays["record_ids"])
    return [k for k, a in arrays.items() if k != "record_ids" and a.ndim >= 1 and a.shape[0] == n]


def _predictions_frame(units: list[tuple[str, dict[str, np.ndarray]]]) -> pd.DataFrame:
    frames = []
    for key, arrays in units:
        cols = {"unit_key": key, "record_id": arrays["record_ids"].astype(str)}
        for name in _per_record(arrays):
            a = arrays[name]
            cols[name] = list(a) if a.ndim > 1 else a
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _split_validation(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A unit's test arrays, and its validation predictions (``val_*``) named as a set of their own."""
    val = {k.removeprefix("val_"): a for k, a in arrays.items() if k.startswith("val_")}
    return {k: a for k, a in arrays.items() if not k.startswith("val_")}, (val if "record_ids" in val else {})


def _unit_arrays(rows: pd.DataFrame, entry: dict) -> dict[str, np.ndarray]:
    """A unit's arrays back from its parquet rows and its manifest entry (dtypes, per-unit vectors)."""
    dtypes = entry["dtypes"]
    arrays = {"record_ids": rows["record_id"].to_numpy().astype(dtypes["record_ids"])}
    for name in entry["per_record"]:
        col = rows[name].to_numpy()
        arrays[name] = (np.stack([np.asarray(v) for v in col]) if len(col) and isinstance(col[0], (list, np.ndarray))
                        else np.asarray(col)).astype(dtypes[name])
    for name, values in entry["vectors"].items():
        arrays[name] = np.asarray(values).astype(dtypes[name])
    return arrays


# ---- export ------------------------------------------------------------------------------------------
def export_bundle(store, results: Path, suites: Iterable[str], settings: PublishSettings,
                  echo: Callable[[str], None] = lambda _: None) -> Path:
    """Write ``results/bundle`` from an MLflow ``store``: the aggregates of ``suites``, exactly the units they
    pooled, their predictions and the names and hashes of the bench-pretrained checkpoints they used. Written
    beside and swapped in at the end, so a failed export leaves the previous bundle whole."""
    out = Path(results) / BUNDLE
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=results))
    try:
        manifest: dict[str, Any] = {"format": FORMAT, "settings": {**settings.__dict__, "readme": README_TEMPLATE if settings.readme else ""},
                                    "aggregates": [], "units": [], "checkpoints": [], "files": {}}
        if settings.readme:  # the README's template travels with the bundle, so verify renders it from the bundle alone
            shutil.copyfile(readme_path(settings.readme), tmp / README_TEMPLATE)
        for suite in suites:
            _export_suite(store, suite, manifest, tmp)
        manifest["checkpoints"] = named_checkpoints(manifest["units"])
        manifest["code_versions"] = sorted({u["tags"].get("code_version", "") for u in manifest["units"]})
        write_manifest(tmp, manifest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo(f"bundle: {len(manifest['aggregates'])} aggregates, {len(manifest['units'])} units, "
         f"{len(manifest['checkpoints'])} checkpoints -> {out} ({sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) / 1e6:.1f} MB)")
    return out


def write_combined(house: "BundleStore", other: "BundleStore", manifest: dict, folder: Path, dropped: Iterable[str] = ()) -> Path:
    """``folder``/bundle holding ``manifest``'s units: the prediction rows of ``house`` (less those of the ``dropped``
    unit keys) then those of ``other``, the README template and the submission records ``house`` carries."""
    out = folder / BUNDLE  # may hold files already (a submission's record): they are hashed with the rest
    (out / "predictions").mkdir(parents=True)
    if (house.root / README_TEMPLATE).is_file():
        shutil.copyfile(house.root / README_TEMPLATE, out / README_TEMPLATE)
    if (house.root / SUBMISSIONS).is_dir():
        shutil.copytree(house.root / SUBMISSIONS, out / SUBMISSIONS, dirs_exist_ok=True)
    dropped = set(dropped)
    names = {p.name for root in (house.root, other.root) for p in (root / "predictions").glob("*.parquet")}
    for name in sorted(names):
        frames = [pd.read_parquet(root / "predictions" / name) for root in (house.root, other.root) if (root / "predictions" / name).is_file()]
        if dropped and (house.root / "predictions" / name).is_file():
            frames[0] = frames[0][~frames[0]["unit_key"].isin(dropped)]
        pd.concat(frames, ignore_index=True).to_parquet(out / "predictions" / name, index=False, compression="zstd")
    manifest["checkpoints"] = named_checkpoints(manifest["units"])
    manifest["code_versions"] = sorted({u["tags"].get("code_version", "") for u in manifest["units"]})
    write_manifest(out, manifest)
    return out


def superseded(house: "BundleStore", rerun: "BundleStore", folder: Path) -> tuple[int, int]:
    """``folder``/bundle: ``house``'s bundle with every aggregate that ``rerun`` has again (the same ``agg_key``: suite,
    method, dataset, task, protocol, fraction, seed, mode) replaced by the rerun's, with its units and predictions; the
    house's units no remaining aggregate pools are left out. Returns (aggregates replaced, aggregates added)."""
    again = {a["tags"]["agg_key"] for a in rerun.manifest["aggregates"]}
    kept = [a for a in house.manifest["aggregates"] if a["tags"]["agg_key"] not in again]
    pooled = {(a["suite"], k) for a in kept for k in pooled_keys(a["tags"])}
    units = [u for u in house.manifest["units"] if (u["suite"], u["key"]) in pooled]
    dropped = {u["key"] for u in house.manifest["units"]} - {u["key"] for u in units}
    manifest = {**house.manifest, "aggregates": kept + _pool_seeds(rerun.manifest["aggregates"], kept),
                "units": units + rerun.manifest["units"]}
    write_combined(house, rerun, manifest, folder, dropped)
    replaced = len(house.manifest["aggregates"]) - len(kept)
    return replaced, len(again) - replaced


def _pool_seeds(aggregates: list[dict], kept: list[dict]) -> list[dict]:
    """A rerun's cells over their seeds (``seed="all"``), each pooling the units of every per-seed cell the combined
    publication holds (the rerun's and the ``kept`` ones): a store that ran seeds 1 and 2 beside a bundle's seed 0
    gives the cell over 0, 1 and 2, not over the two it ran (its aggregate is then recomputed from those units)."""
    per_seed: dict[str, set[str]] = {}  # Group.cell (the table cell whatever the seed) -> the units of its seeds
    for a in kept + aggregates:
        if a["tags"]["seed"].isdigit():
            per_seed.setdefault(_group(a["tags"]).cell, set()).update(pooled_keys(a["tags"]))
    out = []
    for a in aggregates:
        keys = per_seed.get(_group(a["tags"]).cell) if a["tags"]["seed"] == "all" else None
        out.append({**a, "tags": {**a["tags"], "unit_keys": ",".join(sorted(keys))}} if keys else a)
    return out


def superseding_store(results: Path, rerun_stores: list, suites: Iterable[str], workdir: Path,
                      echo: Callable[[str], None] = lambda _: None) -> "BundleStore":
    """What `bench publish --from-bundle results --with-runs URI [--with-runs URI ...]` publishes: the bundle of
    ``results`` with the cells each store ran again replacing its own (``superseded``, in order), every aggregate
    recomputed by this code. ``workdir`` holds the combined bundles and must outlive the store."""
    suites = list(suites)
    current = Path(results)
    for i, rerun_store in enumerate(rerun_stores):
        (workdir / f"rerun{i}").mkdir(parents=True)
        export_bundle(rerun_store, workdir / f"rerun{i}", suites, PublishSettings(readme=""))
        replaced, added = superseded(BundleStore.open(current), BundleStore.open(workdir / f"rerun{i}"), workdir / f"combined{i}")
        echo(f"with-runs: {replaced} aggregates of {results} replaced and {added} added by {rerun_store.uri}")
        current = workdir / f"combined{i}"
    return BundleStore.recomputed(current, progress=True)


def write_manifest(folder: Path, manifest: dict) -> None:
    """``folder``/manifest.json with ``files``: the sha256 of every file the bundle folder holds (written last)."""
    manifest["files"] = {p.relative_to(folder).as_posix(): file_hash(p, 64) for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")


def _export_suite(store, suite: str, manifest: dict, tmp: Path) -> None:
    from bench.suites.base import get_suite

    stores_predictions = get_suite(suite).stores_predictions  # subgroup units log a table file, no predictions
    aggregates = store.aggregate_runs(suite)
    keys = sorted({k for run in aggregates for k in pooled_keys(run.data.tags)})
    runs = dict(zip(keys, store.units_by_key(suite, keys))) if keys else {}
    predictions, validation = [], []
    for key in keys:
        run = runs[key]
        entry = {"suite": suite, "key": key, "tags": _clean_tags(run.data.tags), "metrics": dict(sorted(run.data.metrics.items())),
                 "params": dict(sorted(run.data.params.items())), "predictions": None}
        arrays = store.predictions(run) if stores_predictions else None
        if arrays is not None:
            test, val = _split_validation(arrays)
            per_record = _per_record(test)
            entry.update({"predictions": arrays_hash(arrays), "per_record": per_record,
                          "dtypes": {k: a.dtype.str for k, a in arrays.items()},
                          "vectors": {k: a.tolist() for k, a in test.items() if k != "record_ids" and k not in per_record}})
            if val:
                entry["validation"] = _per_record(val)
                validation.append((key, val))
            predictions.append((key, test))
        manifest["units"].append(entry)
    by_key = {u["key"]: u for u in manifest["units"] if u["suite"] == suite}
    for run in aggregates:
        tags = _clean_tags(run.data.tags)
        unit_keys = pooled_keys(tags)
        manifest["aggregates"].append({"suite": suite, "tags": tags, "metrics": dict(sorted(run.data.metrics.items())),
                                       "inputs": inputs_hash([by_key[k] for k in unit_keys])})
    if predictions:
        (tmp / "predictions").mkdir(exist_ok=True)
        _predictions_frame(predictions).to_parquet(tmp / "predictions" / f"{suite}.parquet", index=False, compression="zstd")
    if validation:
        _predictions_frame(validation).to_parquet(tmp / "predictions" / f"{suite}.val.parquet", index=False, compression="zstd")


def pooled_keys(tags: dict) -> list[str]:
    """The unit keys an aggregate's tags name (``unit_keys``, comma-separated)."""
    return [k for k in tags.get("unit_keys", "").split(",") if k]


def _group(tags: dict):
    """The ``Group`` an aggregate's tags name (its identity as the suite formed it)."""
    from bench.suites.base import Group

    identity = {k: _typed(k, tags[k]) for k in ("suite", "method", "dataset", "task", "protocol", "fraction", "seed")}
    for optional in ("mode", "val_fraction", "leads"):  # the linear suite's mode, validation part and lead set
        if optional in tags:
            identity[optional] = tags[optional]
    return Group(identity)


def inputs_hash(units: list[dict]) -> str:
    """What an aggregate was computed from: its units' keys, metrics and prediction hashes."""
    return hashlib.sha256(json.dumps([[u["key"], u["metrics"], u["predictions"]] for u in units], sort_keys=True).encode()).hexdigest()[:16]


def named_checkpoints(units: list[dict]) -> list[dict[str, str]]:
    """The bench-pretrained checkpoints (``cache:...``) the units name, with the hash a regenerated file must have."""
    named = sorted({(u["tags"].get("checkpoint", ""), u["tags"].get("checkpoint_hash", "")) for u in units})
    return [{"checkpoint": where, "checkpoint_hash": digest} for where, digest in named if where.startswith("cache:")]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow")
    suite: str
    tags: dict[str, str]
    metrics: dict[str, Optional[float]]


class _Unit(_Entry):
    key: str
    params: dict[str, str]
    predictions: Optional[str]


class _Aggregate(_Entry):
    inputs: str


class _Manifest(BaseModel):
    """The declared shape of ``bundle/manifest.json``: what `bench verify` reads, checked before it reads it."""

    model_config = ConfigDict(extra="allow")
    format: int
    settings: dict[str, Any]
    aggregates: list[_Aggregate]
    units: list[_Unit]
    checkpoints: list[dict[str, str]]
    files: dict[str, str]


def _check_manifest(path: Path, manifest: dict) -> None:
    try:
        _Manifest.model_validate(manifest)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise BundleError(f"{path}: malformed manifest at {where}: {error['msg'].lower()} (fix: restore the bundle, e.g. "
                          f"`git checkout results/`, or publish again)") from None


# ---- reading: a store over the bundle ----------------------------------------------------------------
@dataclass
class BundleRun:
    """The parts of an MLflow run that tables, comparisons and aggregation read."""

    key: str
    tags: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> "BundleRun":
        return self

    @property
    def info(self) -> SimpleNamespace:
        return SimpleNamespace(run_id=self.key, status="FINISHED")


class BundleStore:
    """The read side of ``ResultStore`` over a bundle (or over aggregates recomputed from it)."""

    forkable = True  # plain files and memory: forked processes may read it (bench.workers)

    def __init__(self, root: Path, manifest: dict, aggregates: list[dict] | None = None):
        self.root, self.manifest = Path(root), manifest
        self.uri = f"bundle:{BUNDLE}"
        self._aggregates = manifest["aggregates"] if aggregates is None else aggregates
        self._units = {(u["suite"], u["key"]): u for u in manifest["units"]}
        self._frames: dict[str, tuple[pd.DataFrame, dict[str, np.ndarray]]] = {}

    @classmethod
    def open(cls, results: Path) -> "BundleStore":
        path = Path(results) / BUNDLE / MANIFEST
        if not path.is_file():
            raise BundleError(f"{path}: no results bundle (fix: `bench publish` writes it from the MLflow store)")
        try:
            manifest = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path}: not a JSON manifest ({exc}) (fix: restore the bundle, e.g. `git checkout results/`, "
                              f"or publish again)") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise BundleError(f"{path}: bundle format {found!r}, this bench reads {FORMAT}")
        _check_manifest(path, manifest)
        return cls(Path(results) / BUNDLE, manifest)

    def aggregates(self, suites: Iterable[str]) -> pd.DataFrame:
        wanted = set(suites)
        return pd.DataFrame([{**a["tags"], **a["metrics"]} for a in self._aggregates if a["suite"] in wanted])

    def aggregate_tags(self, suite: str, agg_key: str) -> dict[str, str] | None:
        hits = [a["tags"] for a in self._aggregates if a["suite"] == suite and a["tags"].get("agg_key") == agg_key]
        return dict(hits[0]) if hits else None

    def entry(self, suite: str, key: str) -> dict:
        """A unit's manifest entry (tags, metrics, params, prediction hash and layout)."""
        entry = self._units.get((suite, key))
        if entry is None:
            raise LookupError(f"{suite} unit {key} is named by an aggregate but is not in the bundle")
        return entry

    def unit(self, suite: str, key: str) -> BundleRun:
        entry = self.entry(suite, key)
        return BundleRun(key, entry["tags"], entry["metrics"], entry["params"])

    def units_by_key(self, suite: str, unit_keys: Iterable[str], **_tags: str) -> list[BundleRun]:
        return [self.unit(suite, k) for k in unit_keys]

    def aggregate_runs(self, suite: str) -> list[BundleRun]:
        """The aggregates of ``suite`` as runs (what ``export_bundle`` reads), by aggregate key."""
        runs = [BundleRun(a["tags"].get("agg_key", ""), a["tags"], a["metrics"]) for a in self._aggregates if a["suite"] == suite]
        return sorted(runs, key=lambda r: r.key)

    def unit_counts(self, suites: Iterable[str]) -> pd.DataFrame:
        wanted = set(suites)
        return pd.DataFrame([{"suite": u["suite"], **{k: u["tags"].get(k) for k in ("method", "dataset", "task", "protocol")},
                              "status": "FINISHED"} for u in self.manifest["units"] if u["suite"] in wanted])

    @classmethod
    def recomputed(cls, results: Path, workers: int | None = None, progress: bool = False) -> "BundleStore":
        """The bundle of ``results`` with every aggregate recomputed from its units by today's code (what `bench publish
        --from-bundle` publishes: the units as they were run, everything derived from them again)."""
        bundle = cls.open(results)
        problems = _check_files(bundle)
        if problems:
            raise BundleError(f"{results}: the bundle is damaged ({problems[0]}) (fix: restore it, e.g. `git checkout results/`)")
        workers = available_cores() if workers is None else workers
        aggregates, _ = _recompute_aggregates(bundle, None, workers, progress)
        return cls(bundle.root, bundle.manifest, aggregates)

    def predictions(self, run: BundleRun) -> dict[str, np.ndarray]:
        entry = self.entry(run.tags["suite"], run.key)
        if entry["predictions"] is None:
            raise OSError(f"unit {run.key} has no predictions")
        frame, rows = self._frame(entry["suite"])
        arrays = _unit_arrays(frame.iloc[rows.get(run.key, [])], entry)
        if entry.get("validation"):  # the validation predictions its thresholds were chosen on
            frame, rows = self._frame(entry["suite"], ".val")
            dtypes = {k.removeprefix("val_"): v for k, v in entry["dtypes"].items() if k.startswith("val_")}
            val = _unit_arrays(frame.iloc[rows.get(run.key, [])], {"dtypes": dtypes, "per_record": entry["validation"], "vectors": {}})
            arrays.update({f"val_{k}": a for k, a in val.items()})
        return arrays

    def _frame(self, suite: str, part: str = "") -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """A suite's prediction rows (``part`` ".val": its validation rows) and, per unit key, the positions of its rows
        (found once, not per unit)."""
        if suite + part not in self._frames:
            frame = pd.read_parquet(self.root / "predictions" / f"{suite}{part}.parquet")
            self._frames[suite + part] = (frame, frame.groupby("unit_key", sort=False).indices if len(frame) else {})
        return self._frames[suite + part]


# ---- verification --------------------------------------------------------------------------------------
def verify(results: Path, echo: Callable[[str], None] = lambda _: None, only: str | None = None,
           workers: int | None = None, progress: bool = False) -> list[str]:
    """Every difference between ``results/`` and what its bundle recomputes (empty: everything holds).

    ``only``: check one part quickly: a suite (its units and aggregates), a unit key or an aggregate key (it and what it
    pools or is pooled into), or a published file (``tables/linear_fixed_1.md``, regenerated from the bundle's
    aggregates as stored and compared). ``workers``: processes the units and aggregates are spread over (default:
    the cores available)."""
    results = Path(results)
    bundle = BundleStore.open(results)
    problems = _check_files(bundle) + _check_paths(bundle.manifest)
    if problems:
        return problems  # nothing recomputed from damaged inputs is worth reporting
    units, aggregates, files = _selection(bundle, results, only)
    workers = available_cores() if workers is None else max(1, int(workers))
    recomputed, numbers = _verify_units_and_aggregates(bundle, units, aggregates, workers, progress, echo)
    problems += numbers
    if files is None:
        echo("published files: not regenerated (--only names units or aggregates)")
        return problems
    # a single file is regenerated from the bundle's aggregates as stored; the full check from the recomputed ones
    pooled = recomputed if len(recomputed) == len(bundle.manifest["aggregates"]) else bundle.manifest["aggregates"]
    with tempfile.TemporaryDirectory() as tmp:
        settings = PublishSettings.from_mapping(bundle.manifest["settings"])
        if settings.readme:
            settings = replace(settings, readme=str(bundle.root / settings.readme))
        written = write_publication(BundleStore(bundle.root, bundle.manifest, pooled), Path(tmp), settings, Path(tmp) / "boot")
        if files:
            missing = [f for f in files if f not in {w.relative_to(tmp).as_posix() for w in written}]
            problems += [f"{f}: the bundle gives no such file" for f in missing]
            written = [w for w in written if w.relative_to(tmp).as_posix() in files]
        problems += _compare_outputs(results, Path(tmp), written)
        echo(f"published files: {len(written)} regenerated and compared")
    return problems


def verify_numbers(results: Path, workers: int | None = None, progress: bool = False) -> list[str]:
    """What `bench verify` checks of a bundle without published files beside it (a submission): its files against their
    sha256, every unit's metrics from its predictions, every aggregate from its units."""
    bundle = BundleStore.open(Path(results))
    problems = _check_files(bundle) + _check_paths(bundle.manifest)
    if problems:
        return problems
    workers = available_cores() if workers is None else max(1, int(workers))
    return _verify_units_and_aggregates(bundle, list(range(len(bundle.manifest["units"]))),
                                        list(range(len(bundle.manifest["aggregates"]))), workers, progress)[1]


def _verify_units_and_aggregates(bundle: "BundleStore", units: list[int], aggregates: list[int], workers: int, progress: bool,
                                 echo: Callable[[str], None] = lambda _: None) -> tuple[list[dict], list[str]]:
    problems = _spread(_check_unit_chunk, bundle, units, workers, progress, "verify units")
    echo(f"units: {len(units)} checked against their predictions ({workers} process(es))")
    recomputed, agg_problems = _recompute_aggregates(bundle, aggregates, workers, progress)
    echo(f"aggregates: {len(aggregates)} recomputed from their units")
    return recomputed, problems + agg_problems


def _selection(bundle: "BundleStore", results: Path, only: str | None) -> tuple[list[int], list[int], list[str] | None]:
    """Indices of the units and aggregates to check, and the published files to compare ([] = all, None = none)."""
    from bench.suites.base import SUITES

    units, aggregates = bundle.manifest["units"], bundle.manifest["aggregates"]
    if not only:
        return list(range(len(units))), list(range(len(aggregates))), []
    if only in SUITES.names():
        return ([i for i, u in enumerate(units) if u["suite"] == only],
                [i for i, a in enumerate(aggregates) if a["suite"] == only], None)
    unit_hits = [i for i, u in enumerate(units) if u["key"] == only]
    agg_hits = [i for i, a in enumerate(aggregates) if a["tags"].get("agg_key") == only]
    if unit_hits or agg_hits:
        named = {units[i]["key"] for i in unit_hits}
        named |= {k for i in agg_hits for k in pooled_keys(aggregates[i]["tags"])}
        return ([i for i, u in enumerate(units) if u["key"] in named],
                sorted(set(agg_hits) | {i for i, a in enumerate(aggregates)
                                        if named & set(pooled_keys(a["tags"]))}), None)
    name = Path(only).as_posix()
    name = name[len(results.as_posix()) + 1:] if name.startswith(results.as_posix() + "/") else name
    if (results / name).is_file():
        return [], [], [name]
    raise BundleError(f"--only {only!r}: not a suite, a unit or aggregate key of this bundle, or a published file under "
                      f"{results} (fix: e.g. --only linear, --only tables/linear_fixed_1.md, or a key from bundle/manifest.json)")


_VERIFYING: "BundleStore | None" = None  # the bundle forked workers read (set before the pool starts)


def _spread(fn: Callable[[list[int]], list], bundle: "BundleStore", indices: list[int], workers: int, progress: bool,
            desc: str) -> list:
    """``fn`` over chunks of ``indices`` in ``workers`` forked processes that share the loaded bundle, results in order."""
    from tqdm.auto import tqdm

    global _VERIFYING
    _VERIFYING = bundle
    for parquet in sorted((bundle.root / "predictions").glob("*.parquet")):
        bundle._frame(parquet.stem)  # read once here, shared by the forked workers
    with tqdm(total=len(indices), desc=desc, unit="item", disable=not progress) as bar:
        parts = fork_map(fn, chunks(indices, workers), workers, on_result=lambda chunk, _: bar.update(len(chunk)))
    return [x for part in parts for x in part]


def _check_files(bundle: BundleStore) -> list[str]:
    problems = []
    listed = bundle.manifest["files"]
    for name, digest in sorted(listed.items()):
        path = bundle.root / name
        if not path.is_file():
            problems.append(f"{BUNDLE}/{name}: listed in the manifest but missing")
        elif file_hash(path, 64) != digest:
            problems.append(f"{BUNDLE}/{name}: content differs from the manifest's sha256 (altered or truncated)")
    return problems


def _check_paths(manifest: dict) -> list[str]:
    """No provenance may hold a machine's absolute path."""
    bad = set()

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, list):
            for v in value:
                walk(v, where)
        elif isinstance(value, str) and (value.startswith("/") or value.startswith("~") or ":\\" in value
                                          or "file:///" in value or "sqlite:///" in value):
            bad.add(f"{where} = {value[:80]}")

    walk({"aggregates": [a["tags"] for a in manifest["aggregates"]], "units": [u["tags"] for u in manifest["units"]]}, "manifest")
    return [f"machine path in provenance: {b}" for b in sorted(bad)]


def _close(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or bool(np.isclose(a, b, rtol=1e-9, atol=1e-12))


def _check_unit_chunk(indices: list[int]) -> list[str]:
    """Each unit's predictions hash as recorded, and classification metrics as its predictions give them."""
    import sklearn

    from bench.suites.metrics import classification_scores

    bundle = _VERIFYING
    problems = []
    with sklearn.config_context(skip_parameter_validation=True):
        for i in indices:
            entry = bundle.manifest["units"][i]
            if entry["predictions"] is None:
                continue
            name = f"{entry['suite']} unit {entry['key']} ({entry['tags'].get('method')}/{entry['tags'].get('task')})"
            arrays = bundle.predictions(bundle.unit(entry["suite"], entry["key"]))
            if arrays_hash(arrays) != entry["predictions"]:
                problems.append(f"{name}: predictions differ from the hash recorded with them")
                continue
            if {"y_true", "y_score", "y_pred", "classes"} <= set(arrays):
                scores = classification_scores(arrays["y_true"], arrays["y_score"], [str(c) for c in arrays["classes"]],
                                               y_pred=arrays["y_pred"]).as_dict()
                for metric, value in scores.items():
                    if metric in entry["metrics"] and not _close(float(entry["metrics"][metric]), float(value)):
                        problems.append(f"{name}: {metric} is {entry['metrics'][metric]!r}, its predictions give {value!r}")
            elif {"y_true", "y_pred"} <= set(arrays) and "classes" not in arrays:  # a continuous target
                from bench.suites.regression import regression_scores

                for metric, value in regression_scores(arrays["y_true"], arrays["y_pred"]).items():
                    if metric in entry["metrics"] and not _close(float(entry["metrics"][metric]), float(value)):
                        problems.append(f"{name}: {metric} is {entry['metrics'][metric]!r}, its predictions give {value!r}")
            problems += _check_selection(name, arrays, entry["metrics"])
    return problems


def _check_selection(name: str, arrays: dict[str, np.ndarray], metrics: dict) -> list[str]:
    """What was chosen on validation, chosen again: each class's threshold from the validation predictions, the test
    decisions from those thresholds, and the epoch from the validation loss of each epoch (where the unit kept them)."""
    from bench.suites.metrics import val_thresholds

    problems = []
    if {"val_y_true", "val_y_score", "thresholds"} <= set(arrays):
        again = val_thresholds(arrays["val_y_true"], arrays["val_y_score"]).astype(np.float32)
        if not np.array_equal(again, arrays["thresholds"].astype(np.float32)):
            k = int(np.flatnonzero(again != arrays["thresholds"].astype(np.float32))[0])
            problems.append(f"{name}: threshold of class {k} is {float(arrays['thresholds'][k])!r}, its validation predictions "
                            f"choose {float(again[k])!r}")
        elif "y_pred" in arrays and not np.array_equal(arrays["y_pred"], (arrays["y_score"] >= again).astype(arrays["y_pred"].dtype)):
            problems.append(f"{name}: test decisions differ from the scores at the validation thresholds")
    if "selection_loss" in arrays and "best_epoch" in metrics and len(arrays["selection_loss"]):
        chosen = int(np.argmin(arrays["selection_loss"])) + 1
        if chosen != int(metrics["best_epoch"]):
            problems.append(f"{name}: best_epoch is {int(metrics['best_epoch'])}, its validation losses choose epoch {chosen}")
    return problems


def _recompute_aggregates(bundle: BundleStore, indices: list[int] | None = None, workers: int = 1,
                          progress: bool = False) -> tuple[list[dict], list[str]]:
    """Each aggregate again (those at ``indices``, default all), by its suite's own aggregation over its units."""
    indices = list(range(len(bundle.manifest["aggregates"]))) if indices is None else indices
    pairs = _spread(_recompute_chunk, bundle, indices, workers, progress, "verify aggregates")
    return [entry for entry, _ in pairs], [p for _, found in pairs for p in found]


def _recompute_chunk(indices: list[int]) -> list[tuple[dict, list[str]]]:
    from omegaconf import OmegaConf

    from bench.run.runner import aggregate_record
    from bench.suites.base import Unit, UnitResult, get_suite

    bundle = _VERIFYING
    out = []
    with tempfile.TemporaryDirectory() as cache:
        for i in indices:
            entry = bundle.manifest["aggregates"][i]
            tags = entry["tags"]
            label = f"{entry['suite']} aggregate {tags.get('agg_key')}"
            if tags.get("applicable") == "no":
                out.append((entry, []))
                continue
            problems = []
            suite = get_suite(entry["suite"])
            keys = pooled_keys(tags)
            if inputs_hash([bundle.entry(entry["suite"], k) for k in keys]) != entry["inputs"]:
                problems.append(f"{label}: its units are not the ones it was computed from (inputs hash differs)")
            results = []
            for key in keys:
                run = bundle.unit(entry["suite"], key)
                arrays = bundle.predictions(run) if bundle.entry(entry["suite"], key)["predictions"] else None
                results.append((Unit(dict(run.tags), {}, key=key), UnitResult(dict(run.metrics), dict(run.params), arrays, tags=dict(run.tags))))
            if suite.unit_order:
                agg_tag, unit_tag = suite.unit_order
                order = tags.get(agg_tag, "").split(",")
                results.sort(key=lambda r: order.index(r[0].tags[unit_tag]) if r[0].tags.get(unit_tag) in order else len(order))
            group = _group(tags)
            ctx = SimpleNamespace(base=OmegaConf.create({"run": {"n_boot": int(tags.get("n_boot", 1000)),
                                                                 "bootstrap_seed": int(tags.get("bootstrap_seed", 0))},
                                                         "paths": {"cache": cache}}))
            record = aggregate_record(suite, group, results, suite.aggregate(ctx, group, results))
            problems += _compare_aggregate(label, entry, record)
            kept = {k: tags[k] for k in KEPT_TAGS if k in tags}  # where the row came from, not a result
            out.append(({"suite": entry["suite"], "tags": {**record["tags"], **kept, "agg_key": group.agg_key},
                         "metrics": record["metrics"], "inputs": entry["inputs"]}, problems))
    return out


def _typed(key: str, value: str) -> Any:
    if key == "seed":  # a run seed, "all" (the cell over its seeds) or textgen's "0,1,2"
        return int(value) if value.lstrip("-").isdigit() else value
    return float(value) if key == "fraction" else value


def _compare_aggregate(label: str, stored: dict, record: dict) -> list[str]:
    problems = []
    for metric, value in sorted(stored["metrics"].items()):
        again = record["metrics"].get(metric)
        if again is None or not _close(float(value), float(again)):
            problems.append(f"{label}: {metric} is {value!r} in the bundle, {again!r} recomputed from its units")
    for tag, value in sorted(record["tags"].items()):
        if str(stored["tags"].get(tag)) != str(value):
            problems.append(f"{label}: tag {tag} is {stored['tags'].get(tag)!r} in the bundle, {value!r} recomputed")
    return problems


def _compare_outputs(results: Path, regenerated: Path, written: list[Path]) -> list[str]:
    problems = []
    for path in written:
        name = path.relative_to(regenerated).as_posix()
        published = results / name
        if not published.is_file():
            problems.append(f"{name}: the bundle gives this file but results/ has none")
        elif name == LEADERBOARD:
            problems += _compare_leaderboard(published, path)
        elif published.read_bytes() != path.read_bytes():
            problems.append(_first_difference(name, published.read_text(), path.read_text()))
    return problems


def _compare_leaderboard(published: Path, again: Path) -> list[str]:
    from bench.publish.tables import BOARD_KEYS

    a, b = (pd.read_csv(p, dtype=str, keep_default_na=False) for p in (published, again))
    problems = []
    if list(a.columns) != list(b.columns):
        return [f"{LEADERBOARD}: columns differ from the recomputed leaderboard's"]
    left, right = a.set_index(BOARD_KEYS), b.set_index(BOARD_KEYS)
    for row in left.index.union(right.index):
        name = f"{LEADERBOARD} row {'/'.join(row)}"
        if row not in right.index:
            problems.append(f"{name}: not recomputable from the bundle")
        elif row not in left.index:
            problems.append(f"{name}: recomputed from the bundle but missing from the file")
        else:
            for col in left.columns:
                if left.at[row, col] != right.at[row, col]:
                    problems.append(f"{name}: {col} is {left.at[row, col]!r} in the file, {right.at[row, col]!r} recomputed")
    return problems


def _first_difference(name: str, published: str, again: str) -> str:
    for i, (x, y) in enumerate(zip(published.splitlines(), again.splitlines()), start=1):
        if x != y:
            row = x.split("|")[1].strip() if x.startswith("|") else ""
            return f"{name} line {i}{f' (row {row})' if row else ''}: the file has {x[:120]!r}, recomputed {y[:120]!r}"
    return f"{name}: {len(published.splitlines())} lines in the file, {len(again.splitlines())} recomputed"
