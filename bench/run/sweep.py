"""Hyperparameter sweeps with Optuna (RDB storage: SQLite by default, PostgreSQL shared): of the linear
probe, and of pretraining (each trial pretrains, then probes).

Selection is on the validation split only (macro AUROC of the `fixed` protocol's val records); the test
split is never touched. A sweep is for one protocol (``protocol``): it refuses to select on records that
protocol tests (fold 9 is a test fold under `cv10`, so a `cv10` sweep is refused rather than tuned on
its own test data). The study lives in the storage, so a killed sweep resumes: trials left RUNNING
by the kill are marked FAIL and the sweep continues until ``n_trials`` trials are COMPLETE. The chosen
values are printed as overrides for `bench run` and logged to MLflow (experiment bench-sweep).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable


from bench.suites.metrics import classification_scores
from bench.suites.linear import HeadConfig, train_heads
from bench.suites.protocols import protocol_splits

SPACE = {"lr": (1e-4, 1e-2), "weight_decay": (1e-6, 1e-1), "epochs": (10, 150)}
# pretraining sweep: AdamW lr and weight decay, epochs (the paper's lr / wd are not printed)
PRETRAIN_SPACE = {"lr": (1e-4, 3e-3), "weight_decay": (1e-3, 0.2), "epochs": (2, 20)}


def _study(name: str, storage: str, seed: int):
    """Create or resume a study; trials left RUNNING by a killed sweep are marked FAIL."""
    import optuna

    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return study


def _finish(runner, study, objective, n_trials: int, storage: str, tags: dict[str, Any]) -> dict[str, Any]:
    """Run trials until ``n_trials`` are COMPLETE; record the best values in MLflow (bench-sweep)."""
    import optuna

    done = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    if done < n_trials:
        study.optimize(objective, n_trials=n_trials - done)
    best = study.best_trial
    complete = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    prefix = tags.pop("override_prefix")
    result = {"study": study.study_name, "storage": storage, "completed_trials": complete, "best_val_auroc": best.value,
              "best_params": best.params, "overrides": [f"{prefix}.{k}={v}" for k, v in best.params.items()]}
    runner.store.replace_aggregate("sweep", f"sweep|{study.study_name}",
                                   {"suite": "sweep", "protocol": "fixed", "fraction": 1.0, **tags, "study": study.study_name,
                                    **{f"best_{k}": v for k, v in best.params.items()}},
                                   {"best_val_auroc": best.value, "completed_trials": float(complete)})
    return result


def _suggest(trial, space: dict[str, tuple]) -> dict[str, Any]:
    """lr and weight decay on a log scale, epochs as an integer, from ``space``'s bounds."""
    return {"lr": trial.suggest_float("lr", *space["lr"], log=True),
            "weight_decay": trial.suggest_float("weight_decay", *space["weight_decay"], log=True),
            "epochs": trial.suggest_int("epochs", *space["epochs"])}


class SelectionLeak(ValueError):
    """The sweep's selection records are test records of the protocol its result is meant for."""


def check_selection(records, labels, selection, protocol: str) -> None:
    """Refuse a selection split that overlaps a test fold of ``protocol``."""
    tested = {r for sp in protocol_splits(records, labels, protocol) for r in sp.test}
    overlap = sorted(set(selection.val) & tested)
    if overlap:
        raise SelectionLeak(f"the sweep selects on {len(overlap)} record(s) that protocol {protocol} tests (e.g. {overlap[:3]}); "
                            f"settings chosen on them would be tuned on test data (fix: sweep for --protocol fixed and use "
                            f"the settings for fixed only, or select {protocol} settings inside each training part)")


def _val_auroc(emb, labels, split, head: HeadConfig, seed: int) -> float:
    y = labels.reindex(emb.record_ids, fill_value=0).to_numpy()
    train, val = emb.rows(split.train), emb.rows(split.val)
    trained = train_heads(emb.emb, y, [(train, val)], head, seed=seed)
    return float(classification_scores(y[val], trained.predict(emb.emb[val], 0), list(labels.columns)).auroc)


def sweep_linear(runner, dataset: str, method: str, task: str, n_trials: int, storage: str, study_name: str | None = None,
                 seed: int = 0, on_trial: Callable[[int], None] | None = None, protocol: str = "fixed") -> dict[str, Any]:
    from omegaconf import OmegaConf

    cfg = runner.dataset_cfg(dataset)
    reader = runner.reader(cfg)
    labels = reader.index.task(task).labels
    (split,) = protocol_splits(reader.index.records, labels, "fixed")
    check_selection(reader.index.records, labels, split, protocol)
    handle = runner.scorers(cfg, method, "fixed")[0].handle
    emb, reader = runner.embeddings(cfg, handle)
    base = HeadConfig.from_mapping(OmegaConf.to_container(cfg.linear))
    study = _study(study_name or f"linear-{method}-{dataset}-{task}-{handle.checkpoint_hash}", storage, seed)

    def objective(trial) -> float:
        score = _val_auroc(emb, labels, split, HeadConfig(**{**asdict(base), **_suggest(trial, SPACE)}), seed)
        if on_trial is not None:
            on_trial(trial.number)
        return score

    return _finish(runner, study, objective, n_trials, storage, {"method": method, "dataset": dataset, "task": task, "seed": seed,
                                                                 "override_prefix": "linear", "valid_for_protocol": protocol})


def sweep_pretraining(runner, dataset: str, method: str, task: str, n_trials: int, storage: str, study_name: str | None = None,
                      seed: int = 0, on_trial: Callable[[int], None] | None = None, protocol: str = "fixed") -> dict[str, Any]:
    """Sweep pretraining lr, weight decay and epochs: each trial pretrains on the `fixed` pool (folds 1-8)
    into the folder its settings name, then scores a default linear head on the validation fold (9). The test fold is
    never read."""
    from omegaconf import OmegaConf

    from bench.config import encoder_options
    from bench.encoders.loading import load_encoder
    from bench.encoders.pretrain import run_pretraining

    cfg = runner.dataset_cfg(dataset)
    reader = runner.reader(cfg)
    labels = reader.index.task(task).labels
    (split,) = protocol_splits(reader.index.records, labels, "fixed")
    check_selection(reader.index.records, labels, split, protocol)
    head = HeadConfig.from_mapping(OmegaConf.to_container(cfg.linear))
    options = encoder_options(cfg)
    name = study_name or f"pretrain-{method}-{dataset}-{task}-{options.get('preset', '')}"
    study = _study(name, storage, seed)

    def objective(trial) -> float:
        tcfg = cfg.copy()
        tcfg.pretrain_pool.folds = [int(f) for f in cfg.protocols.fixed.pretrain_pools[0]]
        for key, value in _suggest(trial, PRETRAIN_SPACE).items():
            tcfg.pretrain[key] = value
        result = run_pretraining(tcfg, method, progress=runner.progress)
        handle = load_encoder(method, options, result.checkpoint, identity_of={cfg.data.name: cfg.data.get("identity", cfg.data.name)})
        emb, _ = runner.embeddings(cfg, handle)
        score = _val_auroc(emb, labels, split, head, seed)
        if on_trial is not None:
            on_trial(trial.number)
        return score

    return _finish(runner, study, objective, n_trials, storage, {"method": method, "dataset": dataset, "task": task, "seed": seed,
                                                                 "override_prefix": "pretrain", "valid_for_protocol": protocol})
