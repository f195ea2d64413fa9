"""A researcher's own folder of records and own runs: a workspace apart from the publication, any CinC source, tables
that never mix what cannot be compared, the data gate, and bad input that stops early with one line naming the fix."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench import REPO_ROOT
from bench.cli import app

cli = CliRunner()
FAST = ["encoder.preset=tiny", "pretrain.epochs=1", "pretrain.batch_size=32", "linear.epochs=3", "run.n_boot=20"]


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_runs_tables_and_figures_go_to_the_workspace_never_to_results(tmp_path):
    before = _tree_hash(REPO_ROOT / "results")
    home = Path(os.environ["BENCH_HOME"])
    args = [*FAST, "data.demo.n_records=120", f"paths.cache={tmp_path}/cache"]
    for command in (["run", "--suite", "linear", "--methods", "random,signal_stats", "--tasks", "super"], ["leaderboard"],
                    ["table", "linear"], ["plot", "forest", "--dataset", "demo_ptbxl"], ["runs", "list"]):
        result = cli.invoke(app, [*command, *args])
        assert result.exit_code == 0, (command, result.output)
        assert f"workspace: {home}" in result.output
    assert (home / "mlflow.db").is_file() and (home / "leaderboard.csv").is_file() and list((home / "figures").glob("*.png"))
    assert _tree_hash(REPO_ROOT / "results") == before  # only `bench publish` writes the publication


def test_a_table_column_never_mixes_records_or_budgets(tmp_path):
    store = [f"tracking.uri=sqlite:///{tmp_path}/s.db", f"tracking.artifacts={tmp_path}/a", f"paths.cache={tmp_path}/cache"]
    # the case: methods of a small 1-epoch run and of a larger run at two budgets, in one store
    runs = [["--methods", "merit_mse,random", "data.demo.n_records=120"],
            ["--methods", "merit,signal_stats", "data.demo.n_records=160"],
            ["--methods", "merit_cma", "data.demo.n_records=160", "pretrain.epochs=2"]]
    for extra in runs:
        result = cli.invoke(app, ["run", "--suite", "linear", "--tasks", "super", *FAST, *store, *extra])
        assert result.exit_code == 0, result.output
    table = cli.invoke(app, ["table", "linear", *store]).output
    blocks = {tuple(sorted(line.split("|")[1].strip() for line in b.splitlines() if line.startswith("| ") and "method" not in line)): b
              for b in table.split("### ")[1:]}
    blocks = {tuple(name.split(" ")[0].split("@")[0] for name in names): b for names, b in blocks.items()}
    assert set(blocks) == {("merit_mse", "random"), ("merit", "signal_stats"), ("merit_cma", "signal_stats")}, table
    for block in blocks.values():
        title = block.splitlines()[0]
        assert "records: split" in title and "pretraining budget:" in title
        assert "(n=" in block.splitlines()[2]  # every column says its test records
    assert "1 epochs x" in blocks[("merit", "signal_stats")].splitlines()[0]
    assert "2 epochs x" in blocks[("merit_cma", "signal_stats")].splitlines()[0]


def _write_leads(folder: Path, names: list[str], n: int = 12, fs: float = 200.0, seconds: float = 10.0) -> None:
    from bench.data.wfdb_io import write_wfdb

    rng = np.random.default_rng(0)
    codes = ["426783006", "164889003", "270492004"]
    for i in range(n):
        t = np.arange(int(fs * seconds)) / fs
        signal = np.stack([np.sin(2 * np.pi * (1 + 0.1 * i + j) * t) + 0.05 * rng.normal(size=t.size) for j in range(len(names))])
        write_wfdb(folder / f"A{i + 1:04d}", signal, fs, names, mat=True, comments=[f"Dx: {codes[i % 3]}"])


def test_a_two_lead_dataset_declares_its_leads_and_twelve_lead_encoders_are_refused_or_zero_filled(tmp_path):
    folder = tmp_path / "cpsc2021"
    _write_leads(folder, ["I", "II"])
    data = ["data.root=" + str(folder), "data.merl_split_dir=null", "data.expected_fs=200", "data.n_folds=3",
            "data.splits={train: [1], val: [2], test: [3]}", f"paths.cache={tmp_path}/cache"]
    refused = cli.invoke(app, ["data", "verify", "cpsc2018", *data])
    assert refused.exit_code == 1 and "wrong lead count: 2 signals (I, II), expected 12" in refused.output
    assert "data.leads=[I,II]" in refused.output
    two = [*data, "data.leads=[I,II]"]
    ok = cli.invoke(app, ["data", "verify", "cpsc2018", *two])
    assert ok.exit_code == 0, ok.output
    run = ["run", "--suite", "linear", "--methods", "signal_stats", "--datasets", "cpsc2018", *FAST, *two]
    twelve = cli.invoke(app, run)
    assert twelve.exit_code == 2 and "signal_stats reads leads I, II, III" in twelve.output
    assert "preprocess.zero_fill_leads=true" in twelve.output
    filled = cli.invoke(app, [*run, "preprocess.zero_fill_leads=true"])
    assert filled.exit_code == 0, filled.output


def test_a_real_cinc_2021_folder_of_mixed_sources(shared, tmp_path):
    mixed = shared / "wfdb_samples" / "cinc2021_mixed"
    if not mixed.is_dir():
        pytest.skip("no cinc2021_mixed folder")
    from bench.config import load_config
    from bench.data.registry import open_from_config

    index = open_from_config(load_config([f"paths.cache={tmp_path}/cache"], data="cinc2021_mixed")).index
    assert index.records["source"].value_counts().to_dict() == {"chapman_ningbo": 45, "ptbxl": 17, "georgia": 11, "cpsc2018": 4}
    assert index.records["split"].notna().all() and set(index.records["split_from"]) == {"merl", "folds"}
    assert len(index.tasks["all"].classes) == 26 and not index.problems
    verified = cli.invoke(app, ["data", "verify", "cinc2021_mixed", f"paths.cache={tmp_path}/cache"])
    assert verified.exit_code == 0 and "read 77 signals (77 readable)" in verified.output  # Georgia's "E00271.mat" headers read
    assert "JS11438: flat lead(s) V1, V2, V3, V4, V5, V6" in verified.output  # a real record's flat precordial leads
    as_csn = cli.invoke(app, ["data", "verify", "csn", f"data.root={mixed}", f"paths.cache={tmp_path}/cache"])
    assert as_csn.exit_code == 1  # the gate: Georgia / PTB-XL / CPSC2018 records are not csn records
    assert "records of other sources are left out: cpsc2018 4, georgia 11, ptbxl 17" in as_csn.output
    own = cli.invoke(app, ["run", "--suite", "linear", "--methods", "signal_stats", "--datasets", "cinc2021_mixed", *FAST,
                           f"paths.cache={tmp_path}/cache"])
    assert own.exit_code == 0, own.output
    csn = cli.invoke(app, ["run", "--suite", "linear", "--methods", "signal_stats", "--datasets", "csn", f"data.root={mixed}",
                           "data.merl_split_dir=null", *FAST, f"paths.cache={tmp_path}/cache"])
    assert "unknown config key" not in csn.output  # --datasets X takes X's own options


def test_embed_a_wfdb_folder_writes_ids_splits_labels_and_embeddings(shared, tmp_path):
    mixed = shared / "wfdb_samples" / "cinc2021_mixed"
    out = tmp_path / "embeddings.parquet"
    result = cli.invoke(app, ["embed", "--method", "signal_stats", "--wfdb", str(mixed), "--out", str(out),
                              f"paths.cache={tmp_path}/cache"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert len(table) == 77 and table["record_id"].is_unique and {"E00271", "HR03961", "A0689"} <= set(table["record_id"])
    assert table["split"].notna().all() and len(table["embedding"].iloc[0]) > 0
    assert {"labels:all", "method", "checkpoint_hash", "input_contract", "split_hash"} <= set(table.columns)
    again = cli.invoke(app, ["embed", "--method", "signal_stats", "--wfdb", str(mixed), "--out", str(tmp_path / "b.parquet"),
                             f"paths.cache={tmp_path}/cache"])
    assert again.exit_code == 0 and "prepare" not in again.output and "embed signal_stats" not in again.output  # caches reused
    named = cli.invoke(app, ["embed", "--method", "signal_stats", "--dataset", "cinc2021_mixed", "--out", str(tmp_path / "c.parquet"),
                             f"paths.cache={tmp_path}/cache"])
    assert named.exit_code == 0 and pd.read_parquet(tmp_path / "c.parquet")["split"].notna().all()


@pytest.mark.parametrize("args, expected", [
    (["--fractions", "0"], "--fractions '0': 0 is outside (0, 1]"),
    (["--fractions", "-0.5"], "outside (0, 1]"),
    (["--fractions", "1.5"], "outside (0, 1]"),
    (["--fractions", "abc"], "'abc' is not a number"),
    (["--seeds", "one"], "seeds are whole numbers"),
    (["--protocols", "cv11"], "unknown protocol(s) ['cv11']"),
])
def test_bad_arguments_stop_before_anything_runs(tmp_path, args, expected):
    result = cli.invoke(app, ["run", "--suite", "linear", "--methods", "random", *args, f"paths.cache={tmp_path}/cache"])
    assert result.exit_code == 2 and expected in result.output and "fix:" in result.output, result.output
    assert not (Path(os.environ["BENCH_HOME"]) / "artifacts").exists()  # nothing computed, nothing logged


def _npy(tmp_path: Path, x: np.ndarray) -> str:
    path = tmp_path / "x.npy"
    np.save(path, x.astype(np.float32))
    return str(path)


def _mv(n: int = 2, seconds: float = 10.0, fs: float = 500.0) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return np.stack([np.stack([np.sin(2 * np.pi * (1 + j) * t) for j in range(12)])] * n)


@pytest.mark.parametrize("case, expected", [
    ("nan_lead", "lead V3 has no valid sample"),
    ("half_nan", "lead II is 50 % NaN"),
    ("flat", "flat lead(s) V6"),
    ("adc", "look like ADC counts or microvolts"),
    ("short", "record of 0.10 s"),
])
def test_embed_refuses_signals_that_would_embed_silently_wrong(tmp_path, case, expected):
    x = _mv() if case != "short" else _mv(seconds=0.1)
    if case == "nan_lead":
        x[0, 8] = np.nan
    elif case == "half_nan":
        x[1, 1, : x.shape[-1] // 2] = np.nan
    elif case == "flat":
        x[0, 11] = 0.2
    elif case == "adc":
        x = x * 1000
    out = tmp_path / "e.npz"
    base = ["embed", "--method", "signal_stats", "--signals", _npy(tmp_path, x), "--fs", "500", "--out", str(out)]
    result = cli.invoke(app, base)
    assert result.exit_code == 2 and expected in result.output and "--skip-signal-checks" in result.output, result.output
    assert not out.exists()
    if case in ("flat", "adc"):
        assert cli.invoke(app, [*base, "--skip-signal-checks"]).exit_code == 0


def test_embed_without_weights_says_so_and_writes_record_ids(tmp_path):
    out = tmp_path / "e.npz"
    base = ["embed", "--method", "merit", "--signals", _npy(tmp_path, _mv()), "--fs", "500", "--out", str(out), "encoder.preset=tiny"]
    refused = cli.invoke(app, base)
    assert refused.exit_code == 2 and "merit needs weights" in refused.output and "--untrained" in refused.output
    assert cli.invoke(app, [*base, "--untrained"]).exit_code == 0
    with np.load(out) as z:
        assert list(z["record_ids"]) == ["x.npy[0]", "x.npy[1]"] and z["embedding"].shape[0] == 2


def test_empty_headers_and_unknown_codes_name_the_file_and_skip_on_request(tmp_path):
    folder = tmp_path / "cinc"
    _write_leads(folder, ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"], n=12, fs=500)
    (folder / "A0003.hea").write_text("")
    data = [f"data.root={folder}", "data.merl_split_dir=null", f"paths.cache={tmp_path}/cache"]
    empty = cli.invoke(app, ["data", "prepare", "cpsc2018", *data])
    assert empty.exit_code == 2 and "A0003.hea: empty WFDB header" in empty.output
    (folder / "A0003.hea").unlink()
    (folder / "A0004.hea").write_text((folder / "A0004.hea").read_text().replace("Dx: 426783006", "Dx: 999999"))
    unknown = cli.invoke(app, ["data", "prepare", "cpsc2018", *data])
    assert unknown.exit_code == 2 and "A0004.hea: unknown SNOMED-CT code(s) 999999" in unknown.output
    skipped = cli.invoke(app, ["data", "prepare", "cpsc2018", "--on-error", "skip", *data])
    assert skipped.exit_code == 0, skipped.output  # --on-error reaches the reader's index, not only the signals


def test_a_rate_the_reader_refuses_names_its_own_option(tmp_path):
    folder = tmp_path / "cinc"
    _write_leads(folder, ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"], n=12, fs=257)
    result = cli.invoke(app, ["data", "verify", "cpsc2018", f"data.root={folder}", "data.merl_split_dir=null",
                              f"paths.cache={tmp_path}/cache"])
    assert result.exit_code == 1 and "unexpected sampling rate 257 Hz" in result.output and "data.expected_fs=257" in result.output


def test_a_full_disk_is_refused_before_writing_and_a_failure_leaves_nothing(tmp_path, monkeypatch):
    import shutil

    from bench.config import load_config
    from bench.data import cache
    from bench.data.errors import DataError
    from bench.data.preprocess import PreprocessConfig
    from bench.data.registry import open_from_config

    reader = open_from_config(load_config(["data.demo.n_records=120", f"paths.cache={tmp_path}/cache"], data="demo_ptbxl"))
    real = shutil.disk_usage
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda p: real(p)._replace(free=10 << 20))
    with pytest.raises(DataError, match="not enough free disk space: preparing demo_ptbxl"):
        cache.prepare(reader, PreprocessConfig(), tmp_path / "cache", progress=False, workers=1)
    monkeypatch.setattr(cache.shutil, "disk_usage", real)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "_prepare_chunk", full)
    with pytest.raises(DataError, match="preparing demo_ptbxl stopped .*No space left on device.*partial cache entry was removed"):
        cache.prepare(reader, PreprocessConfig(), tmp_path / "cache", progress=False, workers=1)
    assert not [p for p in (tmp_path / "cache" / "prepared").iterdir() if p.name.startswith(".partial")]


def test_two_first_runs_on_a_fresh_sqlite_store_both_succeed(tmp_path):
    code = ("import sys; from bench.run.store import ResultStore; "
            f"s = ResultStore('sqlite:///{tmp_path}/fresh.db', '{tmp_path}/art', '{tmp_path}/locks'); "
            "s.log_run('linear', 'unit', {'unit_key': sys.argv[1]}, {'auroc': 0.5})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stderr=subprocess.PIPE, text=True) for i in range(3)]
    errors = [p.communicate()[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors


def test_embed_signals_with_ids_names_the_records(tmp_path):
    x = _npy(tmp_path, _mv(n=3))
    (tmp_path / "ids.txt").write_text("p1/ecg-a\np1/ecg-b\np2/ecg-a\n")
    out = tmp_path / "e.npz"
    result = cli.invoke(app, ["embed", "--method", "signal_stats", "--signals", x, "--fs", "500", "--ids", str(tmp_path / "ids.txt"),
                              "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as z:
        assert list(z["record_ids"]) == ["p1/ecg-a", "p1/ecg-b", "p2/ecg-a"]
    pd.DataFrame({"record_id": ["a", "b", "c"], "age": [1, 2, 3]}).to_csv(tmp_path / "manifest.csv", index=False)
    result = cli.invoke(app, ["embed", "--method", "signal_stats", "--signals", x, "--fs", "500", "--ids",
                              str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "m.npz")])
    assert result.exit_code == 0 and list(np.load(tmp_path / "m.npz")["record_ids"]) == ["a", "b", "c"]
    result = cli.invoke(app, ["embed", "--method", "signal_stats", "--signals", x, "--fs", "500", "--ids",
                              str(tmp_path / "ids.txt"), "--out", str(tmp_path / "e.parquet")])
    table = pd.read_parquet(tmp_path / "e.parquet")
    assert result.exit_code == 0 and list(table["record_id"]) == ["p1/ecg-a", "p1/ecg-b", "p2/ecg-a"]
    assert np.allclose(np.stack(table["embedding"]), np.load(out)["embedding"])
    for text, expected in (("a\nb\n", "2 ids for 3 records"), ("a\na\nb\n", "more than once"), ("a\n\nb\n", "empty id")):
        (tmp_path / "bad.txt").write_text(text)
        bad = cli.invoke(app, ["embed", "--method", "signal_stats", "--signals", x, "--fs", "500", "--ids", str(tmp_path / "bad.txt"),
                               "--out", str(tmp_path / "bad.npz")])
        assert bad.exit_code == 2 and expected in bad.output and not (tmp_path / "bad.npz").exists(), bad.output


def test_embed_an_original_cpsc_folder_with_or_without_its_reference_table(tmp_path):
    from scipy.io import savemat

    folder = tmp_path / "TrainingSet"
    folder.mkdir()
    for i, record in enumerate(_mv(n=4, seconds=15.0)):
        savemat(folder / f"A{i + 1:04d}.mat", {"ECG": {"sex": "Male", "age": 60, "data": record}})
    base = ["embed", "--method", "signal_stats", "--out", str(tmp_path / "e.parquet"), f"paths.cache={tmp_path}/cache"]
    hint = cli.invoke(app, [*base, "--wfdb", str(folder)])
    assert hint.exit_code == 2 and f"--mat {folder}" in hint.output, hint.output
    bare = cli.invoke(app, [*base, "--mat", str(folder)])
    assert bare.exit_code == 0 and "no REFERENCE.csv" in bare.output, bare.output
    table = pd.read_parquet(tmp_path / "e.parquet")
    assert list(table["record_id"]) == ["A0001", "A0002", "A0003", "A0004"] and len(table["embedding"].iloc[0]) > 0
    (folder / "REFERENCE.csv").write_text("Recording,First_label,Second_label,Third_label\nA0001,1,,\nA0002,2,,\nA0003,1,3,\nA0004,4,,\n")
    labelled = cli.invoke(app, [*base[:4], str(tmp_path / "l.parquet"), *base[5:], "--mat", str(folder)])
    assert labelled.exit_code == 0, labelled.output
    assert pd.read_parquet(tmp_path / "l.parquet")["labels:all"].notna().all()
