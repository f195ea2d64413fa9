"""Scale-out on real engines, on loopback only: Hydra's joblib and submitit launchers, and two
concurrent `bench run`s against an MLflow server backed by PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.run.store import ResultStore
from tracking_server import mlflow_server, pg_bin, postgres

BENCH = [sys.executable, "-m", "bench.cli"]
DEMO = ["data.demo.n_records=160"]


def bench(*args: str, cache: Path, check: bool = True, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*BENCH, *args], env=env, capture_output=True, text=True, timeout=900, check=check, **popen)


def store_args(tmp: Path, name: str) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp}/{name}.db", f"tracking.artifacts={tmp}/{name}-artifacts"]


def unit_runs(store: ResultStore, suite: str = "linear") -> list:
    return [r for r in store._search(suite, "tags.kind = 'unit'") if r.info.status == "FINISHED"]


def test_joblib_multirun_gives_the_in_process_leaderboard(tmp_path):
    """20 units (2 methods x 10 cv10 folds) through the local process pool equal the in-process run row for row."""
    cache = tmp_path / "cache"
    run = ["run", "--suite", "linear", "--methods", "signal_stats,random", "--datasets", "demo_ptbxl", "--tasks", "super",
           "--protocols", "cv10", *DEMO]
    bench(*run, *store_args(tmp_path, "inproc"), cache=cache)
    out = bench(*run, "--launcher", "joblib", "hydra.launcher.n_jobs=2", *store_args(tmp_path, "pool"), cache=cache)
    assert "linear: 20 units (0 run, 20 already in MLflow)" in out.stdout  # every unit came from a job
    boards = []
    for name in ("inproc", "pool"):
        bench("leaderboard", "--out", str(tmp_path / f"{name}.csv"), *store_args(tmp_path, name), cache=cache)
        boards.append((tmp_path / f"{name}.csv").read_text())
    assert boards[0] == boards[1] and len(boards[0].splitlines()) == 3
    store = ResultStore(f"sqlite:///{tmp_path}/pool.db", tmp_path / "pool-artifacts")
    runs = unit_runs(store)
    assert len(runs) == 20 and len({r.data.tags["unit_key"] for r in runs}) == 20
    workers = {r.data.tags["worker"] for r in runs}
    assert len(workers) >= 2 and not any(w.endswith(f":{os.getpid()}") for w in workers)


def test_submitit_local_launcher_runs_units_as_separate_processes(tmp_path):
    cache = tmp_path / "cache"
    bench("run", "--suite", "linear", "--methods", "signal_stats", "--datasets", "demo_ptbxl", "--tasks", "super,rhythm",
          "--launcher", "submitit_local", *DEMO, *store_args(tmp_path, "s"), cache=cache)
    store = ResultStore(f"sqlite:///{tmp_path}/s.db", tmp_path / "s-artifacts")
    runs = unit_runs(store)
    assert sorted(r.data.tags["task"] for r in runs) == ["rhythm", "super"]
    assert len({r.data.tags["worker"] for r in runs}) == 2  # one process per job
    assert sorted(store.aggregates(["linear"])["task"]) == ["rhythm", "super"]
    assert list(cache.glob("launch/*/.submitit/*/*_log.out"))  # submitit's own job logs


def test_collect_refuses_to_invent_units_a_launcher_did_not_log(tmp_path):
    """The collect pass after a launcher only aggregates: a unit no job logged is an error, not recomputed."""
    from bench.run.runner import Runner
    from bench.run.store import MissingUnits

    runner = Runner([*DEMO, *store_args(tmp_path, "c")], progress=False, compute=False)
    with pytest.raises(MissingUnits, match="not in"):
        runner.run("linear", ["signal_stats"], ["demo_ptbxl"], ["super"])
    with pytest.raises(MissingUnits, match="did not pretrain"):  # nor does it pretrain on the login node
        runner.run("linear", ["merit"], ["demo_ptbxl"], ["super"])
    assert not list(Path(os.environ["BENCH_CACHE"]).glob("checkpoints/*/encoder.pt"))


@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL binaries not found (scripts/setup.sh installs Debian's postgresql)")
def test_two_concurrent_runs_on_a_postgres_backed_mlflow_server_log_each_unit_once(tmp_path):
    """Both processes start on the same units in the same order; the claims make one wait, not duplicate."""
    cache = tmp_path / "cache"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    bench("data", "prepare", "demo_ptbxl", *DEMO, cache=cache)
    with postgres() as db, mlflow_server(db, artifacts) as uri:
        common = ["run", "--suite", "linear", "--datasets", "demo_ptbxl", "--fractions", "0.1,1", "--tracking-uri", uri,
                  f"tracking.artifacts={artifacts}", *DEMO]
        env = {**os.environ, "BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
        procs = [subprocess.Popen([*BENCH, *common, "--methods", methods, "--tasks", tasks], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
                 for methods, tasks in (("signal_stats,random", "super,rhythm"), ("signal_stats,random", "super,rhythm,sub"))]
        outputs = [p.communicate(timeout=900)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
        store = ResultStore(uri, artifacts)
        runs = unit_runs(store)
        keys = Counter(r.data.tags["unit_key"] for r in runs)
        assert len(keys) == 2 * 3 * 2 and set(keys.values()) == {1}  # methods x tasks x fractions, each once
        aggs = store.aggregates(["linear"])
        assert len(aggs) == 12 and not aggs.duplicated(["method", "task", "fraction"]).any()
        assert len({r.data.tags["worker"] for r in runs}) == 2  # both processes did part of the work


def test_unit_sweeps_enumerate_one_job_per_unit():
    """fixed has one test fold, cv10 ten; every other unit key is a swept value, so jobs = units."""
    from types import SimpleNamespace

    from bench.config import load_config
    from bench.run.launch import unit_sweeps
    from bench.suites.base import Request

    base = load_config()
    ctx = SimpleNamespace(base=base, dataset_cfg=lambda d: load_config(data=d))  # what the suites' job_values read
    sweeps = unit_sweeps("linear", ctx, Request(["merit", "random"], ["demo_ptbxl"], ["super", "rhythm"], ["fixed", "cv10"], [0.1, 1.0]))
    jobs = [int(np.prod([len(o.split("=", 1)[1].split(",")) for o in s])) for s in sweeps]
    assert [o for o in sweeps[0] if o.startswith("unit.fold")] == ["unit.fold=test"]
    assert [o for o in sweeps[1] if o.startswith("unit.fold")] == ["unit.fold=1,2,3,4,5,6,7,8,9,10"]
    assert jobs == [2 * 2 * 2 * 1, 2 * 2 * 2 * 10]
    (transfer,) = unit_sweeps("transfer", ctx, Request(["merit"], directions=["ptbxl_super:cpsc2018"]))
    assert "unit.direction='ptbxl_super:cpsc2018'" in transfer
    (textgen,) = unit_sweeps("textgen", ctx, Request(["merit"], ["demo_ptbxl"]))
    assert f"unit.seed={','.join(map(str, base.textgen.seeds))}" in textgen and len(base.textgen.seeds) >= 3
