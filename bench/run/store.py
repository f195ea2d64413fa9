"""The MLflow record of every unit of work and of every aggregate the tables are built from.

One experiment per suite (``bench-<suite>``), artifacts under ``<results>/artifacts/<suite>``.
- unit runs (tag ``kind=unit``): one per method x dataset x task x protocol x fold x fraction x seed,
  with metrics, provenance tags and the per-record predictions (``predictions.npz``). A unit counts as
  done only when its run is FINISHED, which is set after everything is logged; so a killed run is
  recomputed on resume, never half-counted.
- aggregate runs (``kind=aggregate``): one per method x dataset x task x protocol x fraction x seed,
  with fold means/spreads and bootstrap intervals; re-logging replaces the previous one.

Several processes may write one store at once (two `bench run`s, launcher jobs against a shared
tracking server): ``claim`` holds the units' locks (``bench.locks``, in the shared cache) and re-reads
which are finished, so each unit is computed and logged once; aggregates are replaced under a lock.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from bench.errors import MissingUnits  # noqa: F401  (raised here)
from bench.locks import hold


UNIT_TAGS = ("suite", "method", "dataset", "task", "protocol", "fold", "fraction", "seed")


class ResultStore:
    def __init__(self, uri: str, artifact_root: str | Path, lock_dir: str | Path | None = None):
        from mlflow.tracking import MlflowClient

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per reused unit is noise
        self.uri = uri
        self.artifact_root = Path(artifact_root).resolve()
        self.lock_dir = Path(lock_dir) if lock_dir is not None else self.artifact_root.parent / ".locks"
        self._experiments: dict[str, str] = {}
        # the first use of a new SQLite store creates its tables: two processes doing it at once collide ("table ...
        # already exists"), so one creates them while the others wait
        with hold(self.lock_dir, [f"store-init:{uri}"] if uri.startswith("sqlite:") else []):
            self.client = MlflowClient(tracking_uri=uri)
            self.client.search_experiments(max_results=1)

    @classmethod
    def from_config(cls, cfg) -> "ResultStore":
        """The store a composed config names: ``tracking.uri``, artifacts under ``tracking.artifacts``,
        claims under ``paths.cache``."""
        return cls(cfg.tracking.uri, cfg.tracking.artifacts, cfg.paths.cache)

    def experiment_id(self, suite: str, create: bool = True) -> str | None:
        if suite in self._experiments:
            return self._experiments[suite]
        name = f"bench-{suite}"
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            if not create:
                return None
            with hold(self.lock_dir, [f"experiment:{self.uri}:{name}"]):
                exp = self.client.get_experiment_by_name(name)  # another process may have just created it
                exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(
                    name, artifact_location=(self.artifact_root / suite).as_uri())
        else:
            exp_id = exp.experiment_id
        self._experiments[suite] = exp_id
        return exp_id

    def _search(self, suite: str, filter_string: str) -> list:
        exp_id = self.experiment_id(suite, create=False)
        if exp_id is None:
            return []
        runs, token = [], None
        while True:
            page = self.client.search_runs([exp_id], filter_string=filter_string, max_results=5000, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def _unit_runs(self, suite: str, tags: Mapping[str, str]) -> list:
        cond = " and ".join(["tags.kind = 'unit'"] + [f"tags.{k} = '{v}'" for k, v in tags.items()])
        return self._search(suite, cond)

    def finished_units(self, suite: str, **tags: str) -> dict[str, Any]:
        """unit_key -> run of the finished unit runs matching ``tags``."""
        return {run.data.tags["unit_key"]: run for run in self._unit_runs(suite, tags) if run.info.status == "FINISHED"}

    @contextlib.contextmanager
    def claim(self, suite: str, unit_keys: Iterable[str], **tags: str) -> Iterator[dict[str, Any]]:
        """Hold the locks of ``unit_keys`` and yield the finished runs matching ``tags``, read under the lock.

        Unfinished runs of the claimed keys are left-overs of killed processes (a live one would hold
        the lock): they are deleted, so a resumed unit is logged once.
        """
        keys = set(unit_keys)
        with hold(self.lock_dir, [f"unit:{self.uri}:{suite}:{k}" for k in keys]):
            done = {}
            for run in self._unit_runs(suite, tags):
                if run.info.status == "FINISHED":
                    done[run.data.tags["unit_key"]] = run
                elif run.data.tags.get("unit_key") in keys:
                    self.client.delete_run(run.info.run_id)
            yield done

    def log_run(self, suite: str, kind: str, tags: Mapping[str, Any], metrics: Mapping[str, float],
                params: Mapping[str, Any] | None = None, arrays: Mapping[str, np.ndarray] | None = None,
                files: Mapping[str, str] | None = None) -> str:
        from mlflow.entities import Metric, Param, RunTag

        exp_id = self.experiment_id(suite)
        name = "-".join(str(tags.get(k, "")) for k in ("method", "dataset", "task", "protocol", "fold", "fraction") if k in tags)
        run = self.client.create_run(exp_id, run_name=f"{kind}:{name}", tags={"kind": kind, **{k: str(v) for k, v in tags.items()},
                                                                               "worker": f"{socket.gethostname()}:{os.getpid()}"})
        rid = run.info.run_id
        now = int(time.time() * 1000)
        self.client.log_batch(
            rid,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and np.isfinite(v)],
            params=[Param(k, str(v)[:500]) for k, v in (params or {}).items()],
            tags=[RunTag("mlflow.source.name", "bench")],
        )
        if arrays or files:
            with tempfile.TemporaryDirectory() as tmp:
                if arrays:
                    np.savez_compressed(Path(tmp) / "predictions.npz", **arrays)
                for name, text in (files or {}).items():
                    (Path(tmp) / name).write_text(text)
                for path in sorted(Path(tmp).iterdir()):
                    self.client.log_artifact(rid, str(path))
        self.client.set_terminated(rid, "FINISHED")
        return rid

    def artifact_text(self, run, name: str) -> str:
        from mlflow.artifacts import download_artifacts

        return Path(download_artifacts(run_id=run.info.run_id, artifact_path=name, tracking_uri=self.uri)).read_text()

    def predictions(self, run) -> dict[str, np.ndarray]:
        from mlflow.artifacts import download_artifacts

        path = download_artifacts(run_id=run.info.run_id, artifact_path="predictions.npz", tracking_uri=self.uri)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def replace_aggregate(self, suite: str, agg_key: str, tags: Mapping[str, Any], metrics: Mapping[str, float],
                          params: Mapping[str, Any] | None = None) -> str:
        with hold(self.lock_dir, [f"aggregate:{self.uri}:{suite}:{agg_key}"]):
            for run in self._search(suite, f"tags.kind = 'aggregate' and tags.agg_key = '{agg_key}'"):
                self.client.delete_run(run.info.run_id)
            return self.log_run(suite, "aggregate", {**tags, "agg_key": agg_key}, metrics, params)

    def aggregate_tags(self, suite: str, agg_key: str) -> dict[str, str] | None:
        """The tags of the current aggregate ``agg_key`` (its ``unit_keys`` name exactly the units it pooled)."""
        runs = [r for r in self._search(suite, f"tags.kind = 'aggregate' and tags.agg_key = '{agg_key}'") if r.info.status == "FINISHED"]
        return dict(runs[0].data.tags) if runs else None

    def units_by_key(self, suite: str, unit_keys: Iterable[str], **tags: str) -> list:
        """The finished unit runs with exactly these keys, in that order; a missing one is an error."""
        runs = self.finished_units(suite, **tags)
        keys = list(unit_keys)
        missing = [k for k in keys if k not in runs]
        if missing:
            raise LookupError(f"{len(missing)} {suite} unit(s) named by an aggregate are not in {self.uri} (e.g. {missing[0]}); "
                              f"re-run the suite to rebuild them")
        return [runs[k] for k in keys]

    def aggregate_runs(self, suite: str) -> list:
        """The finished aggregate runs of ``suite``, by aggregate key."""
        runs = [r for r in self._search(suite, "tags.kind = 'aggregate'") if r.info.status == "FINISHED"]
        return sorted(runs, key=lambda r: r.data.tags.get("agg_key", ""))

    def aggregates(self, suites: Iterable[str]) -> pd.DataFrame:
        rows = []
        for suite in suites:
            for run in self._search(suite, "tags.kind = 'aggregate'"):
                if run.info.status != "FINISHED":
                    continue
                row = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
                row.update(run.data.metrics)
                rows.append(row)
        return pd.DataFrame(rows)

    def unit_counts(self, suites: Iterable[str]) -> pd.DataFrame:
        rows = []
        for suite in suites:
            for run in self._search(suite, "tags.kind = 'unit'"):
                t = run.data.tags
                rows.append({"suite": suite, "method": t.get("method"), "dataset": t.get("dataset"), "task": t.get("task"),
                             "protocol": t.get("protocol"), "status": run.info.status})
        return pd.DataFrame(rows)
