"""Tasks with versions: what determines a task, hashed, and the number it is published under.

A task's **fingerprint** hashes what determines it: its class list, which record carries which class (the label map
and the record filter show there), and each record's fold and split. Its **version** is the number
``configs/tasks/versions.yaml`` gives that fingerprint (``ptbxl_1819/super@1``): a change to any of them is a new
fingerprint, and so a new version once it is entered there; until then the task is ``@unversioned-<fingerprint>``.

bench/suites/split_files.py writes a task's splits as files (the label draws are the protocol's, a suite-stage fact).
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import yaml

from bench import REPO_ROOT

VERSIONS = REPO_ROOT / "configs" / "tasks" / "versions.yaml"


def task_fingerprint(records: pd.DataFrame, task) -> str:
    """sha256 (16 hex) of a task's classes, its labels by record, and those records' folds and splits."""
    labels = task.labels.sort_index()
    where = records.loc[labels.index, [c for c in ("fold", "split") if c in records]].astype(str)
    payload = json.dumps({"classes": list(task.classes), "labels": labels.astype(int).reset_index().values.tolist(),
                          "partition": where.reset_index().values.tolist()}, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def task_version(dataset: str, task: str, fingerprint: str) -> str:
    """``dataset/task@N`` from configs/tasks/versions.yaml, or ``dataset/task@unversioned-<fingerprint>``."""
    known = (yaml.safe_load(VERSIONS.read_text()) or {}) if VERSIONS.is_file() else {}
    for version, digest in (known.get(f"{dataset}/{task}") or {}).items():
        if digest == fingerprint:
            return f"{dataset}/{task}@{version}"
    return f"{dataset}/{task}@unversioned-{fingerprint[:8]}"


def versioned_task(index, dataset: str, task: str) -> str:
    """``dataset/task@N`` of a reader's index (the fingerprint computed once per index and task)."""
    memo = index.__dict__.setdefault("_task_versions", {})
    if task not in memo:
        memo[task] = task_version(dataset, task, task_fingerprint(index.records, index.task(task)))
    return memo[task]
