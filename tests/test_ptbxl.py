"""PTB-XL reader: the real 1,819-record subset, the official layout (written by the demo generator)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.config import load_config
from bench.data.errors import DataError, DatasetNotFound
from bench.data.ptbxl import PTBXLReader, normalise_code
from bench.data.registry import open_from_config
from bench.data.wfdb_io import read_wfdb

MERL_TASKS = {"super": "super_class", "sub": "sub_class", "form": "form", "rhythm": "rhythm"}


@pytest.fixture(scope="module")
def subset(shared):
    cfg = load_config(data="ptbxl_1819")
    return open_from_config(cfg)


@pytest.mark.shared_data
def test_subset_counts_folds_and_units(subset):
    ix = subset.index
    assert len(ix.records) == 1819
    assert sorted(ix.records["fold"].unique()) == list(range(1, 11))
    counts = {name: len(t.labels) for name, t in ix.tasks.items()}
    assert counts == {"super": 1819, "sub": 1819, "form": 634, "rhythm": 1769, "all": 1819, "sex": 1819}
    sex = ix.tasks["sex"].labels  # the binary patient task: female 922, male 897 (every record has its sex)
    assert list(sex.columns) == ["female"] and int(sex["female"].sum()) == 922
    assert (sex["female"] == (ix.records.loc[sex.index, "sex"].astype(int) == 1)).all()
    assert [len(ix.tasks[t].classes) for t in ("super", "sub", "form", "rhythm", "all")] == [5, 23, 19, 12, 71]
    assert ix.units == "zscore" and ix.prefiltered
    assert set(ix.records["split"]) == {"train", "val", "test"}
    assert (ix.records.loc[ix.records["fold"] == 10, "split"] == "test").all()


@pytest.mark.shared_data
@pytest.mark.parametrize("task", list(MERL_TASKS))
def test_subset_labels_equal_merl_tables(subset, shared, task):
    """Our task definitions reproduce MERL's label tables record for record (columns by name)."""
    ours = subset.index.tasks[task].labels.rename(columns=normalise_code)
    frames = [pd.read_csv(shared / f"splits_merl/ptbxl/{MERL_TASKS[task]}/ptbxl_{MERL_TASKS[task]}_{s}.csv")
              for s in ("train", "val", "test")]
    merl = pd.concat(frames).set_index("ecg_id")
    merl.index = merl.index.astype(str)
    classes = [c for c in merl.columns if c in ours.columns]
    assert len(classes) == len(subset.index.tasks[task].classes)
    theirs = merl.loc[merl.index.intersection(subset.index.records.index), classes]
    theirs = theirs[theirs.sum(axis=1) > 0]
    assert set(theirs.index) == set(ours.index)
    np.testing.assert_array_equal(ours.loc[theirs.index, classes].to_numpy(), theirs.to_numpy())


@pytest.mark.shared_data
def test_subset_all_task_uses_every_statement_key(subset):
    """`all` = every scp_codes key whatever its likelihood (PTB-XL benchmark); e.g. SR at 0.0 counts."""
    ix = subset.index
    rec = ix.records.loc["9"]
    assert "SR" in rec["scp_codes"]
    row = ix.tasks["all"].labels.loc["9"]
    assert row["SR"] == 1 and row["NORM"] == 1 and row.sum() == 2


@pytest.mark.shared_data
def test_subset_metadata_and_signal(subset):
    rec = subset.index.records
    for col in ("age", "sex", "site", "device", "static_noise", "report", "patient_id"):
        assert col in rec
    assert rec.loc["9", "report"].startswith("sinusrhythmus")
    ecg = subset.read("9")
    assert ecg.signal.shape == (12, 1000) and ecg.units == "zscore" and ecg.fs == 100
    assert abs(float(ecg.signal.std(axis=1).mean()) - 1.0) < 0.1  # z-scored per lead, not mV


@pytest.mark.shared_data
def test_hr_records_in_cinc_layout_match_subset_metadata(shared):
    """HR00001.. are PTB-XL ecg_ids in the CinC layout: gain/baseline from the header give mV."""
    ecg = read_wfdb(shared / "wfdb_samples/cinc2020/HR00001", expected_fs=500)
    assert ecg.signal.shape == (12, 5000) and ecg.leads[0] == "I"
    assert 0.05 < np.abs(ecg.signal).max() < 10  # millivolt range


@pytest.mark.parametrize("rate,length", [(100, 1000), (500, 5000)])
def test_demo_tree_reads_through_official_reader(demo_root, rate, length):
    reader = PTBXLReader("demo", demo_root / "ptbxl", {"sampling_rate": rate})
    ix = reader.index
    assert len(ix.records) == 120
    assert set(ix.tasks) == {"super", "sub", "form", "rhythm", "all", "sex"}
    assert ix.tasks["rhythm"].labels.shape[0] == 120  # every demo record has one rhythm
    ecg = reader.read(ix.records.index[0])
    assert ecg.signal.shape == (12, length) and ecg.fs == rate and ecg.units == "mV"


def test_demo_labels_follow_scp_codes(demo_root):
    ix = PTBXLReader("demo", demo_root / "ptbxl").index
    for rid, codes in ix.records["scp_codes"].items():
        if "AFIB" in codes:
            assert ix.tasks["rhythm"].labels.loc[rid, "AFIB"] == 1
        if "CRBBB" in codes:
            assert ix.tasks["super"].labels.loc[rid, "CD"] == 1


def test_wrong_sampling_rate_option_and_missing_root(tmp_path, demo_root):
    with pytest.raises(DataError, match="sampling_rate must be 100 or 500"):
        PTBXLReader("demo", demo_root / "ptbxl", {"sampling_rate": 250}).read("1")
    with pytest.raises(DatasetNotFound, match="PTB-XL folder not found"):
        PTBXLReader("ptbxl", tmp_path / "nowhere").index


def test_unknown_statement_code_is_reported(tmp_path, demo_root):
    import shutil

    root = tmp_path / "ptbxl"
    shutil.copytree(demo_root / "ptbxl", root)
    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    db.loc[1, "scp_codes"] = "{'XYZ': 100.0}"
    db.to_csv(root / "ptbxl_database.csv")
    with pytest.raises(DataError, match="XYZ"):
        PTBXLReader("demo", root).index
