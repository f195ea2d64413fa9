"""Hyperparameter sweep of the linear probe with Optuna (RDB storage: SQLite by default, PostgreSQL shared).

Selection is on the validation split only (macro AUROC of the `fixed` protocol's val records); the test
split is never touched. The study lives in the storage, so a killed sweep resumes: trials left RUNNING
by the kill are marked FAIL and the sweep continues until ``n_trials`` trials are COMPLETE. The chosen
values are printed as overrides for `bench run` and logged to MLflow (experiment bench-sweep).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import numpy as np

from bench.metrics import classification_scores
from bench.suites.linear import HeadConfig, train_heads
from bench.suites.protocols import protocol_splits

SPACE = {"lr": (1e-4, 1e-2), "weight_decay": (1e-6, 1e-1), "epochs": (10, 150)}


def sweep_linear(runner, dataset: str, method: str, task: str, n_trials: int, storage: str, study_name: str | None = None,
                 seed: int = 0, on_trial: Callable[[int], None] | None = None) -> dict[str, Any]:
    import optuna
    from omegaconf import OmegaConf

    cfg = runner.dataset_cfg(dataset)
    handle = runner.scorers(cfg, method, "fixed")[0].handle
    emb, reader = runner.embeddings(cfg, handle)
    labels = reader.index.task(task).labels
    (split,) = protocol_splits(reader.index.records, labels, "fixed")
    y = labels.reindex(emb.record_ids, fill_value=0).to_numpy()
    train, val = emb.rows(split.train), emb.rows(split.val)
    base = HeadConfig.from_mapping(OmegaConf.to_container(cfg.linear))
    name = study_name or f"linear-{method}-{dataset}-{task}-{handle.checkpoint_hash}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)  # left behind by a killed sweep

    def objective(trial) -> float:
        head = HeadConfig(**{**asdict(base), "lr": trial.suggest_float("lr", *SPACE["lr"], log=True),
                             "weight_decay": trial.suggest_float("weight_decay", *SPACE["weight_decay"], log=True),
                             "epochs": trial.suggest_int("epochs", *SPACE["epochs"])})
        trained = train_heads(emb.emb, y, [(train, val)], head, seed=seed)
        score = classification_scores(y[val], trained.predict(emb.emb[val], 0), list(labels.columns)).auroc
        if on_trial is not None:
            on_trial(trial.number)
        return float(score)

    done = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    if done < n_trials:
        study.optimize(objective, n_trials=n_trials - done)
    best = study.best_trial
    result = {"study": name, "storage": storage, "completed_trials": len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))),
              "best_val_auroc": best.value, "best_params": best.params,
              "overrides": [f"linear.{k}={v}" for k, v in best.params.items()]}
    runner.store.replace_aggregate("sweep", f"sweep|{name}", {"suite": "sweep", "method": method, "dataset": dataset, "task": task,
                                                              "protocol": "fixed", "fraction": 1.0, "seed": seed, "study": name,
                                                              **{f"best_{k}": v for k, v in best.params.items()}},
                                   {"best_val_auroc": best.value, "completed_trials": float(result["completed_trials"])})
    return result
