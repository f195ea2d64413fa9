"""The preprocessing pipeline and the prepared-array cache (keyed, reused, memory-mapped)."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def test_prepared_key_follows_the_files_contents_not_their_place_or_mtimes(demo_root, tmp_path):
    from bench.data.cache import prepared_key

    def key(root):
        return prepared_key(PTBXLReader("demo", root, {"sampling_rate": 500}), PreprocessConfig())

    copy = tmp_path / "elsewhere"
    shutil.copytree(demo_root / "ptbxl", copy, copy_function=shutil.copyfile)  # new place, new modification times
    assert key(copy) == key(demo_root / "ptbxl")
    from bench.data.ptbxl import PTBXL1819Reader  # the real subset, its metadata read from another place
    from bench.config import load_config

    cfg = load_config([], data="ptbxl_1819").data
    records = tmp_path / "m_records"  # the metadata's copies sort before and after the records by path, wherever tmp is
    records.symlink_to(cfg.root)
    keys = set()
    for root, meta in ((cfg.root, cfg.meta_root), (records, tmp_path / "a_meta"), (records, tmp_path / "z_meta")):
        if meta != cfg.meta_root:
            shutil.copytree(cfg.meta_root, meta, copy_function=shutil.copyfile)
        keys.add(prepared_key(PTBXL1819Reader("p", root, {"meta_root": str(meta), "sampling_rate": 100}), PreprocessConfig()))
    assert len(keys) == 1
    signal = sorted(copy.rglob("*_hr.dat"))[3]
    data = bytearray(signal.read_bytes())
    data[100] ^= 1  # one bit of one record, same size
    signal.write_bytes(bytes(data))
    assert key(copy) != key(demo_root / "ptbxl")


class _Reader(PTBXLReader):
    """The demo PTB-XL reader with injected trouble: a bad record, an interrupt at a record, and a log of reads
    (a file, since worker processes do the reading)."""

    bad: str | None = None
    interrupt_at: str | None = None
    log: Path | None = None

    def read(self, record_id):
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(record_id + "\n")
        if record_id == self.interrupt_at:
            raise KeyboardInterrupt
        if record_id == self.bad:
            raise DataError(f"records500/{record_id}.hea", "truncated signal file", "re-download the record")
        return super().read(record_id)


def _reader(demo_root, **trouble):
    reader = _Reader("demo", demo_root / "ptbxl", {"sampling_rate": 500})
    for k, v in trouble.items():
        setattr(reader, k, v)
    return reader


def _bytes(prepared):
    return (prepared.path / "signals.npy").read_bytes()


def test_parallel_preparation_is_byte_identical_to_one_process(demo_root, tmp_path):
    ids = list(_reader(demo_root).index.records.index)
    one = prepare(_reader(demo_root, bad=ids[37]), PreprocessConfig(), tmp_path / "one", on_error="skip", progress=False,
                  workers=1, chunk_records=16)
    two = prepare(_reader(demo_root, bad=ids[37]), PreprocessConfig(), tmp_path / "two", on_error="skip", progress=False,
                  workers=2, chunk_records=16)
    assert one.manifest["workers"] == 1 and two.manifest["workers"] == 2
    assert _bytes(one) == _bytes(two)
    assert one.record_ids == two.record_ids == [r for r in ids if r != ids[37]]
    assert [s["record_id"] for s in two.manifest["skipped"]] == [ids[37]] and "truncated" in two.manifest["skipped"][0]["problem"]
    np.testing.assert_array_equal(two.signals[37], preprocess(_reader(demo_root).read(ids[38]), PreprocessConfig()))
    assert not list((tmp_path / "two" / "prepared").glob(".partial-*"))


def test_a_killed_preparation_resumes_without_redoing_finished_chunks(demo_root, tmp_path):
    ids = list(_reader(demo_root).index.records.index)
    whole = prepare(_reader(demo_root), PreprocessConfig(), tmp_path / "whole", progress=False, workers=1, chunk_records=16)
    with pytest.raises(KeyboardInterrupt):  # killed while preparing chunk 3 (records 48..63)
        prepare(_reader(demo_root, interrupt_at=ids[50]), PreprocessConfig(), tmp_path / "killed", progress=False, workers=1,
                chunk_records=16)
    partial = list((tmp_path / "killed" / "prepared").glob(".partial-*"))
    assert len(partial) == 1 and len(list((partial[0] / "chunks").glob("*.json"))) == 3
    assert not [p for p in (tmp_path / "killed" / "prepared").iterdir() if not p.name.startswith(".")]  # nothing readable yet
    resumed = prepare(_reader(demo_root, log=tmp_path / "reads.txt"), PreprocessConfig(), tmp_path / "killed", progress=False,
                      workers=2, chunk_records=16)
    assert resumed.manifest["chunks_resumed"] == 3
    assert sorted((tmp_path / "reads.txt").read_text().split()) == sorted(ids[48:])  # the finished chunks were not redone
    assert _bytes(resumed) == _bytes(whole) and resumed.record_ids == whole.record_ids
    assert not partial[0].exists()


def test_a_bad_record_in_a_worker_is_named_and_leaves_nothing(demo_root, tmp_path):
    ids = list(_reader(demo_root).index.records.index)
    with pytest.raises(DataError, match=rf"records500/{ids[70]}.hea: truncated signal file \(fix: re-download the record\)"):
        prepare(_reader(demo_root, bad=ids[70]), PreprocessConfig(), tmp_path, progress=False, workers=2, chunk_records=16)
    assert list((tmp_path / "prepared").iterdir()) == []


def test_atomic_path_publishes_whole_files_and_leaves_nothing_on_failure(tmp_path):
    from bench.files import atomic_path

    target = tmp_path / "x.npy"
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, np.arange(3))
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "y.json") as tmp:
            tmp.write_text("{half")
            raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_zoom_resampling_and_strided_windows_are_upstreams_and_keyed():
    """xresnet1d101's path (ecg_ptbxl_benchmarking): each lead zoomed by 0.2 as convert_ICBEB.py does, then test-time
    chunks of 250 samples every 125 over the whole record, a chunk that runs past the record's end dropped; both keyed."""
    from scipy.ndimage import zoom

    from bench.data.contract import InputContract
    from bench.data.preprocess import resample

    x = np.random.default_rng(0).normal(size=(12, 7500))
    np.testing.assert_array_equal(resample(x, 500, 100, "zoom"), np.array([zoom(lead, .2) for lead in x]).astype(np.float32))
    assert PreprocessConfig(resample="zoom").key() != PreprocessConfig().key()
    strided = InputContract(100.0, 1000, view_layout="tile", view_samples=250, view_stride=125, record_seconds=60.0)
    assert strided.key() != InputContract(100.0, 1000, view_layout="tile", view_samples=250, record_seconds=60.0).key()
    records = np.zeros((2, 12, 6000), np.float32)
    records[0, :, :1503] = 1.0  # 15 s and 3 samples: windows at 0, 125, ..., 1250 (1375 would run past the end)
    records[1, :, :1000] = 1.0
    assert strided.present_views(strided.views(records)).sum(1).tolist() == [11, 7]
    with pytest.raises(ValueError, match="view_stride needs tile views"):
        InputContract(100.0, 1000, view_layout="ncrop", view_samples=250, view_stride=125)
