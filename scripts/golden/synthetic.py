"""The synthetic records every golden fixture is computed on, generated the same way by the regeneration script
and by the tests (so the fixtures store only upstream's outputs and a hash of the records)."""

from __future__ import annotations

import hashlib

import numpy as np

SEED = 20261123


def signals(n: int = 3, fs: int = 500, seconds: int = 10) -> np.ndarray:
    """Synthetic millivolt ECG-like records [n, 12, fs * seconds]: beats, baseline wander, noise."""
    rng = np.random.default_rng(SEED)
    t = np.arange(fs * seconds) / fs
    out = []
    for i in range(n):
        hr = 60 + 25 * i
        phase = (t * hr / 60) % 1.0
        qrs = np.exp(-((phase - 0.3) / 0.015) ** 2)
        twave = 0.3 * np.exp(-((phase - 0.6) / 0.06) ** 2)
        gains = rng.normal(1.0, 0.4, 12)[:, None]
        wander = 0.2 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6, (12, 1)))
        out.append(gains * (qrs + twave) + wander + rng.normal(0, 0.03, (12, t.size)))
    return np.asarray(out, dtype=np.float32)


def signals_sha256(x: np.ndarray) -> str:
    """What a fixture records of its input: if numpy ever drew other numbers, the tests say so instead of failing
    on the outputs."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()
