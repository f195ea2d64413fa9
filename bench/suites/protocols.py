"""Evaluation protocols: which records train, select and test each unit of work.

- ``fixed`` (MERL-compatible): train / val / test from the dataset's ``split`` column (PTB-XL folds
  1-8 / 9 / 10; MERL's tables for CPSC2018 and CSN). Selection on val; test evaluated once.
- ``cv10`` (the MERIT paper): ten units, fold k tested once with a head trained on the other nine
  folds, of which one (fold k+1, cyclically) is held out as the inner validation split.
- Label fractions subsample the training part (iterative stratification, seeded); the test part is never
  subsampled. The validation part (early stopping, thresholds) is the whole validation fold by default
  (``val_fraction="full"``: the MERIT paper's and MERL's few-label protocol), or subsampled by the same fraction
  (``"match"``: a few-label regime that also has few labels to select with). The requested fraction and the
  actual counts are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from bench.data.errors import DataError

PROTOCOLS = ("fixed", "cv10")
VAL_FRACTIONS = ("full", "match")


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
    if not len(keep):  # iterative stratification can hand back nothing for a one-record share
        keep = np.random.default_rng(seed).choice(len(ids), n_keep, replace=False)
    return [ids[i] for i in sorted(keep)]


def protocol_splits(records: pd.DataFrame, labels: pd.DataFrame, protocol: str, fraction: float = 1.0,
                    seed: int = 0, val_fraction: str = "full") -> list[Split]:
    """Splits of the records that have labels in this task."""
    if val_fraction not in VAL_FRACTIONS:
        raise DataError("linear.val_fraction", f"unknown value {val_fraction!r}", f"use one of {', '.join(VAL_FRACTIONS)}")
    rec = records.loc[labels.index]
    val_share = fraction if val_fraction == "match" else 1.0
    if protocol == "fixed":
        parts = {s: list(rec.index[rec["split"] == s]) for s in ("train", "val", "test")}
        empty = [s for s, ids in parts.items() if not ids]
        if empty:
            raise DataError("protocol fixed", f"no labelled record of this task is in the {' or '.join(empty)} split "
                                              f"(train {len(parts['train'])}, val {len(parts['val'])}, test {len(parts['test'])})",
                            "run `bench data verify DATASET` to see its splits; a dataset needs records in train, val and test "
                            "(more records, or MERL's tables with data.merl_split_dir)")
        train = stratified_fraction(labels.loc[parts["train"]], fraction, seed)
        return [Split("test", train, stratified_fraction(labels.loc[parts["val"]], val_share, seed), parts["test"])]
    if protocol == "cv10":
        folds = rec["fold"]
        if folds.isna().any():
            raise DataError("protocol cv10", f"{int(folds.isna().sum())} labelled record(s) have no fold (1..10)",
                            "run `bench data verify DATASET`; cv10 needs at least 10 labelled records, else use --protocols fixed")
        splits = []
        for k in range(1, 11):
            inner = k % 10 + 1
            train_all = list(rec.index[(folds != k) & (folds != inner)])
            val = list(rec.index[folds == inner])
            splits.append(Split(str(k), stratified_fraction(labels.loc[train_all], fraction, seed),
                                stratified_fraction(labels.loc[val], val_share, seed), list(rec.index[folds == k])))
        return splits
    raise DataError("protocol", f"unknown protocol '{protocol}'", f"choose from {', '.join(PROTOCOLS)}")
