"""Evaluation protocols: which records train, select and test each unit of work.

- ``fixed`` (MERL-compatible): train / val / test from the dataset's ``split`` column (PTB-XL folds
  1-8 / 9 / 10; MERL's tables for CPSC2018 and CSN). Selection on val; test evaluated once.
- ``cv10`` (the MERIT paper): ten units, fold k tested once with a head trained on the other nine
  folds, of which one (fold k+1, cyclically) is held out as the inner validation split.
- Label fractions subsample the training part only (iterative stratification, seeded); validation
  and test are never subsampled. The requested fraction and the actual count are both recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from bench.data.errors import DataError

PROTOCOLS = ("fixed", "cv10")


@dataclass
class Split:
    fold: str  # "test" for fixed, "1".."10" for cv10
    train: list[str]
    val: list[str]
    test: list[str]


def stratified_fraction(labels: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """A label-stratified subset of ``labels``' records of size ~fraction (at least one record)."""
    ids = list(labels.index)
    if fraction >= 1.0:
        return ids
    n_keep = max(1, int(round(fraction * len(ids))))
    if n_keep >= len(ids):
        return ids
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, train_size=n_keep, test_size=len(ids) - n_keep, random_state=seed)
    keep, _ = next(splitter.split(np.zeros(len(ids)), labels.to_numpy()))
    return [ids[i] for i in sorted(keep)]


def protocol_splits(records: pd.DataFrame, labels: pd.DataFrame, protocol: str, fraction: float = 1.0,
                    seed: int = 0) -> list[Split]:
    """Splits of the records that have labels in this task."""
    rec = records.loc[labels.index]
    if protocol == "fixed":
        parts = {s: list(rec.index[rec["split"] == s]) for s in ("train", "val", "test")}
        empty = [s for s, ids in parts.items() if not ids]
        if empty:
            raise DataError("protocol fixed", f"no labelled record of this task is in the {' or '.join(empty)} split "
                                              f"(train {len(parts['train'])}, val {len(parts['val'])}, test {len(parts['test'])})",
                            "run `bench data verify DATASET` to see its splits; a dataset needs records in train, val and test "
                            "(more records, or MERL's tables with data.merl_split_dir)")
        train = stratified_fraction(labels.loc[parts["train"]], fraction, seed)
        return [Split("test", train, parts["val"], parts["test"])]
    if protocol == "cv10":
        folds = rec["fold"]
        if folds.isna().any():
            raise DataError("protocol cv10", f"{int(folds.isna().sum())} labelled record(s) have no fold (1..10)",
                            "run `bench data verify DATASET`; cv10 needs at least 10 labelled records, else use --protocols fixed")
        splits = []
        for k in range(1, 11):
            inner = k % 10 + 1
            train_all = list(rec.index[(folds != k) & (folds != inner)])
            splits.append(Split(str(k), stratified_fraction(labels.loc[train_all], fraction, seed),
                                list(rec.index[folds == inner]), list(rec.index[folds == k])))
        return splits
    raise DataError("protocol", f"unknown protocol '{protocol}'", f"choose from {', '.join(PROTOCOLS)}")
