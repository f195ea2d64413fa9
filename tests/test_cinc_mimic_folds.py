"""CinC-layout readers (CPSC2018, CSN), CPSC2018's original release, MIMIC-IV-ECG and persisted folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat

from bench.config import load_config
from bench.data.cinc import CinCReader, CPSC2018OriginalReader
from bench.data.errors import DataError
from bench.data.folds import persisted_folds, stratified_folds
from bench.data.leads import STANDARD_LEADS
from bench.data.mimic import MimicIVECGReader
from bench.data.registry import open_from_config
from bench.data.wfdb_io import write_wfdb


@pytest.mark.shared_data
def test_cinc_samples_take_labels_and_split_from_merl_table(shared):
    reader = open_from_config(load_config(data="cinc_samples"))
    ix = reader.index
    assert sorted(ix.records.index) == [f"A{i:04d}" for i in range(1, 11)]
    merl = pd.concat(pd.read_csv(shared / f"splits_merl/icbeb/icbeb_{s}.csv").assign(split=s)
                     for s in ("train", "val", "test")).set_index("filename")
    task = ix.tasks["all"]
    for rid in ix.records.index:
        expected = [c for c in task.classes if merl.loc[rid, c] == 1]
        assert [c for c in task.classes if task.labels.loc[rid, c] == 1] == expected
        assert ix.records.loc[rid, "split"] == merl.loc[rid, "split"]
    assert reader.read("A0001").signal.shape == (12, 7500)
    sex = ix.tasks["sex"].labels["female"]  # from each header's #Sex line, every record here says
    headers = {rid: (reader.root / ix.records.loc[rid, "path"]).with_suffix(".hea").read_text() for rid in ix.records.index}
    assert sex.to_dict() == {rid: int("#Sex: Female" in text) for rid, text in headers.items()}


def test_header_sex_leaves_out_records_that_do_not_say():
    from bench.data.cinc import header_patient_tasks

    records = pd.DataFrame({"sex": ["Female", "male", "Unknown", None, " F "]}, index=["a", "b", "c", "d", "e"])
    assert header_patient_tasks(records)["sex"].labels["female"].to_dict() == {"a": 1, "b": 0, "e": 1}
    assert header_patient_tasks(pd.DataFrame({"sex": [None, "NaN"]}, index=["a", "b"])) == {}


@pytest.mark.shared_data
def test_csn_labels_use_exact_tokens_not_substrings(shared, tmp_path):
    """MERL counted AFIB rows as AF too (substring match); exact-token membership must not."""
    table = pd.read_csv(shared / "splits_merl/chapman/chapman_val.csv")
    tokens = table["diagnose"].fillna("").str.split(",")
    afib_only = table[tokens.map(lambda t: "AFIB" in t and "AF" not in t)].iloc[0]
    rid = afib_only["ecg_path"].rsplit("/", 1)[-1].removesuffix(".mat")
    root = tmp_path / "csn" / "WFDBRecords" / "01" / "010"
    write_wfdb(root / rid, np.zeros((12, 5000), np.float32), 500, STANDARD_LEADS, mat=True, comments=["Dx: 164889003"])
    reader = CinCReader("csn", tmp_path / "csn", {"vocabulary": "csn", "labels_from": "merl",
                                                  "merl_split_dir": shared / "splits_merl/chapman",
                                                  "folds_dir": tmp_path / "folds"})
    labels = reader.index.tasks["all"].labels.loc[rid]
    assert labels["AFIB"] == 1 and labels["AF"] == 0
    assert reader.index.records.loc[rid, "split"] == "val"


def test_demo_cinc_layouts_map_snomed_to_label_space(demo_root, tmp_path):
    cpsc = CinCReader("demo_cpsc2018", demo_root / "cpsc2018", {"vocabulary": "cpsc2018", "folds_dir": tmp_path})
    csn = CinCReader("demo_csn", demo_root / "csn", {"vocabulary": "csn", "folds_dir": tmp_path})
    assert len(cpsc.index.tasks["all"].classes) == 9 and len(csn.index.tasks["all"].classes) == 38
    assert len(cpsc.index.tasks["all"].labels) == 60  # the CPSC demo labels every record
    for rid, dx in cpsc.index.records["dx_snomed"].items():
        if "164889003" in dx.split(","):
            assert cpsc.index.tasks["all"].labels.loc[rid, "AFIB"] == 1
    for rid, dx in csn.index.records["dx_snomed"].items():
        if "59118001" in dx.split(","):
            assert csn.index.tasks["all"].labels.loc[rid, "RBBB"] == 1
    assert set(cpsc.index.records["split"]) == {"train", "val", "test"}
    assert csn.read(csn.index.records.index[0]).signal.shape == (12, 5000)


def test_cpsc2018_original_release(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):
        savemat(tmp_path / f"A{i + 1:04d}.mat",
                {"ECG": {"sex": "Male", "age": 60, "data": rng.normal(0, 0.2, (12, 3000 + 500 * i))}})
    pd.DataFrame({"Recording": [f"A{i + 1:04d}" for i in range(12)], "First_label": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 2],
                  "Second_label": [None, 6, None, None, None, None, None, None, None, None, 7, None],
                  "Third_label": [None] * 12}).to_csv(tmp_path / "REFERENCE.csv", index=False)
    reader = CPSC2018OriginalReader("cpsc_orig", tmp_path, {"folds_dir": tmp_path / "folds"})
    y = reader.index.tasks["all"].labels
    assert list(y.loc["A0002"][y.loc["A0002"] == 1].index) == ["AFIB", "PAC"]
    assert y.loc["A0001", "NORM"] == 1 and y.loc["A0009", "STE"] == 1 and y.loc["A0011", "VPC"] == 1
    ecg = reader.read("A0003")
    assert ecg.signal.shape == (12, 4000) and ecg.fs == 500
    savemat(tmp_path / "A0004.mat", {"ECG": {"data": np.zeros((8, 100))}})
    with pytest.raises(DataError, match=r"A0004\.mat: wrong lead count"):
        reader.read("A0004")


def _mimic_tree(root):
    rng = np.random.default_rng(0)
    rows, mm = [], []
    for k, sid in enumerate([40000001, 40000002, 40000003]):
        rel = f"files/p1000/p10000032/s{sid}/{sid}"
        write_wfdb(root / rel, rng.normal(0, 0.2, (12, 5000)).astype(np.float32), 500, STANDARD_LEADS)
        rows.append({"subject_id": 10000032, "study_id": sid, "file_name": sid, "ecg_time": "2180-07-23", "path": rel})
        reports = {0: ["Sinus rhythm", "Left axis deviation", ""], 1: ["", None, None], 2: ["Atrial fibrillation", None, "Abnormal ECG"]}[k]
        mm.append({"subject_id": 10000032, "study_id": sid, **{f"report_{j}": r for j, r in enumerate(reports)}})
    pd.DataFrame(rows).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(mm).to_csv(root / "machine_measurements.csv", index=False)


def test_mimic_iv_ecg_reports_joined_and_short_ones_dropped(tmp_path):
    _mimic_tree(tmp_path)
    reader = MimicIVECGReader("mimic", tmp_path, {"min_report_chars": 5})
    rec = reader.index.records
    assert list(rec.index) == ["40000001", "40000003"]
    assert rec.loc["40000001", "report"] == "Sinus rhythm. Left axis deviation."
    assert rec.loc["40000003", "report"] == "Atrial fibrillation. Abnormal ECG."
    assert "dropped 1" in reader.index.notes[0]
    assert reader.read("40000003").signal.shape == (12, 5000)


def test_stratified_folds_are_balanced_grouped_and_persisted(tmp_path):
    rng = np.random.default_rng(0)
    y = pd.DataFrame(rng.random((400, 5)) < [0.5, 0.2, 0.1, 0.05, 0.3], columns=list("abcde")).astype(int)
    y.index = [f"r{i}" for i in range(400)]
    groups = pd.Series([f"p{i // 2}" for i in range(400)], index=y.index)  # two records per patient
    folds = stratified_folds(y, groups, 10, seed=3)
    assert sorted(folds.unique()) == list(range(1, 11))
    assert (folds.groupby(groups).nunique() == 1).all(), "a patient's records must share a fold"
    per_fold = y.groupby(folds).mean()
    assert (per_fold.max() - per_fold.min()).max() < 0.15  # label prevalence similar in every fold
    a = persisted_folds(tmp_path, "d", y, groups, 10, seed=3)
    files = list(tmp_path.glob("d-folds10-seed3-*.csv"))
    assert len(files) == 1
    b = persisted_folds(tmp_path, "d", y, groups, 10, seed=3)
    pd.testing.assert_series_equal(a, b, check_names=False)
    assert not persisted_folds(tmp_path, "d", y, groups, 10, seed=4).equals(a)


def test_tasks_have_versions_and_their_splits_export_as_files_with_hashes(tmp_path):
    """`bench splits export`: per task the fixed split, the cv10 folds and each label draw as CSV, their sha256 and the
    task's version in splits.json; the draw is the one the linear suite trains on; another label map is another version."""
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.config import load_config
    from bench.data.registry import open_from_config
    from bench.data.splits import task_fingerprint, task_version
    from bench.suites.protocols import protocol_splits

    out = tmp_path / "splits"
    args = ["splits", "export", "ptbxl_1819", "--out", str(out), "--tasks", "super,form", "--fractions", "0.1,1", "--seeds", "0,1"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "ptbxl_1819/super@1: 1819 records, 4 file(s)" in done.output and "ptbxl_1819/form@1: 634 records" in done.output
    manifest = json.loads((out / "ptbxl_1819" / "splits.json").read_text())
    import hashlib

    for name, digest in manifest["tasks"]["super"]["files"].items():
        assert hashlib.sha256((out / "ptbxl_1819" / name).read_bytes()).hexdigest() == digest
    fixed = pd.read_csv(out / "ptbxl_1819" / "super" / "fixed.csv", dtype=str)
    assert fixed["split"].value_counts().to_dict().keys() == {"train", "val", "test"} and len(fixed) == 1819
    index = open_from_config(load_config(data="ptbxl_1819")).index
    (split,) = protocol_splits(index.records, index.task("super").labels, "fixed", 0.1, 1)
    drawn = pd.read_csv(out / "ptbxl_1819" / "super" / "fixed_train_0.1_seed1.csv", dtype=str)["record_id"]
    assert sorted(drawn) == sorted(map(str, split.train))
    task = index.task("super")
    other = type(task)(task.name, task.classes, task.labels.drop(columns="MI").assign(MI=0)[task.classes])
    assert task_version("ptbxl_1819", "super", task_fingerprint(index.records, other)).startswith("ptbxl_1819/super@unversioned-")


def test_split_files_are_described_in_croissant_that_mlcroissant_reads(tmp_path):
    """croissant.json beside the split files: mlcroissant itself loads it, checks it, and reads every file's records back
    (the ids of fixed.csv and the folds of cv10_folds.csv), each FileObject carrying its file's sha256."""
    import json

    import mlcroissant as mlc
    import pandas as pd
    from typer.testing import CliRunner

    from bench.cli import app

    out = tmp_path / "splits"
    done = CliRunner().invoke(app, ["splits", "export", "ptbxl_1819", "--out", str(out), "--tasks", "super", "--fractions", "0.1",
                                    "--seeds", "0"])
    assert done.exit_code == 0, done.output
    folder = out / "ptbxl_1819"
    described = json.loads((folder / "croissant.json").read_text())
    manifest = json.loads((folder / "splits.json").read_text())
    digests = {d["contentUrl"]: d["sha256"] for d in described["distribution"]}
    assert digests == manifest["tasks"]["super"]["files"]
    dataset = mlc.Dataset(jsonld=folder / "croissant.json")
    fixed = pd.read_csv(folder / "super" / "fixed.csv", dtype=str)
    rows = list(dataset.records(record_set="super_fixed"))
    assert sorted(r["super_fixed/record_id"].decode() for r in rows) == sorted(fixed["record_id"])
    folds = [r["super_cv10_folds/fold"] for r in dataset.records(record_set="super_cv10_folds")]
    assert sorted(set(folds)) == list(range(1, 11))
