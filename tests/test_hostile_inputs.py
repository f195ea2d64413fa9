"""Impossible values refused where they enter, each with one line naming the source and the fix, and nothing left
behind: header gains and rates, --fs, NaN weights, config ranges and types, duplicated record ids, an unusable
workspace, a malformed bundle manifest, header bytes that are not text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.data.leads import STANDARD_LEADS
from bench.data.wfdb_io import write_wfdb

cli = CliRunner()


def _folder(root: Path, n: int = 6, fs: float = 500.0, names: tuple[str, ...] = ()) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(fs * 10)) / fs
    for i in range(n):
        signal = np.stack([np.sin(2 * np.pi * (1 + j) * t) + 0.05 * rng.normal(size=t.size) for j in range(12)])
        name = names[i] if names else f"A{i + 1:04d}"
        write_wfdb(root / name, signal, fs, STANDARD_LEADS, mat=True, comments=["Age: 50", "Sex: Male", "Dx: 426783006"])
    return root


def _edit_header(hea: Path, line: int, field: int, value: str) -> None:
    lines = hea.read_text().splitlines()
    parts = lines[line].split(" ")
    parts[field] = value
    lines[line] = " ".join(parts)
    hea.write_text("\n".join(lines) + "\n")


def _leftovers(cache: Path) -> list[str]:
    return [p.name for p in cache.rglob("*") if p.name.startswith(".partial") or p.name.endswith(".tmp")] if cache.exists() else []


def _embed_wfdb(folder: Path, tmp_path: Path, *extra: str):
    out = tmp_path / "e.parquet"
    result = cli.invoke(app, ["embed", "--method", "signal_stats", "--wfdb", str(folder), "--out", str(out),
                              f"paths.cache={tmp_path}/cache", *extra])
    return result, out


@pytest.mark.parametrize("line, field, value, expected", [
    (1, 2, "0/mV", "ADC gain '0/mV' is not a positive number"),
    (1, 2, "-1000/mV", "ADC gain '-1000/mV' is not a positive number"),
    (0, 2, "0", "sampling rate '0' is not a positive number"),
    (0, 2, "-500", "sampling rate '-500' is not a positive number"),
])
def test_impossible_header_values_are_refused_naming_the_file(tmp_path, line, field, value, expected):
    folder = _folder(tmp_path / "records")
    _edit_header(folder / "A0002.hea", line, field, value)
    result, out = _embed_wfdb(folder, tmp_path)
    assert result.exit_code == 2 and "A0002.hea" in result.output and expected in result.output, result.output
    assert "Traceback" not in result.output and not out.exists() and not _leftovers(tmp_path / "cache")
    skipped, out = _embed_wfdb(folder, tmp_path, "data.on_error=skip")  # left out, and listed with its reason
    assert skipped.exit_code == 0, skipped.output
    assert "skipped" in skipped.output and "A0002.hea" in skipped.output and expected in skipped.output


def test_header_bytes_that_are_not_text_are_refused(tmp_path):
    folder = _folder(tmp_path / "records")
    hea = folder / "A0003.hea"
    hea.write_bytes(hea.read_bytes().replace(b"Sex: Male", b"Sex: M\xe4nnlich"))
    result, out = _embed_wfdb(folder, tmp_path)
    assert result.exit_code == 2 and "A0003.hea: line" in result.output and "not UTF-8" in result.output, result.output
    assert not out.exists()


def test_two_folders_with_one_record_name_are_refused_naming_both(tmp_path):
    root = tmp_path / "two"
    _folder(root / "site_a", n=3)
    _folder(root / "site_b", n=3)
    result, out = _embed_wfdb(root, tmp_path)
    assert result.exit_code == 2 and "occur in more than one folder" in result.output, result.output
    assert "site_a/A0001.hea" in result.output and "site_b/A0001.hea" in result.output
    assert not out.exists() and not _leftovers(tmp_path / "cache")


@pytest.mark.parametrize("fs", ["0", "-500", "nan"])
def test_an_impossible_fs_is_one_line(tmp_path, fs):
    x = np.sin(np.arange(5000) / 50.0)[None, None].repeat(12, 1).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = cli.invoke(app, ["embed", "--method", "signal_stats", "--signals", str(tmp_path / "x.npy"), "--fs", fs,
                              "--out", str(tmp_path / "e.npz")])
    assert result.exit_code == 2 and "a sampling rate is a positive number of Hz" in result.output, result.output
    assert "record of" not in result.output and not (tmp_path / "e.npz").exists()


@pytest.mark.parametrize("override, expected", [
    ("modes.finetune.epochs=-1", "config modes.finetune.epochs=-1: input should be greater than or equal to 1"),
    ("modes.attentive.lr=abc", "config modes.attentive.lr='abc': input should be a valid number"),
    ("modes.common.lr=0", "config modes.common.lr=0"),
    ("pretrain.epochs=0", "config pretrain.epochs=0"),
    ("linear.lr=-1e-3", "config linear.lr=-0.001"),
    ("run.n_boot=0", "config run.n_boot=0"),
    ("preprocess.target_fs=0", "config preprocess.target_fs=0"),
    ("linear.val_fraction=half", "config linear.val_fraction='half'"),
])
def test_config_values_are_checked_against_the_declared_schema(tmp_path, override, expected):
    result = cli.invoke(app, ["run", "--suite", "linear", "--methods", "random", override, f"paths.cache={tmp_path}/cache"])
    assert result.exit_code == 2 and expected in result.output and "fix:" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_nan_weights_are_refused_when_loaded(tmp_path):
    from bench.encoders import create_encoder

    state = create_encoder("ecgfounder", preset="tiny").checkpoint_state()
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name] = torch.full_like(state[name], float("nan"))
    torch.save({"state_dict": state}, tmp_path / "nan.pth")
    x = np.sin(np.arange(5000) / 50.0)[None, None].repeat(12, 1).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = cli.invoke(app, ["embed", "--method", "ecgfounder", "--ckpt", str(tmp_path / "nan.pth"), "--signals",
                              str(tmp_path / "x.npy"), "--fs", "500", "--out", str(tmp_path / "e.npz"), "encoder.preset=tiny"])
    assert result.exit_code == 2 and "hold NaN or infinite values" in result.output and name in result.output, result.output
    assert not (tmp_path / "e.npz").exists()


def test_an_unusable_workspace_is_one_line_before_any_work(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("BENCH_HOME", str(home))
    result = cli.invoke(app, ["run", "--suite", "linear", "--methods", "random", f"paths.cache={tmp_path}/cache"])
    assert result.exit_code == 2 and "the workspace is a file, not a folder" in result.output and "BENCH_HOME" in result.output
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
    full = tmp_path / "full"
    monkeypatch.setenv("BENCH_HOME", str(full))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1 << 20))
    result = cli.invoke(app, ["run", "--suite", "linear", "--methods", "random", f"paths.cache={tmp_path}/cache"])
    assert result.exit_code == 2 and "disk is full" in result.output, result.output


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.pop("aggregates"), "malformed manifest at aggregates: field required"),
    (lambda m: m["units"][0].pop("tags"), "malformed manifest at units.0.tags: field required"),
    (lambda m: m.update(files=[]), "malformed manifest at files"),
])
def test_a_malformed_manifest_is_one_line(tmp_path, edit, expected):
    bundle = tmp_path / "results" / "bundle"
    bundle.mkdir(parents=True)
    manifest = {"format": 1, "settings": {}, "aggregates": [], "checkpoints": [], "files": {},
                "units": [{"suite": "linear", "key": "k", "tags": {}, "metrics": {}, "params": {}, "predictions": None}]}
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = cli.invoke(app, ["verify", str(tmp_path / "results")])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, result.output
    (bundle / "manifest.json").write_text("{not json")
    result = cli.invoke(app, ["verify", str(tmp_path / "results")])
    assert result.exit_code == 2 and "not a JSON manifest" in result.output


def test_doubtful_signals_are_prepared_and_listed_as_findings(tmp_path):
    """A NaN gap and a flat lead are prepared (interpolated / kept) but every command that prepares them lists them."""
    from bench.data.wfdb_io import read_wfdb

    folder = _folder(tmp_path / "records")
    flat = read_wfdb(folder / "A0004").signal
    flat[11] = 0.2
    write_wfdb(folder / "A0004", flat, 500.0, STANDARD_LEADS, mat=True, comments=["Age: 50", "Sex: Male", "Dx: 426783006"])
    mat = folder / "A0005.mat"  # lead II's first 2,000 samples as WFDB's invalid-sample value (read as NaN)
    raw = np.frombuffer(mat.read_bytes()[24:], dtype="<i2").reshape(-1, 12).copy()
    raw[:2000, 1] = -32768
    mat.write_bytes(mat.read_bytes()[:24] + raw.tobytes())
    result, out = _embed_wfdb(folder, tmp_path)
    assert result.exit_code == 0, result.output
    assert "finding A0004: flat lead(s) V6" in result.output, result.output
    assert "finding A0005:" in result.output and "lead II" in result.output


def test_an_unreachable_hub_is_said_at_once(tmp_path, monkeypatch):
    import time

    import huggingface_hub.constants as hub_constants

    from bench.encoders.checkpoint import CheckpointError
    from bench.encoders.weights import fetch_hf

    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="not in the cache .* the hub cannot be reached"):
        fetch_hf("PKUDigitalHealth/ECGFounder", "12_lead_ECGFounder.pth", "main", tmp_path)
    assert time.perf_counter() - start < 10  # no retries against a machine that refuses the connection


@pytest.mark.parametrize("line, field, value, expected", [
    (0, 3, "0", "sample count '0' is not a positive whole number"),
    (0, 3, "-5000", "sample count '-5000' is not a positive whole number"),
    (1, 2, "1000/degC", "units 'degC' are not a voltage"),
])
def test_header_lengths_and_units_are_checked_where_they_enter(tmp_path, line, field, value, expected):
    folder = _folder(tmp_path / "records")
    _edit_header(folder / "A0001.hea", line, field, value)
    result, out = _embed_wfdb(folder, tmp_path)
    assert result.exit_code == 2 and "A0001.hea" in result.output and expected in result.output, result.output
    assert not out.exists() and not _leftovers(tmp_path / "cache")


def test_a_header_in_volts_is_read_in_millivolts(tmp_path):
    from bench.data.wfdb_io import read_wfdb

    folder = _folder(tmp_path / "records", n=1)
    before = read_wfdb(folder / "A0001").signal
    hea = folder / "A0001.hea"
    hea.write_text(hea.read_text().replace(" 1000/mV ", " 1000000/V "))  # the same gain, per volt
    assert "/V" in hea.read_text()
    np.testing.assert_allclose(read_wfdb(folder / "A0001").signal, before, rtol=1e-5, atol=1e-6)
