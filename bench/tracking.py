"""MLflow tracking: a local SQLite store under the results folder by default, any server by URI."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Mapping


class Tracker:
    """Thin wrapper so callers can run with tracking off (unit tests) without branching everywhere."""

    def __init__(self, uri: str | None, experiment: str, enabled: bool = True):
        self.enabled = enabled and uri is not None
        self.uri, self.experiment = uri, experiment
        if self.enabled:
            import mlflow

            self._mlflow = mlflow
            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment(experiment)

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None) -> Iterator["Tracker"]:
        if not self.enabled:
            yield self
            return
        with self._mlflow.start_run(run_name=name, tags={k: str(v) for k, v in (tags or {}).items()}):
            if params:
                self._mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            yield self

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.enabled:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path) -> None:
        if self.enabled:
            self._mlflow.log_artifact(str(path))
