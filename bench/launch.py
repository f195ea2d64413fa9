"""`bench run --launcher NAME`: hand the units of a run to a Hydra launcher, then collect.

The units (method x dataset x task x protocol x fold x fraction x seed) become a Hydra multirun of
``python -m bench.worker``, one job per unit, through any installed launcher: ``joblib`` (a local
process pool), ``submitit_local`` / ``submitit_slurm`` (SLURM), ``ray`` (hydra-ray-launcher). The jobs
share the cache (prepared arrays, checkpoints, embeddings) and the MLflow store; ``bench.locks``
keeps concurrent jobs from computing anything twice. When the multirun returns, the same run in
process with ``compute=False`` finds every unit logged and writes the aggregates, so the tables and
leaderboard are the ones an in-process run gives.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Callable, Sequence

from omegaconf import DictConfig

from bench.config import ConfigError

IN_PROCESS = "inprocess"


def _values(items: Sequence) -> str:
    return ",".join(str(v) for v in items)


def unit_sweeps(suite: str, methods: Sequence[str], base: DictConfig, dataset_cfg: Callable[[str], DictConfig], *,
                datasets: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
                protocols: Sequence[str] | None = None, fractions: Sequence[float] | None = None,
                seeds: Sequence[int] | None = None, directions: Sequence[str] | None = None) -> list[list[str]]:
    """The multirun sweeps (Hydra overrides on ``unit.*``) whose jobs are exactly the units of the run.

    One sweep per dataset and protocol, because tasks and folds depend on them.
    """
    from bench.suites.transfer import DIRECTIONS

    run = base.run
    requested_seeds = list(seeds or [])
    seeds = requested_seeds or list(run.seeds)
    common = [f"unit.suite={suite}", f"unit.method={_values(methods)}"]
    if suite == "transfer":
        pairs = list(directions or [f"{s}:{t}" for s, t in DIRECTIONS])
        return [[*common, "unit.direction=" + ",".join(f"'{p}'" for p in pairs), f"unit.seed={_values(seeds)}"]]
    sweeps = []
    for dataset in datasets or [base.data.name]:
        cfg = dataset_cfg(dataset)
        if suite == "textgen":  # its own seeds (>= 3, for the t-intervals) unless asked otherwise
            sweeps.append([*common, f"unit.dataset={dataset}", f"unit.seed={_values(requested_seeds or cfg.textgen.seeds)}"])
            continue
        task_list = list(tasks or cfg.data.default_tasks)
        if suite == "zero_shot":
            sweeps.append([*common, f"unit.dataset={dataset}", f"unit.task={_values(task_list)}", f"unit.seed={_values(seeds)}"])
            continue
        for protocol in protocols or run.protocols:
            folds = ["test"] if protocol == "fixed" else list(range(1, 11))
            sweeps.append([*common, f"unit.dataset={dataset}", f"unit.task={_values(task_list)}", f"unit.protocol={protocol}",
                           f"unit.fraction={_values(fractions or run.fractions)}", f"unit.seed={_values(seeds)}",
                           f"unit.fold={_values(folds)}"])
    return sweeps


def run_multirun(launcher: str, sweep: Sequence[str], overrides: Sequence[str], checkpoints: dict[str, str],
                 echo: Callable[[str], None]) -> None:
    """One ``python -m bench.worker --multirun`` through ``hydra/launcher=<launcher>``; raises if a job failed."""
    ckpt = [f"+unit.checkpoints.{m}='{p}'" for m, p in checkpoints.items()]
    cmd = [sys.executable, "-m", "bench.worker", "--multirun", f"hydra/launcher={launcher}", *overrides, *ckpt, *sweep]
    echo("launch: " + " ".join(cmd[1:]))
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise ConfigError(f"the {launcher} multirun failed (exit {result.returncode}); the job logs are in the sweep folder "
                          f"it printed (fix: read them, then re-run the same command: finished units are skipped)")
