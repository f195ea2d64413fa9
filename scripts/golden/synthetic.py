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


MIMIC_CODES = ("I10", "I480", "I4819", "I2510", "E785", "N179", "R079", "Z951X", "I5023", "E119", "F329", "R55")


def mimic_tables(n: int = 120) -> tuple["pd.DataFrame", "pd.DataFrame", "pd.DataFrame"]:
    """MIMIC-IV-ECG-ICD's records_w_diag_icd10.csv, MIMIC-IV-ECG's machine_measurements.csv and record_list.csv in
    their layouts, for ``n`` made-up studies: ICD-10 code lists as Python list literals (placeholder X, 3- to
    6-character codes, empty lists), settings, stays with several ECGs, folds 0-19, and measurements with values
    outside the reality check's valid ranges (negative onsets, |axis| > 360, RR of 0 or > 5000)."""
    import pandas as pd

    rng = np.random.default_rng(SEED + 7)
    study = 40000000 + np.arange(n) * 17
    subject = 10000000 + np.arange(n) // 2
    codes = [[str(c) for c in rng.choice(MIMIC_CODES, size=rng.integers(0, 5), replace=False)] for _ in range(n)]
    ed = rng.random(n) < 0.75
    hosp = rng.random(n) < 0.5
    icd = pd.DataFrame({
        "file_name": [f"files/p{s // 1000000:04d}/p{s}/s{t}/{t}" for s, t in zip(subject, study)], "study_id": study,
        "subject_id": subject, "ecg_time": pd.Timestamp("2180-01-01") + pd.to_timedelta(np.arange(n) * 3, unit="h"),
        "ed_diag_ed": [str(c[:2]) for c in codes], "ed_diag_hosp": [str(c[1:]) for c in codes], "hosp_diag_hosp": [str(c[2:]) for c in codes],
        "all_diag_hosp": [str(c[1:]) for c in codes], "all_diag_all": [str(c) for c in codes],
        "gender": rng.choice(["F", "M"], n), "age": rng.integers(18, 92, n), "anchor_year": 2180, "anchor_age": rng.integers(18, 92, n),
        "dod": None, "ecg_no_within_stay": np.arange(n) % 3, "ecg_taken_in_ed": ed, "ecg_taken_in_hosp": hosp,
        "ecg_taken_in_ed_or_hosp": ed | hosp, "fold": np.arange(n) % 20, "strat_fold": np.arange(n) % 20})
    qrs_onset = rng.integers(180, 260, n).astype(float)
    mm = pd.DataFrame({
        "subject_id": subject, "study_id": study, "cart_id": 6848296, "ecg_time": icd["ecg_time"],
        "report_0": "Sinus rhythm", "report_1": rng.choice(["Normal ECG", "Borderline ECG", None], n),
        "bandwidth": "0.005-150 Hz", "filtering": "60 Hz notch Baseline filter",
        "rr_interval": rng.choice([0, 600, 750, 900, 1100, 6000], n), "p_onset": np.where(rng.random(n) < 0.1, -5, qrs_onset - 150),
        "p_end": qrs_onset - 40, "qrs_onset": qrs_onset, "qrs_end": qrs_onset + rng.integers(70, 140, n),
        "t_end": np.where(rng.random(n) < 0.08, 29999, qrs_onset + rng.integers(330, 480, n)),
        "p_axis": rng.integers(-90, 120, n), "qrs_axis": np.where(rng.random(n) < 0.08, 29999, rng.integers(-90, 180, n)),
        "t_axis": rng.integers(-180, 180, n)})
    record_list = pd.DataFrame({"subject_id": subject, "study_id": study, "file_name": study, "ecg_time": icd["ecg_time"],
                                "path": icd["file_name"]})
    return icd, mm, record_list


def tables_sha256(*frames) -> str:
    """What a fixture records of its input tables (CSV bytes)."""
    return hashlib.sha256("".join(f.to_csv(index=False) for f in frames).encode()).hexdigest()
