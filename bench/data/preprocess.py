"""The one preprocessing pipeline every dataset goes through before the prepared-array cache.

Steps, in order: lead order normalised to the standard 12 leads; NaN/Inf replaced by the mean of
neighbouring samples (MERIT paper / MERL: mean of the valid samples within +-``nan_window``); resample
to ``target_fs`` (polyphase and anti-aliased, or FFT where an encoder's contract says so); crop or zero-pad to ``seconds``. Per-method
normalisation (z-score, min-max, band-pass) is *not* done here: each encoder declares its own step, except where its
upstream runs it on the whole record before cutting the window (``record_steps``). An encoder's contract may also cut the
window at another rate before resampling (``crop_fs``) or keep only a record's first seconds (``keep_seconds``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np
from scipy.signal import resample as fft_resample
from scipy.signal import resample_poly

from bench.data.base import RawECG
from bench.data.contract import RESAMPLERS
from bench.data.errors import DataError
from bench.data.leads import STANDARD_LEADS


@dataclass(frozen=True)
class PreprocessConfig:
    target_fs: float = 100.0
    seconds: float = 10.0
    leads: tuple[str, ...] = STANDARD_LEADS
    nan_window: int = 6
    crop: str = "start"  # start | center
    resample: str = "poly"  # poly (scipy resample_poly) | fft (scipy.signal.resample) | resampy (kaiser_best, clinical_ts)
    resample_window_s: float | None = None  # resample each non-overlapping window of this length on its own (clinical_ts)
    crop_fs: float | None = None  # cut the window at this rate, then resample to target_fs (ECG-JEPA)
    keep_seconds: float | None = None  # keep the first seconds, zero-pad the rest of the window (MERL/MELP on CPSC2018)
    record_steps: str | None = None  # an input contract's filters and scaling (JSON) run on the whole record (HuBERT-ECG)
    window_steps: str | None = None  # the same run on the cut window in float64 (ECGFounder, CLEF)
    native_steps: str | None = None  # a dataset's own upstream steps around the resampler (contract.dataset_steps, HeartLang)
    zero_fill_leads: bool = False  # leads the record lacks become zeros (a dataset with fewer leads than an encoder reads)
    keep_leads: tuple[str, ...] | None = None  # an evaluation lead set: the other leads become zeros (bench/data/leads.py)

    @classmethod
    def from_mapping(cls, cfg) -> "PreprocessConfig":
        from bench.config import dataclass_from_mapping

        # preprocess.lead_set is an evaluation axis the runner applies (keep_leads), never pretraining's or a plain prepare's
        cfg = {k: cfg[k] for k in cfg if k != "lead_set"}
        out = dataclass_from_mapping(cls, cfg, "preprocess config", DataError, leads=tuple)
        if out.keep_leads is not None:
            object.__setattr__(out, "keep_leads", tuple(out.keep_leads))
        if out.crop not in ("start", "center"):
            raise DataError("preprocess config", f"crop must be 'start' or 'center', got {out.crop!r}")
        if out.resample not in RESAMPLERS:
            raise DataError("preprocess config", f"resample must be one of {RESAMPLERS}, got {out.resample!r}")
        return out

    @property
    def n_samples(self) -> int:
        return int(round(self.target_fs * self.seconds))

    def key(self) -> str:
        """Hash of every field; fields at their defaults that came after keys were published are left out, so those
        keys still hold."""
        fields = asdict(self)
        if fields["resample"] == "poly":
            fields.pop("resample")
        for name in ("crop_fs", "keep_seconds", "record_steps", "resample_window_s", "window_steps", "native_steps"):
            if fields[name] is None:
                fields.pop(name)
        if not fields["zero_fill_leads"]:
            fields.pop("zero_fill_leads")
        if fields["keep_leads"] is None:
            fields.pop("keep_leads")
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def fill_nonfinite(signal: np.ndarray, window: int = 6) -> np.ndarray:
    """Replace NaN/Inf by the mean of the finite samples within +-window; longer gaps are interpolated."""
    x = np.array(signal, dtype=np.float64, copy=True)
    dtype = np.float64 if np.asarray(signal).dtype == np.float64 else np.float32
    bad = ~np.isfinite(x)
    if not bad.any():
        return x.astype(dtype)
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
    return x.astype(dtype)


def reorder_leads(ecg: RawECG, leads: tuple[str, ...], zero_fill: bool = False) -> np.ndarray:
    """The record's leads in the order ``leads``; leads it lacks are zeros with ``zero_fill``, else an error."""
    where = {name: i for i, name in enumerate(ecg.leads)}
    missing = [lead for lead in leads if lead not in where]
    if missing and not zero_fill:
        raise DataError(ecg.source or ecg.record_id, f"missing lead(s) {', '.join(missing)}; record has {', '.join(ecg.leads)}",
                        "use an encoder for this lead set, or preprocess.zero_fill_leads=true to fill them with zeros")
    out = np.zeros((len(leads), ecg.signal.shape[1]), dtype=ecg.signal.dtype)
    for i, lead in enumerate(leads):
        if lead in where:
            out[i] = ecg.signal[where[lead]]
    return out


def check_lead_set(cfg: PreprocessConfig, available: Sequence[str], dataset: str, reader_of: str) -> None:
    """Refuse, before anything is prepared, an encoder that reads leads the dataset does not hold (unless the missing
    leads are zero-filled, which the prepared-array key records)."""
    missing = [lead for lead in cfg.leads if lead not in set(available)]
    if missing and not cfg.zero_fill_leads:
        raise DataError(dataset, f"{reader_of} reads leads {', '.join(cfg.leads)}, but its records hold {', '.join(available)} "
                                 f"(missing {', '.join(missing)})",
                        "use an encoder for this lead set, or preprocess.zero_fill_leads=true to fill the missing leads with "
                        "zeros (recorded in every key)")


def resample(signal: np.ndarray, fs: float, target_fs: float, method: str = "poly", dtype=np.float32) -> np.ndarray:
    """``poly``: scipy's polyphase filter; ``fft``: ``scipy.signal.resample`` to int(n x target / fs) samples (HeartLang,
    ST-MEM); ``resampy``: ``resampy.resample`` with its default kaiser_best filter (the reality check's clinical_ts);
    ``zoom``: ``scipy.ndimage.zoom`` of each lead by target / fs, its default cubic spline (ecg_ptbxl_benchmarking's
    convert_ICBEB.py brings CPSC2018 to 100 Hz so)."""
    if abs(fs - target_fs) < 1e-9:  # unchanged, its dtype too (a WFDB record's float64 reaches float64 filters)
        return signal
    if method == "fft":
        return fft_resample(signal, int(signal.shape[-1] * target_fs / fs), axis=-1).astype(dtype)
    if method == "zoom":
        from scipy.ndimage import zoom

        x = np.asarray(signal, dtype=np.float64)
        leads = [zoom(lead, target_fs / fs) for lead in x.reshape(-1, x.shape[-1])]
        return np.stack(leads).reshape(*x.shape[:-1], -1).astype(dtype)
    if method == "resampy":
        import resampy

        return resampy.resample(np.asarray(signal, dtype=np.float64), fs, target_fs, axis=-1, filter="kaiser_best").astype(dtype)
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1).astype(dtype)


def crop_or_pad(signal: np.ndarray, n: int, mode: str = "start") -> np.ndarray:
    length = signal.shape[-1]
    if length >= n:
        start = 0 if mode == "start" else (length - n) // 2
        return signal[:, start:start + n]
    out = np.zeros((signal.shape[0], n), dtype=signal.dtype)
    out[:, :length] = signal
    return out


@functools.lru_cache(maxsize=8)
def _record_contract(steps: str):
    from bench.data.contract import InputContract

    values = json.loads(steps)
    return InputContract(values.pop("fs"), 1, **values)


def _resample_windows(x: np.ndarray, fs: float, cfg: PreprocessConfig) -> np.ndarray:
    """The record cut at its own rate into non-overlapping windows of ``resample_window_s`` (the first ``seconds`` of
    it; a last partial window is dropped, as clinical_ts' chunking drops it), each resampled on its own, end to end."""
    width = int(round(cfg.resample_window_s * fs))
    count = min(x.shape[-1] // width, int(round(cfg.seconds / cfg.resample_window_s)))
    if count == 0:
        return resample(x, fs, cfg.target_fs, cfg.resample)
    return np.concatenate([resample(x[:, i * width:(i + 1) * width], fs, cfg.target_fs, cfg.resample)
                           for i in range(count)], axis=-1)


def _native_steps(x: np.ndarray, fs: float, cfg: PreprocessConfig) -> np.ndarray:
    """A dataset's own upstream script (``InputContract.dataset_steps``), in float64 until the end: at the record's rate
    its first ``keep_seconds`` zero-padded to the window, the scaling over that record, the resampler, then the filters
    at ``target_fs`` (HeartLang's make_cpsc_dataset.py and make_csn_datasets.py)."""
    from bench.data.contract import SCALINGS

    steps = json.loads(cfg.native_steps)
    y = np.asarray(x, dtype=np.float64)
    if steps.get("keep_seconds"):
        y = crop_or_pad(y[:, :int(round(steps["keep_seconds"] * fs))], int(round(cfg.seconds * fs)))
    y = resample(SCALINGS[steps.get("scale", "none")][0](y), fs, cfg.target_fs, steps["resample"], dtype=np.float64)
    if steps.get("filters"):
        return _record_contract(json.dumps({"fs": cfg.target_fs, "filters": steps["filters"], "scale": "none",
                                            "filter_form": steps.get("filter_form", "sos")}, sort_keys=True)).filter_and_scale(y)
    return y.astype(np.float32)


def preprocess(ecg: RawECG, cfg: PreprocessConfig) -> np.ndarray:
    """Raw record -> float32 [len(cfg.leads), cfg.n_samples]."""
    x = reorder_leads(ecg, cfg.leads, cfg.zero_fill_leads)
    x = fill_nonfinite(x, cfg.nan_window)
    if cfg.native_steps:
        x = _native_steps(x, ecg.fs, cfg)
    elif cfg.crop_fs:
        x = crop_or_pad(resample(x, ecg.fs, cfg.crop_fs, cfg.resample), int(round(cfg.crop_fs * cfg.seconds)), cfg.crop)
        x = resample(x, cfg.crop_fs, cfg.target_fs, cfg.resample)
    elif cfg.resample_window_s:
        x = _resample_windows(x, ecg.fs, cfg)
    else:
        x = resample(x, ecg.fs, cfg.target_fs, cfg.resample)
    if cfg.record_steps:
        x = _record_contract(cfg.record_steps).filter_and_scale(x)
    if cfg.keep_seconds:
        x = x[:, :int(round(cfg.keep_seconds * cfg.target_fs))]
    if cfg.window_steps:  # on the record's own samples within the window; a shorter record is padded afterwards
        x = _record_contract(cfg.window_steps).filter_and_scale(crop_or_pad(x, min(cfg.n_samples, x.shape[-1]), cfg.crop))
    if cfg.keep_leads is not None:  # an evaluation lead set: the leads outside it were not recorded
        x = x.copy()
        x[[i for i, lead in enumerate(cfg.leads) if lead not in set(cfg.keep_leads)]] = 0.0
    return np.ascontiguousarray(crop_or_pad(x, cfg.n_samples, cfg.crop), dtype=np.float32)
