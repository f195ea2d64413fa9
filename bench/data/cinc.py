"""Any PhysioNet/CinC 2020/2021 source (CPSC2018, CPSC-Extra, St Petersburg, PTB, PTB-XL, Georgia, Chapman/Ningbo) in
the CinC WFDB layout, and CPSC's original release.

CinC layout: ``.hea`` + ``.mat`` (MATLAB v4, 16-bit, gain/baseline in the header), diagnoses as
SNOMED-CT codes on the ``#Dx:`` header line, mapped to the dataset's label space through the
vocabulary files in ``configs/labels``. Each record's source is recognised from its name's prefix
(``configs/labels/cinc_sources.yaml``); a dataset may keep only some sources (``sources``), and records of others are
reported. Labels can instead come from MERL's split tables (by name, never by column position; CSN by exact-token
membership of ``diagnose``, fixing MERL's substring matching). Train/val/test come from MERL's tables for the records
that are in them, and from the reader's own folds (iterative stratification, persisted; ``bench.data.folds``) for the
others. A dataset with fewer leads than 12 declares its lead set (``leads``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench import REPO_ROOT
from bench.data.base import DatasetIndex, DatasetReader, LabelTask, RawECG
from bench.data.errors import DataError, DatasetNotFound
from bench.data.folds import persisted_folds
from bench.data.leads import STANDARD_LEADS
from bench.data.ptbxl import DEFAULT_SPLITS
from bench.data.wfdb_io import header_text, read_wfdb

LABELS_DIR = REPO_ROOT / "configs" / "labels"
TASK = "all"  # the single task of a CinC dataset: its whole label space (the MERIT paper calls it "all")


def load_vocabulary(name: str) -> dict[str, Any]:
    path = LABELS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise DataError(path, f"unknown label vocabulary '{name}'",
                        f"use one of {sorted(p.stem for p in LABELS_DIR.glob('*.yaml'))}")
    return yaml.safe_load(path.read_text())


def known_snomed_codes() -> set[str]:
    table = pd.read_csv(LABELS_DIR / "snomed_ct_ecg.csv", comment="#", dtype={"snomed": str})
    return set(table["snomed"])


@lru_cache(maxsize=1)
def source_prefixes() -> dict[str, str]:
    """Record-name prefix -> CinC source database (longest prefixes first)."""
    table = yaml.safe_load((LABELS_DIR / "cinc_sources.yaml").read_text())
    return dict(sorted(((str(k), str(v)) for k, v in table.items()), key=lambda kv: -len(kv[0])))


def record_source(record_id: str) -> str:
    """The CinC source of a record from its name (``HR00001`` -> ``ptbxl``), ``unknown`` for other names."""
    return next((source for prefix, source in source_prefixes().items()
                 if record_id.startswith(prefix) and record_id[len(prefix):][:1].isdigit()), "unknown")


def parse_header_text(text: str, where: Path | str = "header") -> tuple[float, int, dict[str, str]]:
    """(fs, n_samples, comments) from a WFDB header, without reading the signal."""
    from bench.data.wfdb_io import check_header_values

    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].startswith("#"):
        raise DataError(where, "empty WFDB header (no record line)", "re-download the record, or remove it from the folder")
    check_header_values(Path(where), text)
    first = lines[0].split()
    fs = float(first[2].split("/")[0]) if len(first) > 2 else 250.0
    n = int(first[3]) if len(first) > 3 else 0
    comments = {}
    for ln in lines:
        if ln.startswith("#"):
            key, sep, value = ln[1:].partition(":")
            if sep:
                comments[key.strip()] = value.strip()
    return fs, n, comments


def _refuse_duplicate_ids(root: Path, headers: list[Path]) -> None:
    """Record ids are header names: two records of one name in different folders would be one id for two records."""
    by_id: dict[str, list[Path]] = {}
    for hea in headers:
        by_id.setdefault(hea.stem, []).append(hea)
    twice = {rid: paths for rid, paths in by_id.items() if len(paths) > 1}
    if twice:
        rid, paths = sorted(twice.items())[0]
        raise DataError(root, f"{len(twice)} record name(s) occur in more than one folder, e.g. {rid}: "
                              f"{', '.join(str(p.relative_to(root)) for p in paths[:3])}; a record id must name one record",
                        "embed or prepare each folder on its own (--wfdb FOLDER), or rename the duplicates")


def header_patient_tasks(records: pd.DataFrame) -> dict[str, LabelTask]:
    """``sex`` from the headers' ``#Sex`` line (Female or Male, any case; Unknown, NaN or no line: the record is left
    out of it), one class ``female`` as on PTB-XL and MIMIC-IV-ECG; none when no record says."""
    sex = records["sex"].astype("string").str.strip().str.lower().map({"female": True, "f": True, "male": False, "m": False})
    sex = sex.dropna().astype(bool)
    return {"sex": LabelTask.binary("sex", "female", sex, "sex recorded as Female rather than Male on the header's #Sex line")} \
        if len(sex) else {}


class _LabelSpace:
    """The dataset's classes and the SNOMED codes that map to them."""

    def __init__(self, vocabulary: str):
        vocab = load_vocabulary(vocabulary)
        self.classes = [str(c["code"]) for c in vocab["classes"]]
        self.names = {str(c["code"]): c["name"] for c in vocab["classes"]}
        self.by_snomed: dict[str, str] = {str(c["snomed"]): str(c["code"]) for c in vocab["classes"]}
        self.by_snomed.update({str(k): str(v) for k, v in (vocab.get("aliases") or {}).items()})
        self.by_reference = {int(c["reference_id"]): str(c["code"]) for c in vocab["classes"] if "reference_id" in c}
        self.known = known_snomed_codes() | set(self.by_snomed)


class _FoldsMixin:
    """Persisted stratified folds + MERL split tables, shared by both CPSC layouts and CSN."""

    name: str
    options: dict

    def _attach_folds_and_splits(self, records: pd.DataFrame, task: LabelTask) -> list[str]:
        """Folds for every labelled record, train/val/test from MERL's tables where a record is in them and from the
        folds otherwise; returns the problems (labelled records left without a split, and why)."""
        labels = task.labels.reindex(records.index, fill_value=0)
        folds_dir = self.options.get("folds_dir") or REPO_ROOT / ".bench_cache" / "folds"
        n_folds = int(self.options.get("n_folds", 10))
        labelled = labels.index[labels.sum(axis=1) > 0]
        records["fold"] = pd.array([pd.NA] * len(records), dtype="Int64")
        if len(labelled) >= n_folds:
            groups = records.loc[labelled, "patient_id"] if records["patient_id"].notna().any() else None
            records.loc[labelled, "fold"] = persisted_folds(folds_dir, self.name, labels.loc[labelled], groups, n_folds,
                                                            int(self.options.get("fold_seed", 0)))
        merl = self._merl_splits(records)
        lookup = {int(f): s for s, fs in self.options.get("splits", DEFAULT_SPLITS).items() for f in fs}
        from_folds = records["fold"].map(lambda f: lookup.get(int(f)) if pd.notna(f) else None).astype(object)
        records["split"] = merl.where(merl.notna(), from_folds)
        records["split_from"] = np.where(merl.notna(), "merl", np.where(from_folds.notna(), "folds", "none"))
        missing = records.index[records["split"].isna() & records.index.isin(labelled)]
        if len(missing):
            return [f"{len(missing)} labelled record(s) have no train/val/test split (e.g. {list(missing[:5])}): they are in no "
                    f"MERL table and too few records ({len(labelled)}) make {n_folds} folds (fix: add records, set "
                    f"data.n_folds lower, or give MERL's tables with data.merl_split_dir)"]
        return []

    def _merl_tables(self) -> dict[str, list[pd.DataFrame]]:
        """MERL's train/val/test tables: ``merl_split_dir`` is one folder, or a mapping source -> folder (a dataset of
        several CinC sources: icbeb for CPSC2018, chapman for Chapman/Ningbo, ptbxl/<task> for PTB-XL)."""
        spec = self.options.get("merl_split_dir")
        if not spec:
            return {}
        folders = [Path(v) for v in (spec.values() if isinstance(spec, dict) else [spec]) if v]
        tables: dict[str, list[pd.DataFrame]] = {}
        for split in ("train", "val", "test"):
            for split_dir in folders:
                files = sorted(split_dir.glob(f"*_{split}.csv"))
                if not files:
                    raise DatasetNotFound(split_dir, f"no *_{split}.csv MERL split table", "set data.merl_split_dir to MERL's data_split folder or null")
                tables.setdefault(split, []).append(pd.read_csv(files[0]))
        return tables

    @staticmethod
    def _table_ids(table: pd.DataFrame) -> pd.Series:
        """Record names in a MERL table: CPSC2018's filename, Chapman's ecg_path, PTB-XL's ecg_id as the CinC HR name."""
        if "filename" in table:
            return table["filename"].astype(str)
        if "ecg_path" in table:
            return table["ecg_path"].astype(str).map(lambda p: Path(p).stem)
        if "ecg_id" in table:
            return table["ecg_id"].map(lambda i: f"HR{int(i):05d}")
        raise DataError("MERL split table", "no filename, ecg_path or ecg_id column", "use MERL's icbeb/chapman/ptbxl tables")

    def _merl_splits(self, records: pd.DataFrame) -> pd.Series:
        """MERL's train/val/test for the records its tables hold (None for the others)."""
        split = pd.Series([None] * len(records), index=records.index, dtype=object)
        for name, tables in self._merl_tables().items():
            for table in tables:
                split[split.index.isin(set(self._table_ids(table)))] = name
        return split

    def _merl_labels(self, space: _LabelSpace) -> dict[str, list[str]]:
        """Labels from MERL's tables: class columns by name; CSN from exact tokens of ``diagnose``."""
        out: dict[str, list[str]] = {}
        for table in [t for tables in self._merl_tables().values() for t in tables]:
            ids = self._table_ids(table)
            if "diagnose" in table:
                for rid, dx in zip(ids, table["diagnose"].fillna("")):
                    out[rid] = [t.strip() for t in str(dx).split(",") if t.strip() in space.classes]
            else:
                missing = [c for c in space.classes if c not in table]
                if missing:
                    raise DataError("MERL split table", f"label column(s) {missing} missing", "use MERL's original tables")
                y = table[space.classes].to_numpy()
                for rid, row in zip(ids, y):
                    out[rid] = [c for c, v in zip(space.classes, row) if v == 1]
        return out


class CinCReader(_FoldsMixin, DatasetReader):
    """A folder tree of CinC-layout records (``**/*.hea``) of any CinC 2020/2021 source, or of the ``sources`` kept."""

    kind = "cinc"

    def _headers(self) -> list[Path]:
        if not self.root.is_dir():
            raise DatasetNotFound(self.root, "dataset folder not found", f"download it (bench data download {self.name}) and set data.root")
        files = sorted(self.root.rglob(self.options.get("pattern") or "*.hea"))
        if not files:
            raise DatasetNotFound(self.root, "no .hea files below this folder", "set data.root to the folder holding the WFDB records")
        return files

    @property
    def leads(self) -> tuple[str, ...]:
        """The lead set the dataset declares (``data.leads``), 12 standard leads unless given."""
        from bench.data.leads import canonical_lead

        return tuple(canonical_lead(x) for x in (self.options.get("leads") or STANDARD_LEADS))

    def load_index(self) -> DatasetIndex:
        space = _LabelSpace(self.options.get("vocabulary", "cpsc2018"))
        on_error = self.options.get("on_error", "raise")
        label_source = self.options.get("labels_from", "dx")
        keep = set(self.options.get("sources") or [])
        merl = self._merl_labels(space) if label_source == "merl" else {}
        rows, per_record, problems, other = [], {}, [], {}
        headers = self._headers()
        _refuse_duplicate_ids(self.root, headers)
        for hea in headers:
            rid = hea.stem
            source = record_source(rid)
            if keep and source not in keep:
                other[source] = other.get(source, 0) + 1
                continue
            try:
                fs, n, comments = parse_header_text(header_text(hea), hea)
                codes = [c.strip() for c in comments.get("Dx", "").split(",") if c.strip()]
                unknown = [c for c in codes if c not in space.known]
                if unknown:
                    raise DataError(hea, f"unknown SNOMED-CT code(s) {', '.join(unknown)} on the #Dx line",
                                    "check the record, or add the code to configs/labels/snomed_ct_ecg.csv, or run with "
                                    "--on-error skip (data.on_error=skip)")
            except DataError as err:
                if on_error != "skip":
                    raise
                problems.append(str(err))
                continue
            if label_source == "merl":
                per_record[rid] = merl.get(rid, [])
            else:
                per_record[rid] = sorted({space.by_snomed[c] for c in codes if c in space.by_snomed})
            age = pd.to_numeric(comments.get("Age"), errors="coerce")
            rows.append({"record_id": rid, "path": str(hea.with_suffix("").relative_to(self.root)), "source": source, "fs": fs,
                         "n_samples": n, "age": age, "sex": comments.get("Sex"), "dx_snomed": ",".join(codes),
                         "patient_id": pd.NA})
        if not rows:
            raise DatasetNotFound(self.root, f"no record of the sources {sorted(keep)} below this folder (found: {other})",
                                  "point data.root at the right folder, or use dataset cinc2021 for a folder of mixed sources")
        records = pd.DataFrame(rows).set_index("record_id")
        task = LabelTask.from_lists(TASK, space.classes, per_record, space.names)
        records["report"] = [", ".join(space.names[c] for c in per_record.get(r, [])) for r in records.index]
        records["label_text"] = records["report"]
        faults = self._attach_folds_and_splits(records, task)
        unlabelled = [r for r in records.index if not per_record.get(r)]
        if unlabelled:
            faults.append(f"{len(unlabelled)} record(s) have no label in the {self.options.get('vocabulary', 'cpsc2018')} label "
                          f"space (e.g. {unlabelled[:5]}): they are left out of task {TASK} (fix: a vocabulary covering their "
                          f"codes, e.g. dataset cinc2021's)")
        if other:
            faults.append(f"records of other sources are left out: {', '.join(f'{k} {v}' for k, v in sorted(other.items()))} "
                          f"(this dataset keeps {sorted(keep)}; fix: point data.root at its own folder, or use dataset cinc2021 "
                          f"for a folder of mixed sources)")
        notes = [f"skipped {len(problems)} record(s) (data.on_error=skip), each with its reason:"] + [f"  skipped {p}" for p in problems] \
            if problems else []
        notes.append("sources: " + ", ".join(f"{k} {v}" for k, v in records["source"].value_counts().sort_index().items()))
        notes.append("splits from: " + ", ".join(f"{k} {v}" for k, v in records["split_from"].value_counts().sort_index().items()))
        return DatasetIndex(self.name, records, {TASK: task, **header_patient_tasks(records)}, notes=notes,
                            native_fs=float(records["fs"].mode().iloc[0]), leads=self.leads, problems=faults)

    def read(self, record_id: str) -> RawECG:
        rel = self.index.records.at[record_id, "path"]
        return read_wfdb(self.root / rel, expected_fs=self.options.get("expected_fs"), record_id=record_id, leads=self.leads,
                         fs_option="data.expected_fs")

    def source_files(self) -> list[Path]:
        files = []
        for hea in self._headers():
            files += [hea] + [p for p in hea.parent.glob(hea.stem + ".*") if p.suffix in (".mat", ".dat")]
        return files


class CPSC2018OriginalReader(_FoldsMixin, DatasetReader):
    """CPSC2018 as first released: ``A0001.mat`` holding struct ``ECG`` (sex, age, data in mV) + REFERENCE.csv."""

    kind = "cpsc2018_original"
    FS = 500.0

    def _reference(self) -> Path:
        ref = self.root / "REFERENCE.csv"
        if not ref.is_file():
            raise DatasetNotFound(ref, "REFERENCE.csv not found", "set data.root to the CPSC2018 TrainingSet folder")
        return ref

    def load_index(self) -> DatasetIndex:
        space = _LabelSpace(self.options.get("vocabulary", "cpsc2018"))
        if not self.root.is_dir():
            raise DatasetNotFound(self.root, "dataset folder not found", "set data.root (or --mat DIR) to the folder of A*.mat files")
        if not (self.root / "REFERENCE.csv").is_file():  # a folder of records without labels: embedded, never scored
            mats = sorted(p.stem for p in self.root.glob("*.mat"))
            if not mats:
                raise DatasetNotFound(self.root, "no .mat records and no REFERENCE.csv here",
                                      "point at the folder holding the CPSC2018 A*.mat files")
            ref = pd.DataFrame({"Recording": mats})
            unlabelled = [f"no REFERENCE.csv in {self.root}: the {len(mats)} records have no labels (embedding only; no "
                          f"task can score them)"]
        else:
            ref = pd.read_csv(self._reference(), dtype={"Recording": str})
            unlabelled = []
        label_cols = [c for c in ref.columns if c != "Recording"]
        per_record = {}
        for _, row in ref.iterrows():
            ids = [int(v) for v in row[label_cols] if pd.notna(v)]
            bad = [i for i in ids if i not in space.by_reference]
            if bad:
                raise DataError(self._reference(), f"record {row['Recording']}: unknown label id(s) {bad}", "labels must be 1..9")
            per_record[row["Recording"]] = [space.by_reference[i] for i in ids]
        records = pd.DataFrame(index=pd.Index(list(per_record), name="record_id"))
        records["path"] = [f"{r}.mat" for r in records.index]
        records["patient_id"] = pd.NA
        task = LabelTask.from_lists(TASK, space.classes, per_record, space.names)
        records["report"] = [", ".join(space.names[c] for c in per_record[r]) for r in records.index]
        records["label_text"] = records["report"]
        problems = self._attach_folds_and_splits(records, task) + unlabelled
        return DatasetIndex(self.name, records, {TASK: task}, native_fs=self.FS, problems=problems)

    def read(self, record_id: str) -> RawECG:
        from scipy.io import loadmat

        path = self.root / f"{record_id}.mat"
        if not path.is_file():
            raise DataError(path, "record file not found", "check data.root")
        try:
            ecg = loadmat(str(path))["ECG"][0, 0]
            data = np.asarray(ecg["data"], dtype=np.float32)
        except Exception as exc:
            raise DataError(path, f"not a CPSC2018 .mat with an ECG.data matrix ({exc})", "re-download the record") from exc
        if data.ndim != 2 or data.shape[0] != 12:
            raise DataError(path, f"wrong lead count: ECG.data has shape {data.shape}, expected (12, samples)", "use the original 12-lead file")
        if (~np.isfinite(data)).all(axis=1).any():
            raise DataError(path, "a lead contains no valid samples (all NaN)", "drop the record or run with data.on_error=skip")
        return RawECG(record_id, data, self.FS, STANDARD_LEADS, "mV", str(path))

    def source_files(self) -> list[Path]:
        reference = self.root / "REFERENCE.csv"
        return [*([reference] if reference.is_file() else []), *sorted(self.root.glob("*.mat"))]
