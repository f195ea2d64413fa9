"""MIMIC-IV-ECG (the pretraining corpus): record_list.csv + machine_measurements.csv + WFDB records.

The text of a study is its machine report: ``report_0``..``report_17`` joined in order, empty parts
skipped; studies whose report is shorter than ``min_report_chars`` are dropped (the MERIT paper removes
empty/too-short reports). No labels, folds or splits: it is only a pretraining pool.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.data.base import DatasetIndex, DatasetReader, RawECG
from bench.data.errors import DataError, DatasetNotFound
from bench.data.wfdb_io import read_wfdb


def join_reports(row: pd.Series, columns: list[str]) -> str:
    parts = [str(v).strip() for v in row[columns] if pd.notna(v) and str(v).strip()]
    return " ".join(p if p.endswith(".") else p + "." for p in parts)


class MimicIVECGReader(DatasetReader):
    kind = "mimic_iv_ecg"

    def _files(self) -> tuple[Path, Path]:
        rl, mm = self.root / "record_list.csv", self.root / "machine_measurements.csv"
        for p in (rl, mm):
            if not p.is_file():
                raise DatasetNotFound(p, "MIMIC-IV-ECG index file not found",
                                      "set data.root to the mimic-iv-ecg folder (it holds record_list.csv and files/)")
        return rl, mm

    def load_index(self) -> DatasetIndex:
        rl_path, mm_path = self._files()
        rl = pd.read_csv(rl_path)
        mm = pd.read_csv(mm_path, low_memory=False)
        for col in ("study_id", "path"):
            if col not in rl:
                raise DataError(rl_path, f"column '{col}' missing", "use the official record_list.csv")
        report_cols = sorted((c for c in mm.columns if c.startswith("report_")), key=lambda c: int(c.split("_")[1]))
        if not report_cols:
            raise DataError(mm_path, "no report_N columns", "use the official machine_measurements.csv")
        mm = mm.set_index("study_id")
        reports = mm.apply(join_reports, axis=1, columns=report_cols)
        rl = rl.set_index("study_id")
        rl["report"] = reports.reindex(rl.index).fillna("")
        keep = rl["report"].str.len() >= int(self.options.get("min_report_chars", 5))
        rl = rl[keep]
        records = pd.DataFrame(index=pd.Index(rl.index.astype(str), name="record_id"))
        records["path"] = rl["path"].to_numpy()
        records["patient_id"] = rl["subject_id"].to_numpy() if "subject_id" in rl else pd.NA
        records["report"] = rl["report"].to_numpy()
        records["label_text"] = records["report"]  # MIMIC-IV-ECG's text is its machine report
        records["ecg_time"] = rl["ecg_time"].to_numpy() if "ecg_time" in rl else pd.NA
        records["fold"] = pd.array([pd.NA] * len(records), dtype="Int64")
        records["split"] = None
        notes = [f"dropped {int((~keep).sum())} studies with empty or too-short reports"]
        return DatasetIndex(self.name, records, {}, native_fs=500.0, notes=notes)

    def read(self, record_id: str) -> RawECG:
        rel = self.index.records.at[record_id, "path"]
        return read_wfdb(self.root / rel, expected_fs=500, record_id=record_id)

    def source_files(self) -> list[Path]:
        return list(self._files())
