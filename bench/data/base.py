"""Core data types: a raw recording, a label task, a dataset index, and the reader contract.

Every dataset (real or demo) is a reader that produces a ``DatasetIndex`` (one row per record with
fold, split, patient, report and metadata, plus its label tasks) and reads one record's raw signal.
Preprocessing and caching are separate steps (``bench.data.preprocess``, ``bench.data.cache``), so
all readers share them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.data.leads import STANDARD_LEADS

# Units of a reader's signals: physical millivolts, or already normalised by the publisher.
UNITS_MV = "mV"
UNITS_ZSCORE = "zscore"


@dataclass
class RawECG:
    """One recording as stored: ``signal`` is [leads, samples], float32, or float64 as a WFDB reader returns it (the
    shared preprocessing keeps the dtype until the prepared array is stored as float32)."""

    record_id: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    units: str = UNITS_MV
    source: str = ""

    @property
    def seconds(self) -> float:
        return self.signal.shape[1] / self.fs


@dataclass
class LabelTask:
    """A multi-label task: a fixed class vocabulary and a multi-hot table over the records in it.

    Records with no label of the task are not in ``labels`` (the PTB-XL benchmark convention);
    classes of the vocabulary that no record carries stay as all-zero columns, so metrics can
    report them as absent instead of silently dropping them.
    """

    name: str
    classes: list[str]
    labels: pd.DataFrame  # index record_id, columns == classes, int8 0/1
    descriptions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_lists(
        cls,
        name: str,
        classes: Sequence[str],
        per_record: Mapping[str, Sequence[str]],
        descriptions: Mapping[str, str] | None = None,
    ) -> "LabelTask":
        classes = list(classes)
        col = {c: j for j, c in enumerate(classes)}
        ids = [rid for rid, labs in per_record.items() if any(lab in col for lab in labs)]
        y = np.zeros((len(ids), len(classes)), dtype=np.int8)
        for i, rid in enumerate(ids):
            for lab in per_record[rid]:
                if lab in col:
                    y[i, col[lab]] = 1
        frame = pd.DataFrame(y, index=pd.Index(ids, name="record_id"), columns=classes)
        return cls(name, classes, frame, dict(descriptions or {}))

    @classmethod
    def binary(cls, name: str, positive_class: str, positive: pd.Series, description: str) -> "LabelTask":
        """A one-class task over exactly the records of ``positive`` (record id -> bool): True a positive, False a
        negative (a record without the value is left out by leaving it out of ``positive``)."""
        task = cls.from_lists(name, [positive_class], {rid: [positive_class] if bool(v) else [] for rid, v in positive.items()},
                              {positive_class: description})
        task.labels = task.labels.reindex(positive.index.astype(str), fill_value=0).astype("int8")  # False: a negative, not absent
        return task

    @property
    def record_ids(self) -> list[str]:
        return list(self.labels.index)

    def counts(self) -> pd.Series:
        return self.labels.sum(axis=0)


@dataclass
class DatasetIndex:
    """Everything about a dataset except the signals.

    ``records`` has one row per record (index ``record_id``) and at least the columns ``fold``
    (1..10 or NA), ``split`` (train/val/test or NA), ``patient_id``, ``report`` (the dataset's own
    free text) and ``label_text`` (the record's diagnostic statements, official descriptions joined
    into one sentence, as MERIT's pretraining text); any other
    columns are per-record metadata (age, sex, site, device, signal-quality flags...) kept for
    subgroup analyses.
    """

    name: str
    records: pd.DataFrame
    tasks: dict[str, LabelTask]
    units: str = UNITS_MV
    prefiltered: bool = False
    native_fs: float | None = None
    notes: list[str] = field(default_factory=list)
    #: the leads the dataset's records hold (data.leads; 12 unless a dataset declares fewer, e.g. CPSC2021's 2)
    leads: tuple[str, ...] = STANDARD_LEADS
    #: what is wrong with the dataset as a whole (records without a split or a label, records of other sources):
    #: `bench data verify` fails on them
    problems: list[str] = field(default_factory=list)

    def task(self, name: str) -> LabelTask:
        if name not in self.tasks:
            raise KeyError(f"{self.name} has no task '{name}'. Available: {', '.join(self.tasks)}")
        return self.tasks[name]

    def split_hash(self) -> str:
        """Hash of record ids with their fold and split: names the exact partition a number used."""
        cols = [c for c in ("fold", "split") if c in self.records]
        payload = self.records[cols].astype(str).reset_index().to_csv(index=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def file_content_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file's bytes, read once per process per (path, size, mtime): a reader's fingerprint is asked for
    often, and full PTB-XL at 500 Hz is 2.6 GB (about 3 s to hash)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class DatasetReader(ABC):
    """Reads one dataset in its publisher's on-disk layout."""

    #: registry name of the reader kind (e.g. ``ptbxl``); set by subclasses
    kind: str = ""

    def __init__(self, name: str, root: str | Path, options: Mapping[str, Any] | None = None):
        self.name = name
        self.root = Path(root).expanduser()
        self.options = dict(options or {})
        self._index: DatasetIndex | None = None

    @property
    def index(self) -> DatasetIndex:
        if self._index is None:
            self._index = self.load_index()
        return self._index

    @abstractmethod
    def load_index(self) -> DatasetIndex:
        """Build the record table and label tasks from the dataset's index files."""

    @abstractmethod
    def read(self, record_id: str) -> RawECG:
        """Read one record's raw signal, raising ``DataError`` for anything unusable."""

    @abstractmethod
    def source_files(self) -> list[Path]:
        """Files whose content defines the dataset (for the cache key)."""

    #: options that say where files lie, not what they hold (hashed by content through ``source_files``, or, for split
    #: tables, through each unit's split hash): left out of the fingerprint, so a checkout or cache elsewhere keeps its keys
    LOCATION_OPTIONS = ("meta_root", "merl_split_dir", "folds_dir", "icd_table")

    def fingerprint(self) -> str:
        """Hash over the source files' names and contents and the reader's options: the same files copied elsewhere or
        re-provisioned (new modification times) keep their cache and unit keys; an edited file changes them."""
        h = hashlib.sha256(self.kind.encode())
        entries = []
        for p in self.source_files():
            st = p.stat()
            entries.append(f"{p.name}\0{file_content_digest(str(p), st.st_size, st.st_mtime_ns)}\n")
        for entry in sorted(entries):  # ordered by name and content, never by path: files elsewhere sort the same
            h.update(entry.encode())
        options = {k: v for k, v in self.options.items() if k not in self.LOCATION_OPTIONS}
        h.update(json.dumps(options, sort_keys=True, default=str).encode())
        return h.hexdigest()[:16]
