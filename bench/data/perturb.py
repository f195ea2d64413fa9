"""Acquisition shifts applied to prepared signals [N, leads, samples] (the robustness suite's conditions).

Each condition is data (configs/protocols/robustness.yaml); its ``key`` names the perturbed embeddings
in the cache. Noise is drawn from a generator seeded by the condition, the seed and the record id, so a
record gets the same perturbation whichever other records are perturbed with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from bench.config import ConfigError

KINDS = ("clean", "leads", "noise", "wander", "lowpass")


@dataclass(frozen=True)
class Condition:
    name: str
    kind: str
    keep: tuple[str, ...] | None = None
    snr_db: float | None = None
    cutoff_hz: float | None = None

    @classmethod
    def from_mapping(cls, m: dict) -> "Condition":
        unknown = set(m) - {"name", "kind", "keep", "snr_db", "cutoff_hz"}
        if unknown or m.get("kind") not in KINDS:
            raise ConfigError(f"robustness condition {m}: kind must be one of {KINDS}"
                              + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
        need = {"leads": "keep", "noise": "snr_db", "wander": "snr_db", "lowpass": "cutoff_hz"}.get(m["kind"])
        if need and m.get(need) is None:
            raise ConfigError(f"robustness condition {m['name']!r} ({m['kind']}) needs {need}")
        return cls(str(m["name"]), m["kind"], tuple(m["keep"]) if m.get("keep") else None,
                   None if m.get("snr_db") is None else float(m["snr_db"]),
                   None if m.get("cutoff_hz") is None else float(m["cutoff_hz"]))

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _rng(cond: Condition, seed: int, record_id: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(f"{cond.key()}|{seed}|{record_id}".encode()).hexdigest()[:12], 16))


def _scaled(x: np.ndarray, shape: np.ndarray, snr_db: float) -> np.ndarray:
    """``shape`` [leads, T] scaled per lead so that power(x) / power(added) = 10^(snr/10)."""
    p_signal = x.var(axis=-1, keepdims=True)
    p_shape = np.maximum(shape.var(axis=-1, keepdims=True), 1e-12)
    return shape * np.sqrt(p_signal / (p_shape * 10 ** (snr_db / 10)))


def apply(cond: Condition, signals: np.ndarray, leads: Sequence[str], fs: float, record_ids: Sequence[str],
          seed: int = 0) -> np.ndarray:
    """The perturbed copy of ``signals`` [N, leads, samples] at ``fs`` Hz."""
    x = np.array(signals, dtype=np.float32, copy=True)
    if cond.kind == "clean":
        return x
    if cond.kind == "leads":
        drop = [i for i, lead in enumerate(leads) if lead not in cond.keep]
        x[:, drop, :] = 0.0
        return x
    if cond.kind == "lowpass":
        from scipy.signal import butter, sosfiltfilt

        if cond.cutoff_hz >= fs / 2:
            raise ConfigError(f"robustness condition {cond.name}: cutoff {cond.cutoff_hz} Hz is not below Nyquist ({fs / 2} Hz)")
        sos = butter(4, cond.cutoff_hz, btype="low", fs=fs, output="sos")
        return sosfiltfilt(sos, x, axis=-1).astype(np.float32)
    t = np.arange(x.shape[-1]) / fs
    for i, rid in enumerate(record_ids):
        rng = _rng(cond, seed, str(rid))
        if cond.kind == "noise":
            shape = rng.standard_normal(x.shape[1:])
        else:  # wander: three low-frequency sinusoids per lead with random phases
            freqs = rng.uniform(0.05, 0.5, size=(x.shape[1], 3, 1))
            phases = rng.uniform(0, 2 * np.pi, size=(x.shape[1], 3, 1))
            shape = np.sin(2 * np.pi * freqs * t + phases).sum(axis=1)
        x[i] += _scaled(x[i], shape, cond.snr_db).astype(np.float32)
    return x
