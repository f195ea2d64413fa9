"""The reality check's MIMIC-IV-ECG tasks (data=mimic_iv_ecg_icd) on a MIMIC-IV-ECG-layout folder made here: its
records, splits and ICD-10 statements equal those of its own prepare_mimic_ecg, its measurements those of its own
mimic_preprocessing.py lines (tests/golden/mimic_tasks, scripts/golden/regenerate.py --mimic-tasks), and the tasks run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from bench.cli import app
from bench.config import load_config
from bench.data.errors import DataError
from bench.data.registry import open_dataset
from bench.suites.regression import target_values

GOLDEN = Path(__file__).parent / "golden" / "mimic_tasks"
_SPEC = importlib.util.spec_from_file_location("golden_synthetic", Path(__file__).parents[1] / "scripts" / "golden" / "synthetic.py")
SYNTHETIC = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(SYNTHETIC)
#: bench's regression targets -> the reality check's column names
TARGETS = {"RR": "RR", "QRS": "QRS", "QT": "QT", "QTc": "QTc", "P_axis": "P_wave_axis", "QRS_axis": "QRS_axis", "T_axis": "T_wave_axis"}


def _write(root: Path, n: int = 120) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    icd, mm, record_list = SYNTHETIC.mimic_tables(n)
    root.mkdir(parents=True, exist_ok=True)
    icd.to_csv(root / "records_w_diag_icd10.csv", index=False)
    mm.to_csv(root / "machine_measurements.csv", index=False)
    record_list.to_csv(root / "record_list.csv", index=False)
    return icd, mm, record_list


def _reader(root: Path, min_count: int):
    cfg = load_config([f"data.root={root}", f"data.scenario.min_count={min_count}"], data="mimic_iv_ecg_icd")
    return open_dataset(OmegaConf.to_container(cfg.data, resolve=True)), cfg


def test_records_splits_and_statements_are_the_reality_checks(tmp_path):
    expected = json.loads((GOLDEN / "expected.json").read_text())
    tables = _write(tmp_path)
    assert SYNTHETIC.tables_sha256(*tables) == expected["tables_sha256"], "the made-up tables differ from the fixture's"
    index = _reader(tmp_path, expected["min_count"])[0].index
    assert sorted(index.records.index) == sorted(expected["records"])
    folds = {"train": range(18), "val": [18], "test": [19]}
    for rid, want in expected["records"].items():
        assert want["strat_fold"] in folds[index.records.at[rid, "split"]]
    icd = index.task("icd")
    assert sorted(icd.classes) == sorted(expected["classes"])
    for rid, want in expected["records"].items():
        row = icd.labels.loc[rid] if rid in icd.labels.index else pd.Series(0, index=icd.classes)
        assert sorted(c for c in icd.classes if row[c]) == want["labels"], rid


def test_measurement_targets_are_the_reality_checks(tmp_path):
    expected = json.loads((GOLDEN / "expected.json").read_text())
    _write(tmp_path)
    reader, cfg = _reader(tmp_path, expected["min_count"])
    records = reader.index.records
    specs = OmegaConf.to_container(cfg.regression.targets, resolve=True)
    for ours, theirs in TARGETS.items():
        values = target_values(records, specs[ours])
        want = {rid: m[theirs] for rid, m in expected["measurements"].items() if rid in records.index and m[theirs] is not None}
        assert sorted(values.index) == sorted(want), ours  # the same records have a value (valid ranges, RR of 0)
        assert np.allclose([values[r] for r in sorted(want)], [want[r] for r in sorted(want)], rtol=1e-12), ours
    assert (target_values(records, specs["QRS_axis"]) < 0).any()  # signed targets keep their negative values


def test_sex_and_age_come_from_the_icd_table(tmp_path):
    icd, _, _ = _write(tmp_path)
    index = _reader(tmp_path, 5)[0].index
    gender = icd.set_index(icd["study_id"].astype(str))["gender"]
    sex = index.task("sex").labels["female"]
    assert len(sex) == len(index.records) and ((gender[sex.index] == "F") == (sex == 1)).all()
    assert (index.records["age"] == icd.set_index(icd["study_id"].astype(str))["age"][index.records.index]).all()


def test_a_code_list_that_is_not_a_literal_is_refused_naming_its_row_and_never_run(tmp_path):
    icd, _, _ = _write(tmp_path)
    marker = tmp_path / "ran"
    icd.loc[3, "all_diag_all"] = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    icd.to_csv(tmp_path / "records_w_diag_icd10.csv", index=False)
    with pytest.raises(DataError, match="row 3: column 'all_diag_all' is not a list"):
        _ = _reader(tmp_path, 5)[0].index
    assert not marker.exists()
    (tmp_path / "records_w_diag_icd10.csv").unlink()
    with pytest.raises(Exception, match="records_w_diag_icd10.csv"):
        _ = _reader(tmp_path, 5)[0].index


def test_the_tasks_run_end_to_end_on_wfdb_records(tmp_path):
    """`bench run` of the regression suite (QTc, age) and the linear suite (icd, sex) on WFDB records of the layout."""
    import wfdb

    root = tmp_path / "mimic-iv-ecg"
    icd, _, record_list = _write(root, n=400)
    rng = np.random.default_rng(0)
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    for path in record_list["path"]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(Path(path).name, fs=500, units=["mV"] * 12, sig_name=leads, p_signal=rng.normal(0, 0.3, (5000, 12)),
                    fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str((root / path).parent))
    common = ["--methods", "signal_stats", "--datasets", "mimic_iv_ecg_icd", "--seeds", "0", f"data.root={root}",
              "data.scenario.min_count=20", "data.scenario.test_first_only=false", f"paths.cache={tmp_path}/cache", f"tracking.uri=sqlite:///{tmp_path}/m.db",
              f"tracking.artifacts={tmp_path}/art", "run.n_boot=20"]
    cli = CliRunner()
    regression = cli.invoke(app, ["run", "--suite", "regression", "--tasks", "QTc,age", *common])
    assert regression.exit_code == 0 and "not applicable" not in regression.output, regression.output
    linear = cli.invoke(app, ["run", "--suite", "linear", "--tasks", "icd,sex", *common])
    assert linear.exit_code == 0, linear.output
    table = cli.invoke(app, ["table", "regression", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    assert table.exit_code == 0 and "QTc" in table.output and "ms" in table.output, table.output
