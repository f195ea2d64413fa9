"""WFDB reading against the header's gain/baseline, and every bad-input case named in the issue."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from bench.data.cache import prepare
from bench.data.cinc import CinCReader
from bench.data.errors import DataError
from bench.data.leads import STANDARD_LEADS
from bench.data.preprocess import PreprocessConfig
from bench.data.wfdb_io import read_wfdb, write_wfdb


def _parse_header(path: Path):
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    n_sig, n = int(lines[0].split()[1]), int(lines[0].split()[3])
    gains, baselines = [], []
    for ln in lines[1:1 + n_sig]:
        gain_field = ln.split()[2].split("/")[0]
        gain, _, base = gain_field.partition("(")
        gains.append(float(gain))
        baselines.append(int(base.rstrip(")")) if base else 0)
    return n_sig, n, np.array(gains), np.array(baselines)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["A0001", "A0007", "HR00003"])
def test_cinc_mat_records_match_header_gain_and_baseline(shared, name):
    """Decode the raw .mat bytes by hand ((digital - baseline) / gain) and compare with the reader."""
    hea = shared / "wfdb_samples/cinc2020" / f"{name}.hea"
    n_sig, n, gains, baselines = _parse_header(hea)
    raw = np.frombuffer((shared / "wfdb_samples/cinc2020" / f"{name}.mat").read_bytes()[24:], dtype="<i2")
    digital = raw.reshape(n, n_sig).T  # MATLAB v4 column-major = sample-interleaved
    expected = (digital - baselines[:, None]) / gains[:, None]
    ecg = read_wfdb(hea.with_suffix(""), expected_fs=500)
    assert ecg.leads == STANDARD_LEADS and ecg.fs == 500
    np.testing.assert_allclose(ecg.signal, expected, atol=1e-6)


def _record(tmp_path: Path, name="r1", n_leads=12, fs=500, seconds=2.0, mat=False) -> Path:
    rng = np.random.default_rng(0)
    sig = rng.normal(0, 0.5, size=(n_leads, int(fs * seconds))).astype(np.float32)
    leads = STANDARD_LEADS[:n_leads]
    write_wfdb(tmp_path / name, sig, fs, leads, mat=mat, comments=["Age: 50", "Sex: Male", "Dx: 426783006"])
    return tmp_path / name


def test_writer_roundtrip_both_layouts(tmp_path):
    for mat in (False, True):
        path = _record(tmp_path, name=f"rt{int(mat)}", mat=mat)
        ecg = read_wfdb(path, expected_fs=500)
        assert ecg.signal.shape == (12, 1000)


def test_truncated_dat(tmp_path):
    path = _record(tmp_path)
    dat = path.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"r1\.dat: truncated signal file.*header says 1000"):
        read_wfdb(path)


def test_header_data_mismatch(tmp_path):
    path = _record(tmp_path)
    with open(path.with_suffix(".dat"), "ab") as fh:
        fh.write(b"\0" * 240)
    with pytest.raises(DataError, match="header/data mismatch"):
        read_wfdb(path)


def test_nan_only_lead(tmp_path):
    path = _record(tmp_path)
    dat = path.with_suffix(".dat")
    d = np.frombuffer(dat.read_bytes(), dtype="<i2").reshape(-1, 12).copy()
    d[:, 3] = -32768  # WFDB's invalid-sample value
    dat.write_bytes(d.tobytes())
    with pytest.raises(DataError, match=r"lead\(s\) aVR contain no valid samples"):
        read_wfdb(path)


def test_wrong_lead_count(tmp_path):
    path = _record(tmp_path, n_leads=6)
    with pytest.raises(DataError, match=r"wrong lead count: 6 signals \(I, .*\), expected 12 .*data\.leads=\["):
        read_wfdb(path)


def test_unexpected_sampling_rate(tmp_path):
    path = _record(tmp_path, fs=250)
    with pytest.raises(DataError, match="unexpected sampling rate 250 Hz, expected 500 Hz"):
        read_wfdb(path, expected_fs=500)


def test_missing_header_and_missing_data(tmp_path):
    with pytest.raises(DataError, match="header file not found"):
        read_wfdb(tmp_path / "nope")
    path = _record(tmp_path)
    path.with_suffix(".dat").unlink()
    with pytest.raises(DataError, match="signal file named in the header not found"):
        read_wfdb(path)


def _cinc_tree(tmp_path: Path, dx_codes: list[str]) -> Path:
    root = tmp_path / "cinc"
    rng = np.random.default_rng(1)
    for i, dx in enumerate(dx_codes):
        sig = rng.normal(0, 0.3, size=(12, 1000)).astype(np.float32)
        write_wfdb(root / f"A{i + 1:04d}", sig, 500, STANDARD_LEADS, mat=True, comments=[f"Dx: {dx}"])
    return root


def test_unknown_snomed_code_raises_or_is_skipped_with_count(tmp_path):
    codes = ["426783006"] * 11 + ["999999999"]
    root = _cinc_tree(tmp_path, codes)
    with pytest.raises(DataError, match=r"A0012\.hea: unknown SNOMED-CT code\(s\) 999999999"):
        CinCReader("t", root, {"vocabulary": "cpsc2018", "folds_dir": tmp_path / "f"}).index
    reader = CinCReader("t", root, {"vocabulary": "cpsc2018", "folds_dir": tmp_path / "f", "on_error": "skip"})
    assert len(reader.index.records) == 11
    assert "skipped 1 record" in reader.index.notes[0]


def test_prepare_skip_reports_and_raise_leaves_no_cache(tmp_path):
    root = _cinc_tree(tmp_path, ["426783006"] * 12)
    dat = root / "A0005.mat"
    dat.write_bytes(dat.read_bytes()[:1000])  # truncated
    reader = CinCReader("t", root, {"vocabulary": "cpsc2018", "folds_dir": tmp_path / "f"})
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="A0005.mat: truncated"):
        prepare(reader, PreprocessConfig(), cache, progress=False)
    assert not any((cache / "prepared").iterdir()), "a failed prepare must leave nothing behind"
    prepared = prepare(reader, PreprocessConfig(), cache, on_error="skip", progress=False)
    assert prepared.manifest["n_skipped"] == 1 and len(prepared.record_ids) == 11
    assert prepared.signals.shape == (11, 12, 1000)
    assert "A0005" not in prepared.record_ids
    assert [p.name for p in (cache / "prepared").iterdir()] == [prepared.path.name]


def test_interrupted_prepare_leaves_no_readable_cache(tmp_path, monkeypatch):
    """Only the partial folder of committed chunks (for resuming) stays; nothing a run would read."""
    root = _cinc_tree(tmp_path, ["426783006"] * 12)
    reader = CinCReader("t", root, {"vocabulary": "cpsc2018", "folds_dir": tmp_path / "f"})
    calls = {"n": 0}
    original = reader.read

    def flaky(rid):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return original(rid)

    monkeypatch.setattr(reader, "read", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare(reader, PreprocessConfig(), tmp_path / "cache", progress=False)
    left = list((tmp_path / "cache" / "prepared").iterdir())
    assert [p.name.startswith(".partial-") for p in left] == [True] and not (left[0] / "manifest.json").exists()


def test_v4_mat_preamble_is_24_bytes(tmp_path):
    path = _record(tmp_path, mat=True)
    head = path.with_suffix(".mat").read_bytes()[:24]
    assert struct.unpack("<5i", head[:20]) == (30, 12, 1000, 0, 4) and head[20:] == b"val\0"
