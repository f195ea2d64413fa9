"""The preprocessing pipeline and the prepared-array cache (keyed, reused, memory-mapped)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.base import RawECG
from bench.data.cache import prepare
from bench.data.errors import DataError
from bench.data.leads import STANDARD_LEADS
from bench.data.preprocess import PreprocessConfig, crop_or_pad, fill_nonfinite, preprocess
from bench.data.ptbxl import PTBXLReader


def test_fill_nonfinite_uses_neighbour_mean():
    x = np.arange(20, dtype=np.float32)[None].repeat(2, 0)
    x[0, 10] = np.nan
    x[1, 3] = np.inf
    out = fill_nonfinite(x, window=6)
    assert out[0, 10] == pytest.approx(np.mean([v for v in range(4, 17) if v != 10]))
    assert out[1, 3] == pytest.approx(np.mean([v for v in range(0, 10) if v != 3]))
    y = np.zeros((1, 100), np.float32)
    y[0, 20:60] = np.nan  # a gap longer than the window is interpolated
    assert np.isfinite(fill_nonfinite(y, 6)).all()


def test_preprocess_reorders_resamples_and_pads():
    rng = np.random.default_rng(0)
    order = list(reversed(STANDARD_LEADS))
    sig = rng.normal(size=(12, 4000)).astype(np.float32)  # 8 s at 500 Hz
    ecg = RawECG("r", sig, 500.0, tuple(order))
    out = preprocess(ecg, PreprocessConfig(target_fs=100, seconds=10))
    assert out.shape == (12, 1000) and out.dtype == np.float32
    assert np.all(out[:, 800:] == 0)  # zero-padded after the 8 s
    lead_v6 = preprocess(RawECG("r", sig, 500.0, tuple(order)), PreprocessConfig(target_fs=500, seconds=8))
    np.testing.assert_array_equal(lead_v6[11], sig[0])  # V6 was first in the file
    assert crop_or_pad(np.ones((1, 10)), 4, "center").shape == (1, 4)


def test_missing_lead_and_config_typo_are_clear():
    ecg = RawECG("r", np.zeros((11, 100), np.float32), 100.0, STANDARD_LEADS[:11])
    with pytest.raises(DataError, match="missing lead"):
        preprocess(ecg, PreprocessConfig())
    with pytest.raises(DataError, match=r"unknown key\(s\) \['target_hz'\]"):
        PreprocessConfig.from_mapping({"target_hz": 100})


def test_cache_is_reused_and_keyed_by_config(demo_root, tmp_path):
    reader = PTBXLReader("demo", demo_root / "ptbxl", {"sampling_rate": 500})
    first = prepare(reader, PreprocessConfig(), tmp_path, progress=False)
    assert isinstance(first.signals, np.memmap) and first.signals.shape == (120, 12, 1000)
    stamp = (first.path / "signals.npy").stat().st_mtime_ns
    again = prepare(reader, PreprocessConfig(), tmp_path, progress=False)
    assert again.path == first.path and (again.path / "signals.npy").stat().st_mtime_ns == stamp
    other = prepare(reader, PreprocessConfig(target_fs=250), tmp_path, progress=False)
    assert other.path != first.path and other.signals.shape == (120, 12, 2500)
    direct = preprocess(reader.read(first.record_ids[7]), PreprocessConfig())
    np.testing.assert_allclose(first.signals[7], direct, atol=1e-6)
