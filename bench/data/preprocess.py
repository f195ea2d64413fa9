"""The one preprocessing pipeline every dataset goes through before the prepared-array cache.

Steps, in order: lead order normalised to the standard 12 leads; NaN/Inf replaced by the mean of
neighbouring samples (MERIT paper / MERL: mean of the valid samples within +-``nan_window``); resample
to ``target_fs`` (polyphase and anti-aliased, or FFT where an encoder's contract says so); crop or zero-pad to ``seconds``. Per-method
normalisation (z-score, min-max, band-pass) is *not* done here: each encoder declares its own step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample as fft_resample
from scipy.signal import resample_poly

from bench.data.base import RawECG
from bench.data.errors import DataError
from bench.data.leads import STANDARD_LEADS


@dataclass(frozen=True)
class PreprocessConfig:
    target_fs: float = 100.0
    seconds: float = 10.0
    leads: tuple[str, ...] = STANDARD_LEADS
    nan_window: int = 6
    crop: str = "start"  # start | center
    resample: str = "poly"  # poly (scipy resample_poly) | fft (scipy.signal.resample, as ST-MEM does)

    @classmethod
    def from_mapping(cls, cfg) -> "PreprocessConfig":
        from bench.config import dataclass_from_mapping

        out = dataclass_from_mapping(cls, cfg, "preprocess config", DataError, leads=tuple)
        if out.crop not in ("start", "center"):
            raise DataError("preprocess config", f"crop must be 'start' or 'center', got {out.crop!r}")
        if out.resample not in ("poly", "fft"):
            raise DataError("preprocess config", f"resample must be 'poly' or 'fft', got {out.resample!r}")
        return out

    @property
    def n_samples(self) -> int:
        return int(round(self.target_fs * self.seconds))

    def key(self) -> str:
        """Hash of every field; the default resampler is left out so keys made before it existed still hold."""
        fields = asdict(self)
        if fields["resample"] == "poly":
            fields.pop("resample")
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def fill_nonfinite(signal: np.ndarray, window: int = 6) -> np.ndarray:
    """Replace NaN/Inf by the mean of the finite samples within +-window; longer gaps are interpolated."""
    x = np.array(signal, dtype=np.float64, copy=True)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x.astype(np.float32)
    x[bad] = 0.0
    kernel = np.ones(2 * window + 1)
    for i in np.flatnonzero(bad.any(axis=1)):
        valid = (~bad[i]).astype(np.float64)
        total = np.convolve(x[i], kernel, mode="same")
        count = np.convolve(valid, kernel, mode="same")
        fill = bad[i] & (count > 0)
        x[i, fill] = total[fill] / count[fill]
        rest = bad[i] & (count == 0)
        if rest.any():
            good = np.flatnonzero(~bad[i])
            x[i, rest] = np.interp(np.flatnonzero(rest), good, x[i, good])
    return x.astype(np.float32)


def reorder_leads(ecg: RawECG, leads: tuple[str, ...]) -> np.ndarray:
    where = {name: i for i, name in enumerate(ecg.leads)}
    missing = [lead for lead in leads if lead not in where]
    if missing:
        raise DataError(ecg.source or ecg.record_id, f"missing lead(s) {', '.join(missing)}; record has {', '.join(ecg.leads)}",
                        "use 12-lead recordings or set preprocess.leads to the leads the data has")
    return ecg.signal[[where[lead] for lead in leads]]


def resample(signal: np.ndarray, fs: float, target_fs: float, method: str = "poly") -> np.ndarray:
    if abs(fs - target_fs) < 1e-9:
        return signal
    if method == "fft":
        return fft_resample(signal, int(signal.shape[-1] * target_fs / fs), axis=-1).astype(np.float32)
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def crop_or_pad(signal: np.ndarray, n: int, mode: str = "start") -> np.ndarray:
    length = signal.shape[-1]
    if length >= n:
        start = 0 if mode == "start" else (length - n) // 2
        return signal[:, start:start + n]
    out = np.zeros((signal.shape[0], n), dtype=signal.dtype)
    out[:, :length] = signal
    return out


def preprocess(ecg: RawECG, cfg: PreprocessConfig) -> np.ndarray:
    """Raw record -> float32 [len(cfg.leads), cfg.n_samples]."""
    x = reorder_leads(ecg, cfg.leads)
    x = fill_nonfinite(x, cfg.nan_window)
    x = resample(x, ecg.fs, cfg.target_fs, cfg.resample)
    return np.ascontiguousarray(crop_or_pad(x, cfg.n_samples, cfg.crop), dtype=np.float32)
