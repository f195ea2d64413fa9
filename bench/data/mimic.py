"""MIMIC-IV-ECG (the pretraining corpus): record_list.csv + machine_measurements.csv + WFDB records.

The text of a study is its machine report: ``report_0``..``report_17`` joined in order, empty parts
skipped; studies whose report is shorter than ``min_report_chars`` are dropped (the MERIT paper removes
empty/too-short reports). No labels, folds or splits: it is only a pretraining pool.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.data.base import DatasetIndex, DatasetReader, LabelTask, RawECG
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


def _code_lists(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A column of ICD-10 code lists as MIMIC-IV-ECG-ICD writes them (a Python list literal per row), read with
    ``ast.literal_eval``, which evaluates literals only; anything but a list of strings is refused naming its row."""
    import ast

    def parse(text, row):
        try:
            value = ast.literal_eval(str(text)) if pd.notna(text) else []
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise DataError(path, f"row {row}: column '{column}' is not a list of ICD-10 codes ({str(text)[:60]!r})",
                            "use the official records_w_diag_icd10.csv")
        return value

    return pd.Series([parse(v, i) for i, v in zip(table.index, table[column])], index=table.index)


def icd_statements(codes: list[str], digits: int | None, ancestors: bool) -> list[str]:
    """One record's codes as the reality check's ``prepare_mimic_ecg`` turns them into statements: cut to ``digits``
    characters, trailing placeholder X removed, then with ``ancestors`` every prefix of three or more characters
    (I48.19 also counts as I48.1 and I48)."""
    cut = {c.strip()[:digits] if digits else c.strip() for c in codes}
    cut = {c.rstrip("X") for c in cut}
    if ancestors:
        cut = {c[:i] for c in cut for i in range(3, len(c) + 1)}
    return sorted(cut)


class MimicIVECGICDReader(MimicIVECGReader):
    """MIMIC-IV-ECG with MIMIC-IV-ECG-ICD's table (Strodthoff et al. 2024; PhysioNet, credentialed): the records and
    folds of one of the reality check's scenarios, with its ICD-10 statements (task ``icd``), sex (task ``sex``), age
    and the machine measurements as columns for the regression targets (configs/protocols/regression.yaml).

    The scenario is data (configs/data/mimic_iv_ecg_icd.yaml, ``scenario``), following AI4HealthUOL/ecg-fm-benchmarking's
    prepare_mimic_ecg: training records from the training folds taken in the given setting with at least one statement;
    validation and test records likewise from the last two folds, only each stay's first ECG where it says so; the
    statements kept are those with at least ``min_count`` records among all records' training-label statements (as
    upstream counts them). Measurements are joined by study_id (upstream joins the two files by row position)."""

    kind = "mimic_iv_ecg_icd"

    def _icd_table(self) -> Path:
        path = Path(str(self.options.get("icd_table") or self.root / "records_w_diag_icd10.csv")).expanduser()
        if not path.is_file():
            raise DatasetNotFound(path, "MIMIC-IV-ECG-ICD table not found",
                                  "download records_w_diag_icd10.csv from PhysioNet's MIMIC-IV-ECG-ICD and set "
                                  "data.icd_table (default: beside record_list.csv)")
        return path

    def source_files(self) -> list[Path]:
        return [*self._files(), self._icd_table()]

    def load_index(self) -> DatasetIndex:
        rl_path, mm_path = self._files()
        icd_path = self._icd_table()
        sc = self.options["scenario"]
        table = pd.read_csv(icd_path, low_memory=False)
        needed = ["study_id", "subject_id", "strat_fold", "gender", "age", "ecg_no_within_stay", sc["labels"],
                  *sc["train_setting"], *sc["test_setting"]]
        missing = sorted(set(needed) - set(table.columns))
        if missing:
            raise DataError(icd_path, f"column(s) {', '.join(missing)} missing", "use the official records_w_diag_icd10.csv")
        codes = _code_lists(table, sc["labels"], icd_path)
        table["n_codes"] = codes.map(len)
        table["statements"] = [icd_statements(c, sc.get("digits"), bool(sc.get("ancestors"))) for c in codes]
        counts = pd.Series([s for row in table["statements"] for s in row]).value_counts()
        classes = sorted(counts.index[counts >= int(sc["min_count"])], key=lambda c: (-counts[c], c))
        folds = {int(f): part for part, fs in self.options["folds"].items() for f in fs}
        table["split"] = table["strat_fold"].map(folds)
        unknown = sorted(set(table.loc[table["split"].isna(), "strat_fold"].astype(str)))
        if unknown:
            raise DataError(icd_path, f"strat_fold value(s) {', '.join(unknown[:5])} are in no split of data.folds",
                            "name every fold under data.folds (train / val / test)")
        table = table[self._in_scenario(table, sc)]
        records = self._records(table, rl_path, mm_path)
        per_record = dict(zip(records.index, table["statements"]))
        tasks = {"icd": LabelTask.from_lists("icd", classes, per_record, {c: f"ICD-10 {c}" for c in classes})}
        tasks["sex"] = LabelTask.binary("sex", "female", records["sex"].dropna() == "F", "sex recorded as F rather than M")
        notes = [f"scenario {sc['name']}: {len(records)} records, {len(classes)} statements with >= {sc['min_count']} records"]
        return DatasetIndex(self.name, records, tasks, native_fs=500.0, notes=notes)

    @staticmethod
    def _in_scenario(table: pd.DataFrame, sc: dict) -> pd.Series:
        """Upstream's subsets: the setting's flag(s) true, at least one statement, and on validation / test records
        (or training ones, if asked) only the first ECG of a stay."""
        def flags(columns):
            return table[list(columns)].astype(str).apply(lambda c: c.str.lower().isin(("true", "1"))).all(axis=1)

        has = table["n_codes"] > 0  # upstream's has_statements: the table's own codes, before they are cut
        first = pd.to_numeric(table["ecg_no_within_stay"], errors="coerce") == 0
        anyone = pd.Series(True, index=table.index)
        train = (table["split"] == "train") & flags(sc["train_setting"]) & has & (first if sc.get("train_first_only") else anyone)
        rest = (table["split"] != "train") & flags(sc["test_setting"]) & has & (first if sc.get("test_first_only") else anyone)
        return train | rest

    def _records(self, table: pd.DataFrame, rl_path: Path, mm_path: Path) -> pd.DataFrame:
        rl = pd.read_csv(rl_path).set_index("study_id")
        mm = pd.read_csv(mm_path, low_memory=False).set_index("study_id")
        lost = sorted(set(table["study_id"]) - set(rl.index))
        if lost:
            raise DataError(rl_path, f"{len(lost)} study id(s) of the ICD table are not in record_list.csv (e.g. {lost[0]})",
                            "use MIMIC-IV-ECG and MIMIC-IV-ECG-ICD of matching versions")
        report_cols = sorted((c for c in mm.columns if c.startswith("report_")), key=lambda c: int(c.split("_")[1]))
        mm = mm.reindex(table["study_id"])  # the scenario's studies only, in its order (machine_measurements holds every study)
        records = pd.DataFrame(index=pd.Index(table["study_id"].astype(str), name="record_id"))
        records["path"] = rl.loc[table["study_id"], "path"].to_numpy()
        records["patient_id"] = table["subject_id"].astype(str).to_numpy()
        records["report"] = (mm.apply(join_reports, axis=1, columns=report_cols).fillna("").to_numpy()
                             if report_cols and len(mm) else "")
        records["label_text"] = records["report"]
        records["fold"] = pd.array([pd.NA] * len(records), dtype="Int64")
        records["split"] = table["split"].to_numpy()
        records["age"] = pd.to_numeric(table["age"], errors="coerce").to_numpy()
        records["sex"] = table["gender"].where(table["gender"].isin(["F", "M"])).to_numpy()
        for column in ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis"):
            if column in mm:  # the raw machine measurements; the targets built from them are configs/protocols/regression.yaml's
                records[column] = pd.to_numeric(mm[column], errors="coerce").to_numpy()
        return records
