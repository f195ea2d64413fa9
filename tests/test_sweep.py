"""Optuna sweep of the linear head: SQLite storage, selection on validation, resume after a kill."""

from __future__ import annotations

import optuna
import pytest

from bench.run.runner import Runner
from bench.run.sweep import SPACE, sweep_linear


def test_sweep_stores_study_and_resumes_after_kill(tmp_path):
    overrides = [f"paths.cache={tmp_path}/cache", f"paths.results={tmp_path}/results",
                 f"tracking.uri=sqlite:///{tmp_path}/results/mlflow.db", "data.demo.n_records=160"]
    runner = Runner(overrides, progress=False)
    storage = f"sqlite:///{tmp_path}/optuna.db"

    def kill_in_third(n):
        if n == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep_linear(runner, "demo_ptbxl", "signal_stats", "super", 4, storage, "s", on_trial=kill_in_third)
    result = sweep_linear(runner, "demo_ptbxl", "signal_stats", "super", 4, storage, "s")
    study = optuna.load_study(study_name="s", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4 == result["completed_trials"]
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the killed trial
    lo, hi = SPACE["lr"]
    assert lo <= result["best_params"]["lr"] <= hi and 0.5 <= result["best_val_auroc"] <= 1.0
    assert any(o.startswith("linear.lr=") for o in result["overrides"])


def test_pretraining_sweep_pretrains_each_trial_apart_and_selects_on_validation(tmp_path):
    from bench.run.sweep import PRETRAIN_SPACE, sweep_pretraining

    overrides = [f"paths.cache={tmp_path}/cache", f"paths.results={tmp_path}/results", "encoder.preset=tiny",
                 f"tracking.uri=sqlite:///{tmp_path}/results/mlflow.db", "data.demo.n_records=120", "pretrain.batch_size=32"]
    runner = Runner(overrides, progress=False)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = sweep_pretraining(runner, "demo_ptbxl", "merit_mse", "super", 2, storage, "p")
    assert result["completed_trials"] == 2 and set(result["best_params"]) == set(PRETRAIN_SPACE)
    assert any(o.startswith("pretrain.lr=") for o in result["overrides"])
    from bench.encoders.checkpoint import read_checkpoint
    from bench.encoders.pretrain import cached_checkpoints

    trials = {(c["pretrain"]["lr"], c["pretrain"]["epochs"]): tmp_path / "cache" / "checkpoints" / c["folder"] / "encoder.pt"
              for c in cached_checkpoints(tmp_path / "cache") if c["method"] == "merit_mse"}
    study = optuna.load_study(study_name="p", storage=storage)
    assert len(trials) == 2  # each trial's settings name its own checkpoint folder
    for t in study.trials:
        assert len(read_checkpoint(trials[(t.params["lr"], t.params["epochs"])])["history"]) == t.params["epochs"]


def test_sweep_refuses_to_select_on_a_test_fold_of_the_protocol_it_is_for(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    args = ["sweep", "--method", "signal_stats", "--protocol", "cv10", "--trials", "1", f"paths.cache={tmp_path}/cache",
            f"paths.results={tmp_path}/results", f"tracking.uri=sqlite:///{tmp_path}/results/mlflow.db", "data.demo.n_records=160"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "protocol cv10 tests" in result.output and "tuned on test data" in result.output
    assert not (tmp_path / "results" / "optuna.db").exists()  # refused before any trial
