"""An encoder's input contract and the one shared implementation of it.

Each encoder preset declares what its weights were trained on (lead order, sampling rate, window,
views, filters, scaling); the harness, not the adapter, turns a prepared record into model inputs
with these functions, so every encoder's preprocessing is the same code and is recorded with every
number. Prepared arrays (``bench.data.preprocess``) cover lead order, resampling and the window; the
views / filters / scaling here run on those arrays just before the forward pass.

Scalings are named after the upstream rule they reproduce (the source is cited in ``SCALINGS``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from scipy.signal import butter, decimate, filtfilt, firwin, iirnotch, medfilt, sosfiltfilt

from bench.data.leads import STANDARD_LEADS


def _standardize_record(x: np.ndarray) -> np.ndarray:
    loc = x.mean(axis=(-1, -2), keepdims=True)
    scale = x.std(axis=(-1, -2), keepdims=True)
    return np.divide(x - loc, scale, out=np.zeros_like(x), where=scale != 0)


def _zscore_lead_eps(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / (x.std(-1, ddof=1, keepdims=True) + 1e-6)


def _zscore_lead_flat0(x: np.ndarray) -> np.ndarray:
    std = x.std(-1, ddof=1, keepdims=True)
    return np.where(std > 1e-6, (x - x.mean(-1, keepdims=True)) / np.maximum(std, 1e-6), 0.0)


def _zscore_record_eps(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=(-1, -2), keepdims=True)) / (x.std(axis=(-1, -2), keepdims=True) + 1e-8)


def _zscore_lead_pop_eps8(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-8)


def _minmax_lead_pm1(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
    return 2 * (x - lo) / (hi - lo + 1e-8) - 1


def _minmax_record_pm3(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=(-1, -2), keepdims=True)
    span = x.max(axis=(-1, -2), keepdims=True) - lo
    return np.divide(6 * (x - lo), span, out=np.zeros_like(x), where=span != 0) - 3


def _minmax_record(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=(-1, -2), keepdims=True)
    hi = x.max(axis=(-1, -2), keepdims=True)
    return (x - lo) / (hi - lo + 1e-8)


#: name -> (function on [..., leads, samples], what it is and where it comes from)
SCALINGS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "none": (lambda x: x, "none (raw signal)"),
    "standardize_record": (_standardize_record, "mean/std over leads x time, population std, 0 where std is 0 "
                                                "(ST-MEM util/transforms.Standardize(axis=(-1, -2)))"),
    "zscore_lead_eps": (_zscore_lead_eps, "per-lead z-score, (x - mean) / (std + 1e-6) (MERIT, ours)"),
    "zscore_lead_flat0": (_zscore_lead_flat0, "per-lead z-score, flat leads -> 0 (ECG-FM / fairseq-signals)"),
    "minmax_record": (_minmax_record, "(x - min) / (max - min + 1e-8) over the whole record "
                                      "(MERL finetune/finetune_dataset.py)"),
    "zscore_record_eps": (_zscore_record_eps, "(x - mean) / (std + 1e-8) over leads x time, population std "
                                              "(ECGFounder dataset.py z_score_normalization)"),
    "zscore_lead_pop_eps8": (_zscore_lead_pop_eps8, "per-lead (x - mean) / (std + 1e-8), population std "
                                                    "(CLEF data/contrastive_dataloader.py Normalize)"),
    "minmax_record_pm3": (_minmax_record_pm3, "6 (x - min) / (max - min) - 3 over the whole record (HeartLang "
                                              "datasets/dataset_preprocess normalize_data(new_min=-3, new_max=3))"),
    "minmax_lead_pm1": (_minmax_lead_pm1, "per-lead 2 (x - min) / (max - min + 1e-8) - 1 (HuBERT-ECG utils.scaling)"),
}
#: dataset identities whose records all last 10 s (PTB-XL, Chapman-Shaoxing-Ningbo, MIMIC-IV-ECG: their data descriptors):
#: a contract that reads whole records keeps their prepared arrays 10 s long (``dataset_seconds``)
TEN_SECOND_DATASETS = (("ptbxl", 10.0), ("csn", 10.0), ("mimic_iv_ecg", 10.0))
#: the encoder options (preset defaults) of a contract that reads whole records: up to 60 s, 10 s arrays for the above
WHOLE_RECORD_OPTIONS = {"record_seconds": 60.0, "dataset_seconds": [list(d) for d in TEN_SECOND_DATASETS]}


def _frozen_steps(steps: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A ``dataset_steps`` mapping as sorted pairs (hashable; filters as tuples)."""
    steps = dict(steps)
    if "filters" in steps:
        steps["filters"] = tuple((f[0], tuple(f[1]) if isinstance(f[1], (list, tuple)) else f[1], int(f[2]))
                                 for f in steps["filters"])
    return tuple(sorted(steps.items()))


def _plain_steps(steps) -> dict[str, Any]:
    """The JSON form of a ``dataset_steps`` entry (lists, not tuples)."""
    out = dict(steps)
    if "filters" in out:
        out["filters"] = [[f[0], list(f[1]) if isinstance(f[1], tuple) else f[1], f[2]] for f in out["filters"]]
    return out


def _describe_steps(steps) -> list[str]:
    steps = dict(steps)
    parts = [f"the first {steps['keep_seconds']:g} s at the record's rate, zero-padded"] if steps.get("keep_seconds") else []
    if steps.get("scale", "none") != "none":
        parts.append(SCALINGS[steps["scale"]][1] + " at the record's rate")
    parts.append("resampled")
    parts += [f"Butterworth-{order} {btype} {cutoff} Hz as filtfilt({steps.get('filter_form', 'sos')})"
              for btype, cutoff, order in steps.get("filters", ())]
    return parts


def whole_record_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``InputContract`` fields of an encoder's whole-record options (``WHOLE_RECORD_OPTIONS``, or a run's override)."""
    return {"record_seconds": options["record_seconds"],
            "dataset_seconds": tuple((str(d), float(t)) for d, t in options["dataset_seconds"])}
VIEW_LAYOUTS = ("whole", "ncrop", "tile")
#: the resamplers an input contract may name, each as an upstream uses it (run by ``preprocess.resample``)
RESAMPLERS = ("poly", "fft", "resampy", "zoom")
FILTERS = ("highpass", "lowpass", "bandpass", "notch", "fir_bandpass")
FILTER_FORMS = ("sos", "ba")
LEAD_SUBSETS = ("zero", "native")
# fields added after keys were first published: left out of the key at their defaults, so older keys hold
_KEYED_ONLY_IF_SET = {"filter_form": "sos", "baseline_median_s": 0.0, "decimate": 1, "whole_record": False, "crop_fs": None,
                      "dataset_windows": (), "resample_per_window": False, "window_steps": False,
                      "record_seconds": None, "dataset_seconds": (), "dataset_steps": (), "present_leads": (),
                      "view_stride": None}
#: the steps a ``dataset_steps`` rule may name, in the order they run
DATASET_STEP_FIELDS = ("keep_seconds", "scale", "filters", "filter_form")


@dataclass(frozen=True)
class InputContract:
    """What one encoder preset expects; ``views`` turns prepared [B, leads, n_samples] into [B, V, leads, C].

    ``view_layout``: 'whole' (one view, the record), 'ncrop' (``n_views`` evenly spaced crops of
    ``view_samples``, ST-MEM's NCrop), 'tile' (consecutive ``view_samples`` segments, ECG-FM).
    ``filters``: zero-phase filters applied in order, each ``(btype, cutoff, order)``: Butterworth of that
    order, for ``notch`` an IIR notch at ``cutoff`` Hz with quality factor ``order``, for ``fir_bandpass`` a
    windowed-sinc FIR of ``order`` taps (made odd) run forward and backward (biosppy's FIR); ``filter_form``
    'sos' runs them as ``sosfiltfilt``, 'ba' as ``filtfilt(b, a)`` (what an upstream wrote, which differs
    near the edges). ``baseline_median_s``: after the filters, subtract a per-lead median filter of
    that many seconds (kernel made odd), as ECGFounder removes baseline wander.
    ``per_view``: filters and scaling act on each view after cropping (ST-MEM) or on the record first.
    ``decimate``: after the views are cut, each view's leads are concatenated into one channel and that channel is
    decimated by this factor with ``scipy.signal.decimate`` (HuBERT-ECG's 1-D input; views become [1, leads * C / q]).
    The encoder's embedding is the mean over views.

    How records longer or shorter than the window are treated, as each upstream does (run in the shared preprocessing,
    so the prepared arrays hold them): ``whole_record``: the filters and scaling see the whole record before the window
    is cut (HuBERT-ECG scales each stored record, then reads its first 5 s); ``crop_fs``: the window is cut at this rate
    before resampling to ``fs`` (ECG-JEPA takes the first 10 s at 500 Hz, then resamples them); ``dataset_windows``:
    (dataset identity, seconds) pairs whose records keep only their first seconds, zero-padded to the window (MERL's and
    MELP's CPSC2018 loaders keep 2,500 samples and pad 2,500 zeros); ``resample_per_window``: the record is cut into
    non-overlapping windows of ``view_samples`` at its own rate and each window is resampled on its own (clinical_ts'
    ``Resample`` transform runs on each chunk), so the prepared array is those windows end to end; ``view_stride``: tile
    windows start every that many samples instead of every window (ecg_ptbxl_benchmarking's test-time chunks of 2.5 s
    every 1.25 s); ``window_steps``: the
    filters and scaling run in the shared preprocessing on the cut window in float64, before the prepared array is
    stored as float32 (ECGFounder and CLEF filter the float64 record they read with ``filtfilt(b, a)`` at 0.67 Hz, whose
    rounding turns a float32 copy of the record into outputs up to 5e-4 apart; a record shorter than the window is
    filtered and scaled at its own length, then padded); ``record_seconds``: the record's first ``record_seconds``
    instead of the window (the prepared array zero-padded to that length): with tile views every full window of the
    record is encoded and the windows past its end, all zeros, are left out of its mean (the reality check evaluates
    every non-overlapping window of the whole record); with one whole view the record is encoded at its own length, up
    to its last non-zero sample (ECGFounder's dataset.py feeds the whole record to its fully convolutional network);
    with n crops the crops are spread over the record's own length (ST-MEM's NCrop on the whole resampled record);
    ``dataset_seconds``: (dataset identity, seconds) pairs
    that replace ``record_seconds`` for datasets whose records all have one length (PTB-XL's 10 s: no padded memory);
    ``dataset_steps``: (dataset identity, steps) pairs for an upstream whose own dataset script prepares that dataset
    unlike the others (HeartLang's CPSC2018 and Chapman scripts): at the record's own rate its first ``keep_seconds``
    zero-padded to the window, then ``scale`` over that record, then the contract's resampler, then ``filters`` (as
    ``filter_form``) at ``fs``, all in float64 in the shared preprocessing.

    How the encoder takes an evaluation lead subset (``bench run --leads``): ``lead_subset`` 'zero' (the absent leads are
    zeros in the prepared arrays; any encoder) or 'native' (only the subset's leads are encoded, each as the lead it
    is: ST-MEM's lead embeddings, HeartLang's ``used_channels``); a native run sets ``present_leads``, and ``views``
    then hands the encoder those leads only (filters and scaling see them alone). ``lead_subset`` is not keyed: with
    all leads it changes nothing, and a native subset is keyed by ``present_leads``.
    """

    fs: float
    n_samples: int
    leads: tuple[str, ...] = STANDARD_LEADS
    resample: str = "poly"
    view_layout: str = "whole"
    view_samples: int | None = None
    n_views: int = 1
    filters: tuple[tuple[str, Any, int], ...] = ()
    scale: str = "none"
    per_view: bool = True
    filter_form: str = "sos"
    baseline_median_s: float = 0.0
    decimate: int = 1
    whole_record: bool = False
    crop_fs: float | None = None
    dataset_windows: tuple[tuple[str, float], ...] = ()
    resample_per_window: bool = False
    window_steps: bool = False
    record_seconds: float | None = None
    dataset_seconds: tuple[tuple[str, float], ...] = ()
    dataset_steps: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    lead_subset: str = "zero"
    present_leads: tuple[str, ...] = ()
    view_stride: int | None = None
    notes: str = ""
    _coefficients: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.resample not in RESAMPLERS:
            problems.append(f"resample {self.resample!r} not in {RESAMPLERS}")
        if self.view_layout not in VIEW_LAYOUTS:
            problems.append(f"view_layout {self.view_layout!r} not in {VIEW_LAYOUTS}")
        if self.scale not in SCALINGS:
            problems.append(f"scale {self.scale!r} not in {sorted(SCALINGS)}")
        if any(f[0] not in FILTERS for f in self.filters):
            problems.append(f"filters must be among {FILTERS}")
        if self.filter_form not in FILTER_FORMS:
            problems.append(f"filter_form {self.filter_form!r} not in {FILTER_FORMS}")
        if self.view_layout != "whole" and not self.view_samples:
            problems.append("view_samples is required for cropped views")
        if self.view_stride is not None and (self.view_layout != "tile" or not 0 < self.view_stride <= (self.view_samples or 0)):
            problems.append("view_stride needs tile views and a stride of 1 to view_samples samples")
        if self.resample_per_window and (self.view_layout != "tile" or not self.view_samples or self.view_stride):
            problems.append("resample_per_window needs tile views (the windows it resamples)")
        if self.lead_subset not in LEAD_SUBSETS:
            problems.append(f"lead_subset {self.lead_subset!r} not in {LEAD_SUBSETS}")
        if set(self.present_leads) - set(self.leads) or (self.present_leads and self.lead_subset != "native"):
            problems.append(f"present_leads must be leads of the contract ({', '.join(self.leads)}) and need lead_subset 'native'")
        object.__setattr__(self, "dataset_steps", tuple((str(d), _frozen_steps(s)) for d, s in self.dataset_steps))
        for dataset, pairs in self.dataset_steps:
            steps = dict(pairs)
            unknown = set(steps) - set(DATASET_STEP_FIELDS)
            if unknown or steps.get("scale", "none") not in SCALINGS or any(f[0] not in FILTERS for f in steps.get("filters", ())):
                problems.append(f"dataset_steps of {dataset!r}: fields among {DATASET_STEP_FIELDS}, a scale among "
                                f"{sorted(SCALINGS)}, filters among {FILTERS}")
        if problems:
            raise ValueError("invalid input contract: " + "; ".join(problems))
        object.__setattr__(self, "leads", tuple(self.leads))
        present = tuple(lead for lead in self.leads if lead in set(self.present_leads))
        object.__setattr__(self, "present_leads", () if present == self.leads else present)  # all leads: no subset
        object.__setattr__(self, "filters", tuple(tuple(f) for f in self.filters))
        object.__setattr__(self, "dataset_windows", tuple((str(d), float(w)) for d, w in self.dataset_windows))
        for btype, cutoff, order in self.filters:
            if btype == "notch":
                self._coefficients.append(iirnotch(cutoff, order, fs=self.fs))
            elif btype == "fir_bandpass":
                self._coefficients.append((firwin(int(order) | 1, cutoff, pass_zero=False, fs=self.fs), np.ones(1)))
            else:
                self._coefficients.append(butter(int(order), cutoff, btype=btype, fs=self.fs, output=self.filter_form))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "InputContract":
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__ and not k.startswith("_")})

    @property
    def seconds(self) -> float:
        return self.n_samples / self.fs

    @property
    def view_length(self) -> int:
        return self.view_samples or self.n_samples

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_coefficients")
        d.pop("lead_subset")
        for name, default in _KEYED_ONLY_IF_SET.items():
            if d[name] == default:
                d.pop(name)
        d["leads"] = list(self.leads)
        d["filters"] = [list(f) for f in self.filters]
        for name in ("dataset_windows", "dataset_seconds"):
            if name in d:
                d[name] = [list(w) for w in getattr(self, name)]
        if "present_leads" in d:
            d["present_leads"] = list(self.present_leads)
        if "dataset_steps" in d:
            d["dataset_steps"] = [[dataset, _plain_steps(steps)] for dataset, steps in self.dataset_steps]
        return d

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        """One line for tables, cards and provenance."""
        parts = [f"{self.fs:g} Hz", f"{self.n_samples} samples"]
        if tuple(self.leads) != STANDARD_LEADS:
            parts.append("leads " + ",".join(self.leads))
        if self.resample != "poly":
            parts.append({"fft": "scipy.signal.resample (FFT)", "resampy": "resampy kaiser_best",
                          "zoom": "scipy.ndimage.zoom (cubic spline) per lead"}[self.resample]
                         + (" per window" if self.resample_per_window else " over the record"))
        if self.view_layout == "ncrop" and self.n_views == 1:
            parts.append(f"the first {self.view_samples} samples")
        elif self.view_layout != "whole":
            parts.append(f"{self.n_views if self.view_layout == 'ncrop' else 'all'} {self.view_layout} views of "
                         f"{self.view_samples}" + (f" every {self.view_stride}" if self.view_stride else "")
                         + ", embeddings averaged")
        for btype, cutoff, order in self.filters:
            parts.append(f"notch {cutoff} Hz Q={order}" if btype == "notch" else
                         f"FIR {int(order) | 1} taps zero-phase band-pass {cutoff} Hz" if btype == "fir_bandpass" else
                         f"Butterworth-{order} zero-phase {btype} {cutoff} Hz")
        if self.filter_form != "sos":
            parts.append(f"filters as filtfilt({self.filter_form})")
        if self.baseline_median_s:
            parts.append(f"minus a {self.baseline_median_s:g} s median baseline")
        parts.append(SCALINGS[self.scale][1] + (" per view" if self.per_view and self.view_layout != "whole" else ""))
        if self.decimate > 1:
            parts.append(f"leads concatenated into one channel, then scipy.signal.decimate by {self.decimate}")
        if self.whole_record:
            parts.append("filters and scaling over the whole record before the window is cut")
        if self.window_steps:
            parts.append("filters and scaling on the cut window in float64 before it is stored")
        if self.crop_fs:
            parts.append(f"window cut at {self.crop_fs:g} Hz before resampling")
        for dataset, seconds in self.dataset_windows:
            parts.append(f"{dataset}: the first {seconds:g} s kept, zero-padded to the window")
        for dataset, steps in self.dataset_steps:
            parts.append(f"{dataset}: " + ", then ".join(_describe_steps(steps)))
        if self.present_leads:
            parts.append(f"only leads {','.join(self.present_leads)} encoded (a native lead subset)")
        elif self.lead_subset == "native":
            parts.append("a lead subset is encoded natively (its leads only)")
        if self.record_seconds:
            tens = ", ".join(f"{d} {s:g} s" for d, s in self.dataset_seconds)
            what = {"tile": "every full window of", "whole": "the whole record, at its own length, up to",
                    "ncrop": "crops spread over"}[self.view_layout]
            parts.append(f"{what} the record's first {self.record_seconds:g} s" + (f" ({tens})" if tens else ""))
        return "; ".join(parts)

    def preprocess_mapping(self, base: Mapping[str, Any], dataset: str | None = None, pretraining: bool = False) -> dict[str, Any]:
        """The shared preprocessing config for this contract on ``dataset`` (its identity): rate, window, resampler,
        lead order, and the steps that must see the whole record (``whole_record``, ``crop_fs``, ``dataset_windows``).
        ``pretraining``: the window only (``record_seconds`` is how evaluation reads a record; upstream pretrains on
        the window).

        A user's own ``preprocess.leads`` (a lead subset) is kept for encoders in the standard order.
        """
        out = {**base, "target_fs": self.fs, "seconds": self.seconds if pretraining else self.prepared_seconds(dataset),
               "resample": self.resample}
        if tuple(self.leads) != STANDARD_LEADS:
            out["leads"] = list(self.leads)
        if self.crop_fs:
            out["crop_fs"] = float(self.crop_fs)
        if self.resample_per_window:
            out["resample_window_s"] = self.view_samples / self.fs
        if self.whole_record or self.window_steps:
            steps = {k: v for k, v in self.as_dict().items() if k in ("fs", "filters", "scale", "filter_form", "baseline_median_s")}
            out["record_steps" if self.whole_record else "window_steps"] = json.dumps(steps, sort_keys=True)
        keep = dict(self.dataset_windows).get(dataset) if dataset else None
        if keep:
            out["keep_seconds"] = keep
        steps = dict(self.dataset_steps).get(dataset) if dataset else None
        if steps:
            out["native_steps"] = json.dumps({**_plain_steps(steps), "resample": self.resample}, sort_keys=True)
        return out

    def prepared_seconds(self, dataset: str | None = None) -> float:
        """How much of a record the prepared array holds: the window, or with ``record_seconds`` the record's first
        seconds (``dataset_seconds`` for a dataset identity of one record length)."""
        if not self.record_seconds:
            return self.seconds
        return float(dict(self.dataset_seconds).get(dataset, self.record_seconds)) if dataset else float(self.record_seconds)

    @property
    def lead_index(self) -> list[int] | None:
        """Positions in ``leads`` of a native subset's leads (None: every lead)."""
        return [self.leads.index(lead) for lead in self.present_leads] if self.present_leads else None

    @staticmethod
    def record_lengths(x: np.ndarray) -> np.ndarray:
        """[B] samples up to each record's last non-zero sample in any lead, in a zero-padded [B, leads, S] array (S for
        an all-zero record)."""
        nonzero = np.asarray(x).reshape(len(x), -1, np.shape(x)[-1]).any(1)
        last = nonzero.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
        return np.where(nonzero.any(1), last, nonzero.shape[1])

    def present_views(self, views: np.ndarray) -> np.ndarray:
        """[B, V] True for the views a record's embedding averages: all of them, or with ``record_seconds`` those not
        wholly zero (windows past the record's end); with ``view_stride`` only windows that end inside the record (its
        last sample not zero in every lead: ecg_ptbxl_benchmarking drops a chunk shorter than its window); a record with
        none present keeps all (an all-zero record)."""
        views = np.asarray(views)
        present = np.ones(views.shape[:2], dtype=bool)
        if self.record_seconds:
            present = views[..., -1].any(-1) if self.view_stride else views.reshape(*views.shape[:2], -1).any(-1)
            present[~present.any(1)] = True
        return present

    # The transforms --------------------------------------------------------------------------
    def _starts(self, n: int) -> list[int]:
        c = self.view_length
        if self.view_layout == "whole":
            return [0]
        if n < c:
            raise ValueError(f"record of {n} samples is shorter than the contract's view of {c} samples")
        if self.view_layout == "tile":
            return list(range(0, n - c + 1, self.view_stride or c))
        if self.n_views == 1 or n == c:
            return [0] * self.n_views
        step = (n - c) // (self.n_views - 1)
        if step == 0:
            return [int(s) for s in np.linspace(0, n - c, self.n_views).round()]
        return [int(s) for s in np.arange(0, n - c + 1, step)][: self.n_views]

    def filter_and_scale(self, x: np.ndarray) -> np.ndarray:
        """Filters then scaling on [..., leads, samples] (float64 inside, float32 out)."""
        y = np.asarray(x, dtype=np.float64)
        for (btype, _, _), coefficients in zip(self.filters, self._coefficients):
            if btype in ("notch", "fir_bandpass") or self.filter_form == "ba":
                y = filtfilt(*coefficients, y, axis=-1)
            else:
                y = sosfiltfilt(coefficients, y, axis=-1)
        if self.baseline_median_s:
            y = y - self._median_baseline(y)
        return SCALINGS[self.scale][0](y).astype(np.float32)

    def _median_baseline(self, y: np.ndarray) -> np.ndarray:
        kernel = int(self.baseline_median_s * self.fs) + 1
        kernel += 1 - kernel % 2
        flat = y.reshape(-1, y.shape[-1])
        return np.stack([medfilt(lead, kernel_size=kernel) for lead in flat]).reshape(y.shape)

    @property
    def steps_prepared(self) -> bool:
        """The filters and scaling ran in the shared preprocessing (``whole_record`` or ``window_steps``)."""
        return self.whole_record or self.window_steps

    def views(self, x: np.ndarray) -> np.ndarray:
        """Prepared [B, leads, S] -> model inputs [B, V, leads, C] (``steps_prepared``: filtered and scaled already)."""
        x = np.asarray(x)
        if self.present_leads:  # a native lead subset: the other leads were never recorded
            x = x[..., self.lead_index, :]
        steps = not self.steps_prepared
        if steps and not self.per_view:
            x = self.filter_and_scale(x)
        c = x.shape[-1] if self.record_seconds and self.view_layout == "whole" else self.view_length  # the record, all of it
        if self.record_seconds and self.view_layout == "ncrop":  # crops spread over each record's own length
            stacked = np.stack([np.stack([r[..., s:s + c] for s in self._starts(max(int(n), c))])
                                for r, n in zip(x, self.record_lengths(x))])
        else:
            stacked = np.stack([x[..., s:s + c] for s in self._starts(x.shape[-1])], axis=1)
        stacked = self.filter_and_scale(stacked) if steps and self.per_view else stacked
        if self.decimate > 1:
            flat = stacked.reshape(*stacked.shape[:-2], 1, -1).astype(np.float64)
            stacked = decimate(flat, self.decimate, axis=-1)
        return np.ascontiguousarray(stacked, dtype=np.float32)
