"""Label-balanced folds for datasets without official ones (CPSC2018, CSN).

Iterative multi-label stratification (Sechidis et al. 2011, via ``iterative-stratification``),
seeded, grouped by patient (each patient's records land in one fold; a patient's label vector is
the union of its records'), and persisted to disk so every run and every method sees the same folds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from bench.files import atomic_path


def stratified_folds(labels: pd.DataFrame, groups: pd.Series | None = None, n_folds: int = 10,
                     seed: int = 0) -> pd.Series:
    """Fold number 1..n_folds per record (index of ``labels``)."""
    if groups is None:
        groups = pd.Series(labels.index, index=labels.index)
    groups = groups.reindex(labels.index)
    groups = groups.where(groups.notna(), pd.Series(labels.index, index=labels.index).astype(str))
    per_group = labels.groupby(groups.astype(str).to_numpy()).max()
    if len(per_group) < n_folds:
        raise ValueError(f"{len(per_group)} patients/records cannot fill {n_folds} folds")
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    group_fold = np.zeros(len(per_group), dtype=int)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(per_group)), per_group.to_numpy()), start=1):
        group_fold[test] = k
    lookup = dict(zip(per_group.index, group_fold))
    return pd.Series([lookup[g] for g in groups.astype(str)], index=labels.index, name="fold", dtype="Int64")


def persisted_folds(folds_dir: str | Path, dataset: str, labels: pd.DataFrame, groups: pd.Series | None = None,
                    n_folds: int = 10, seed: int = 0) -> pd.Series:
    """Load the folds for exactly these records/labels/seed, or compute and write them atomically."""
    h = hashlib.sha256(f"{n_folds}|{seed}|".encode())
    h.update(pd.util.hash_pandas_object(labels, index=True).to_numpy().tobytes())
    if groups is not None:
        h.update(groups.reindex(labels.index).astype(str).to_numpy().astype("U").tobytes())
    path = Path(folds_dir) / f"{dataset}-folds{n_folds}-seed{seed}-{h.hexdigest()[:12]}.csv"
    if path.is_file():
        stored = pd.read_csv(path, index_col="record_id", dtype={"record_id": str})["fold"]
        return stored.reindex(labels.index).astype("Int64")
    folds = stratified_folds(labels, groups, n_folds, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        folds.rename_axis("record_id").to_csv(tmp)
    return folds
