"""The synthetic demo: deterministic, and its findings are visible in the signal."""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from bench.data.demo import ensure_demo, synthesize
from bench.data.leads import STANDARD_LEADS

II, V1 = STANDARD_LEADS.index("II"), STANDARD_LEADS.index("V1")


def _rr(sig):
    peaks, _ = find_peaks(sig[II], height=0.5, distance=100)
    return np.diff(peaks) / 500


def _avg(findings, fn, n=6):
    return np.mean([fn(synthesize(set(findings), np.random.default_rng(k))) for k in range(n)])


def test_rate_and_rhythm_are_visible():
    brady = _avg({"SBRAD"}, lambda s: 60 / _rr(s).mean())
    tachy = _avg({"STACH"}, lambda s: 60 / _rr(s).mean())
    assert brady < 60 < 100 < tachy
    cv = lambda s: _rr(s).std() / _rr(s).mean()
    assert _avg({"AFIB"}, cv) > 3 * _avg({"SR"}, cv)


def test_conduction_and_st_findings_are_visible():
    def qrs_width(s):  # samples where |V1| exceeds a third of its peak, around the first beat
        x = np.abs(s[V1] - np.median(s[V1]))
        peak = int(np.argmax(x[:600]))
        seg = x[max(0, peak - 60):peak + 60]
        return (seg > seg.max() / 3).sum()

    assert _avg({"SR", "CLBBB"}, qrs_width) > 1.5 * _avg({"SR"}, qrs_width)
    lvh = _avg({"SR", "LVH"}, lambda s: np.ptp(s[II]))
    assert lvh > 1.5 * _avg({"SR"}, lambda s: np.ptp(s[II]))


def test_generation_is_deterministic(tmp_path):
    a = ensure_demo("csn", tmp_path / "a", 5, seed=7, progress=False)
    b = ensure_demo("csn", tmp_path / "b", 5, seed=7, progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.mat"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.mat")) and len(files_a) == 5
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    stamp = (a / "DEMO_COMPLETE.json").stat().st_mtime_ns
    ensure_demo("csn", a, 5, seed=7, progress=False)  # second call: nothing regenerated
    assert (a / "DEMO_COMPLETE.json").stat().st_mtime_ns == stamp
