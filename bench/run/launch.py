"""`bench run --launcher NAME`: hand the units of a run to a Hydra launcher, then collect.

The units (method x dataset x task x protocol x fold x fraction x seed) become a Hydra multirun of
``python -m bench.run.worker``, one job per unit, through any installed launcher: ``joblib`` (a local
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

from bench.config import ConfigError

IN_PROCESS = "inprocess"


def _values(items: Sequence) -> str:
    return ",".join(str(v) for v in items)


def _override(axis: str, values: Sequence) -> str:
    quoted = [f"'{v}'" if ":" in str(v) else str(v) for v in values]  # SOURCE:TARGET would read as a Hydra range
    return f"unit.{axis}={','.join(quoted)}"


def unit_sweeps(suite: str, ctx, request) -> list[list[str]]:
    """The multirun sweeps (Hydra overrides on ``unit.*``) whose jobs are exactly the units of the run: the
    suite says which axes a job fixes and their values (``Suite.job_values``)."""
    from bench.suites.base import get_suite

    return [[f"unit.suite={suite}", *(_override(axis, values) for axis, values in sweep.items())]
            for sweep in get_suite(suite).job_values(ctx, request)]


def run_multirun(launcher: str, sweep: Sequence[str], overrides: Sequence[str], checkpoints: dict[str, str],
                 echo: Callable[[str], None]) -> None:
    """One ``python -m bench.run.worker --multirun`` through ``hydra/launcher=<launcher>``; raises if a job failed."""
    ckpt = [f"+unit.checkpoints.{m}='{p}'" for m, p in checkpoints.items()]
    cmd = [sys.executable, "-m", "bench.run.worker", "--multirun", f"hydra/launcher={launcher}", *overrides, *ckpt, *sweep]
    echo("launch: " + " ".join(cmd[1:]))
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise ConfigError(f"the {launcher} multirun failed (exit {result.returncode}); the job logs are in the sweep folder "
                          f"it printed (fix: read them, then re-run the same command: finished units are skipped)")
