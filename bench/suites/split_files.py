"""A task's splits as files anyone can use without bench (`bench splits export`): per task the record ids of the fixed
split (train / val / test), of the ten cv10 folds and of each label-fraction draw the runs use (fraction x seed), each
file with its sha256 and the task's version (bench/data/splits.py) in ``splits.json``, and the same files described in
MLCommons Croissant (``croissant.json``, written by ``mlcroissant``), which dataset catalogues and loaders read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from bench.data.splits import task_fingerprint, task_version


CROISSANT = "croissant.json"
#: the columns of each split file after its record ids, and their Croissant types
_COLUMNS = {"fixed.csv": {"split": "TEXT"}, "cv10_folds.csv": {"fold": "INTEGER"}}


def croissant(manifest: dict) -> dict:
    """The split files of ``manifest`` as a Croissant JSON-LD document: one FileObject per CSV (its sha256) and one
    RecordSet per file (record_id and its split or fold), named by task and version."""
    import mlcroissant as mlc

    files, record_sets = [], []
    for entry in manifest["tasks"].values():
        for name, digest in sorted(entry["files"].items()):
            ident = name.replace("/", "_").removesuffix(".csv")
            files.append(mlc.FileObject(id=name, name=name, content_url=name, encoding_formats=["text/csv"], sha256=digest,
                                        description=f"{entry['version']}: {Path(name).stem}"))
            columns = {"record_id": "TEXT", **_COLUMNS.get(Path(name).name, {})}
            record_sets.append(mlc.RecordSet(id=ident, name=ident, description=f"{entry['version']} ({entry['fingerprint']})",
                                             fields=[mlc.Field(id=f"{ident}/{column}", name=column, data_types=[getattr(mlc.DataType, kind)],
                                                               source=mlc.Source(file_object=name, extract=mlc.Extract(column=column)))
                                                     for column, kind in columns.items()]))
    metadata = mlc.Metadata(name=f"bench-splits-{manifest['dataset']}",
                            description=(f"The record ids of every split of {manifest['dataset']}'s tasks as bench runs them "
                                         f"(fixed train/val/test, cv10 folds, label-fraction draws), with their task versions"),
                            license=["https://creativecommons.org/licenses/by/4.0/"], version="1.0.0",
                            distribution=files, record_sets=record_sets)
    return metadata.to_json()


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def export_splits(index, dataset: str, out: Path, tasks: Sequence[str], fractions: Sequence[float], seeds: Sequence[int]) -> dict:
    """The splits of ``tasks`` as CSV files under ``out/dataset/task/`` and ``out/dataset/splits.json`` (files, sha256,
    task versions); returns that manifest. Written to a staging folder and moved in whole."""
    import shutil
    import tempfile

    from bench.suites.protocols import protocol_splits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"dataset": dataset, "tasks": {}}
    with tempfile.TemporaryDirectory(dir=out, prefix=".splits-") as tmp:
        root = Path(tmp) / dataset
        for name in tasks:
            task = index.task(name)
            fingerprint = task_fingerprint(index.records, task)
            files: dict[str, str] = {}
            folder = root / name
            folder.mkdir(parents=True)

            def write(file: str, frame: pd.DataFrame) -> None:
                frame.to_csv(folder / file, index=False, lineterminator="\n")
                files[f"{name}/{file}"] = _sha256(folder / file)

            rec = index.records.loc[task.labels.index]
            write("fixed.csv", pd.DataFrame({"record_id": rec.index.astype(str), "split": rec["split"].astype(str)}))
            if "fold" in rec and rec["fold"].notna().all():
                write("cv10_folds.csv", pd.DataFrame({"record_id": rec.index.astype(str), "fold": rec["fold"].astype(int)}))
            for fraction in [f for f in fractions if float(f) < 1.0]:
                for seed in seeds:
                    (split,) = protocol_splits(index.records, task.labels, "fixed", float(fraction), int(seed))
                    write(f"fixed_train_{float(fraction):g}_seed{int(seed)}.csv", pd.DataFrame({"record_id": sorted(split.train)}))
            manifest["tasks"][name] = {"version": task_version(dataset, name, fingerprint), "fingerprint": fingerprint,
                                       "classes": list(task.classes), "n_records": int(len(task.labels)), "files": files}
        (root / "splits.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        (root / CROISSANT).write_text(json.dumps(croissant(manifest), indent=1) + "\n")
        target = out / dataset
        if target.exists():
            shutil.rmtree(target)
        (root).rename(target)
    return manifest
