"""Deterministic synthetic 12-lead ECGs written in the three real on-disk layouts.

Each beat is a sum of Gaussian waves (P, septal q, R, S, T) whose heart-vector directions are
projected onto the 12 lead vectors, so findings change the leads the way they do clinically: rate
and rhythm (sinus brady/tachycardia, atrial fibrillation with irregular RR and f-waves, premature
atrial/ventricular beats), PR prolongation (1st-degree AV block), wide QRS with a late R' (RBBB) or
a broad R with discordant T (LBBB), anterior ST elevation with Q waves, lateral ST depression, and
high QRS voltage. Which findings a record has, and the code each real vocabulary uses for them, is
read from ``configs/demo/conditions.yaml``. Record ``i`` of seed ``s`` is always the same signal.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.signal import resample_poly
from scipy.special import expit
from tqdm.auto import tqdm

from bench import REPO_ROOT
from bench.data.folds import stratified_folds
from bench.data.leads import STANDARD_LEADS
from bench.data.wfdb_io import write_wfdb

CONDITIONS_FILE = REPO_ROOT / "configs" / "demo" / "conditions.yaml"
FS = 500
SECONDS = 10.0
LAYOUTS = ("ptbxl", "cpsc2018", "csn")
_DONE = "DEMO_COMPLETE.json"


def _lead_matrix() -> np.ndarray:
    """Unit lead vectors (x left, y inferior, z anterior) for I..V6."""
    frontal = {"I": 0, "II": 60, "III": 120, "aVR": -150, "aVL": -30, "aVF": 90}
    chest = {"V1": 115, "V2": 95, "V3": 75, "V4": 55, "V5": 30, "V6": 5}
    rows = []
    for lead in STANDARD_LEADS:
        if lead in frontal:
            a = np.deg2rad(frontal[lead])
            rows.append([np.cos(a), np.sin(a), 0.0])
        else:
            a = np.deg2rad(chest[lead])
            rows.append([np.cos(a), 0.15, np.sin(a)])
    return np.array(rows)


LEADS = _lead_matrix()


@dataclass
class Wave:
    offset: float  # seconds relative to the QRS peak
    width: float  # Gaussian sd in seconds, or plateau length for ST waves
    vector: tuple[float, float, float]  # heart vector (mV)
    plateau: bool = False


def _beat_waves(findings: set[str], kind: str, rng: np.random.Generator, rr: float, pr: float) -> list[Wave]:
    """The waves of one beat; ``kind`` is 'sinus', 'pac' or 'pvc'."""
    qt = 0.40 * np.sqrt(rr)
    if kind == "pvc":
        return [Wave(0.0, 0.04, (-0.7, -0.5, 1.1)), Wave(qt - 0.05, 0.06, (0.35, 0.3, -0.4))]
    waves = []
    if "AFIB" not in findings:
        p_vec = (-0.05, 0.1, 0.06) if kind == "pac" else (0.08, 0.13, 0.03)
        waves.append(Wave(-pr, 0.022, p_vec))
    r_gain = 2.2 if "LVH" in findings else 1.0
    if "CLBBB" in findings:
        waves += [Wave(0.0, 0.03, (1.0, 0.35, -0.75)), Wave(0.05, 0.025, (0.6, 0.2, -0.5)),
                  Wave(qt - 0.06, 0.05, (-0.25, -0.1, 0.3))]
    else:
        waves += [Wave(-0.028, 0.009, (-0.12, 0.03, 0.15)), Wave(0.0, 0.012, tuple(r_gain * np.array([0.6, 0.75, -0.35]))),
                  Wave(0.03, 0.012, tuple(r_gain * np.array([-0.15, -0.15, -0.3])))]
        t_vec = np.array([0.22, 0.22, -0.05]) * (0.3 if "STD" in findings else 1.0)
        if "CRBBB" in findings:
            waves.append(Wave(0.075, 0.02, (-0.45, 0.0, 0.75)))
            t_vec = t_vec + np.array([0.0, 0.0, -0.15])
        waves.append(Wave(qt - 0.06, 0.045, tuple(t_vec)))
    if "STE" in findings:
        waves += [Wave(-0.02, 0.012, (-0.1, 0.0, -0.55)), Wave(0.04, qt - 0.12, (0.05, -0.05, 0.25), plateau=True)]
    if "STD" in findings:
        waves.append(Wave(0.04, qt - 0.12, (-0.12, -0.1, 0.04), plateau=True))
    return waves


def _beats(findings: set[str], rng: np.random.Generator) -> list[tuple[float, str, float]]:
    """(QRS time, kind, preceding RR) for each beat in the record."""
    rate = {"SBRAD": (42, 56), "STACH": (105, 140), "AFIB": (75, 130)}.get(
        next((f for f in ("SBRAD", "STACH", "AFIB") if f in findings), "SR"), (60, 95))
    rr_mean = 60.0 / rng.uniform(*rate)
    t, beats = rng.uniform(0.1, 0.6), []
    while t < SECONDS + 0.5:
        if "AFIB" in findings:
            rr = max(0.33, rr_mean * (1 + 0.28 * rng.standard_normal()))
        else:
            rr = rr_mean * (1 + 0.02 * rng.standard_normal())
        kind = "sinus"
        if len(beats) > 1 and beats[-1][1] == "sinus":
            if "PVC" in findings and rng.random() < 0.18:
                kind, rr = "pvc", rr * 0.6
            elif "PAC" in findings and rng.random() < 0.18:
                kind, rr = "pac", rr * 0.65
        if beats and beats[-1][1] == "pvc":
            rr = rr * 1.4  # compensatory pause
        t += rr if beats else 0.0
        beats.append((t, kind, rr))
    return beats


def synthesize(findings: set[str], rng: np.random.Generator) -> np.ndarray:
    """One 10 s, 500 Hz, 12-lead record in millivolts: [12, 5000]."""
    n = int(FS * SECONDS)
    t = np.arange(n) / FS
    pr = rng.uniform(0.24, 0.32) if "1AVB" in findings else rng.uniform(0.13, 0.19)
    heart = np.zeros((n, 3))
    for qrs, kind, rr in _beats(findings, rng):
        amp = rng.uniform(0.9, 1.1)
        for w in _beat_waves(findings, kind, rng, rr, pr):
            dt = t - (qrs + w.offset)
            if w.plateau:
                shape = expit(dt / 0.01) - expit((dt - w.width) / 0.02)
            else:
                shape = np.exp(-0.5 * (dt / w.width) ** 2)
            heart += amp * np.outer(shape, w.vector)
    if "AFIB" in findings:
        f1, f2 = rng.uniform(4.5, 7.5, size=2)
        fwave = 0.04 * (np.sin(2 * np.pi * f1 * t + rng.uniform(0, 6.3)) + 0.6 * np.sin(2 * np.pi * f2 * t + rng.uniform(0, 6.3)))
        heart += np.outer(fwave, (0.1, 0.5, 0.6))
    sig = heart @ LEADS.T  # [n, 12]
    wander_f = rng.uniform(0.1, 0.4, size=12)
    wander = rng.uniform(0.02, 0.12, size=12) * np.sin(2 * np.pi * wander_f * t[:, None] + rng.uniform(0, 6.3, size=12))
    sig += wander + rng.normal(0, 0.012, size=sig.shape)
    return sig.T.astype(np.float32)


def load_conditions() -> dict[str, Any]:
    return yaml.safe_load(CONDITIONS_FILE.read_text())


def draw_findings(spec: dict[str, Any], layout: str, rng: np.random.Generator) -> set[str]:
    rhythms = spec["layouts"][layout]["rhythms"]
    p = np.array([spec["rhythms"][r] for r in rhythms], dtype=float)
    findings = {str(rng.choice(rhythms, p=p / p.sum()))}
    excluded = set(spec["layouts"][layout].get("exclude", []))
    for name, prob in spec["findings"].items():
        if rng.random() < prob and name not in excluded and not any(name in pair and (set(pair) - {name}) & findings for pair in spec["exclusive"]):
            findings.add(name)
    if findings <= {"SR"}:
        findings.add("NORM")
    return findings


def _codes(spec: dict[str, Any], findings: set[str], vocab: str) -> list:
    out = []
    for f in sorted(findings):
        for c in spec["codes"][f][vocab]:
            if c not in out:
                out.append(c)
    return out


def _report(spec: dict[str, Any], findings: set[str]) -> str:
    order = ["NORM", "SR", "SBRAD", "STACH", "AFIB", "PAC", "PVC", "1AVB", "CRBBB", "CLBBB", "LVH", "STE", "STD"]
    descr = [spec["statements"][spec["codes"][f]["scp"][0]][0] for f in order if f in findings]
    return ", ".join(descr)


def _records(layout: str, n: int, seed: int, progress: bool):
    spec = load_conditions()
    for i in tqdm(range(n), desc=f"demo {layout}", unit="rec", disable=not progress):
        rng = np.random.default_rng([seed, LAYOUTS.index(layout), i])
        findings = draw_findings(spec, layout, rng)
        yield i, findings, synthesize(findings, rng), rng, spec


def _write_ptbxl(root: Path, n: int, seed: int, progress: bool) -> None:
    rows = []
    for i, findings, sig, rng, spec in _records("ptbxl", n, seed, progress):
        ecg_id = i + 1
        folder = f"{(ecg_id // 1000) * 1000:05d}"
        hr, lr = f"records500/{folder}/{ecg_id:05d}_hr", f"records100/{folder}/{ecg_id:05d}_lr"
        write_wfdb(root / hr, sig, FS, STANDARD_LEADS)
        write_wfdb(root / lr, resample_poly(sig, 1, 5, axis=1), 100, STANDARD_LEADS)
        scp = {code: (0.0 if code in ("SR",) else 100.0) for code in _codes(spec, findings, "scp")}
        rows.append({
            "ecg_id": ecg_id, "patient_id": float(ecg_id - 1 if i % 10 == 9 else ecg_id),
            "age": float(rng.integers(18, 90)), "sex": int(rng.integers(0, 2)), "height": np.nan,
            "weight": float(rng.integers(50, 110)), "nurse": np.nan, "site": float(rng.integers(0, 3)),
            "device": "DEMO-SYNTH", "recording_date": f"2020-01-01 00:{i // 60 % 60:02d}:{i % 60:02d}",
            "report": _report(spec, findings), "scp_codes": str(scp), "heart_axis": np.nan,
            "infarction_stadium1": np.nan, "infarction_stadium2": np.nan, "validated_by": np.nan,
            "second_opinion": False, "initial_autogenerated_report": False, "validated_by_human": True,
            "baseline_drift": np.nan, "static_noise": np.nan, "burst_noise": np.nan,
            "electrodes_problems": np.nan, "extra_beats": "PVC" if "PVC" in findings else np.nan,
            "pacemaker": np.nan, "strat_fold": 0, "filename_lr": lr, "filename_hr": hr,
        })
    db = pd.DataFrame(rows).set_index("ecg_id")
    y = db["scp_codes"].map(ast.literal_eval).map(list).str.join("|").str.get_dummies()
    db["strat_fold"] = stratified_folds(y, db["patient_id"], 10, seed).to_numpy()
    db.to_csv(root / "ptbxl_database.csv")
    cols = ["description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"]
    st = pd.DataFrame.from_dict(spec["statements"], orient="index", columns=cols)
    st.to_csv(root / "scp_statements.csv")


def _write_cinc(root: Path, layout: str, n: int, seed: int, progress: bool) -> None:
    for i, findings, sig, rng, spec in _records(layout, n, seed, progress):
        codes = _codes(spec, findings, "cpsc" if layout == "cpsc2018" else "csn")
        if layout == "cpsc2018":
            path = root / f"A{i + 1:04d}"
        else:
            path = root / "WFDBRecords" / f"{i // 1000 + 1:02d}" / f"{i // 100 + 10:03d}" / f"JS{i + 1:05d}"
        comments = [f"Age: {int(rng.integers(18, 90))}", f"Sex: {'Male' if rng.random() < 0.5 else 'Female'}",
                    f"Dx: {','.join(str(c) for c in codes)}", "Rx: Unknown", "Hx: Unknown", "Sx: Unknown"]
        write_wfdb(path, sig, FS, STANDARD_LEADS, mat=True, comments=comments)


def ensure_demo(layout: str, root: str | Path, n_records: int, seed: int = 0, progress: bool = True) -> Path:
    """Generate the demo dataset into ``root`` once (atomically); later calls return at once."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown demo layout '{layout}'; choose from {LAYOUTS}")
    root = Path(root)
    params = {"layout": layout, "n_records": int(n_records), "seed": int(seed),
              "conditions_sha": hashlib.sha256(CONDITIONS_FILE.read_bytes()).hexdigest()[:12]}
    done = root / _DONE
    if done.is_file() and json.loads(done.read_text()) == params:
        return root
    tmp = root.with_name(f".{root.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        if layout == "ptbxl":
            _write_ptbxl(tmp, n_records, seed, progress)
        else:
            _write_cinc(tmp, layout, n_records, seed, progress)
        (tmp / _DONE).write_text(json.dumps(params))
        if done.is_file() and json.loads(done.read_text()) == params:  # another process finished first
            shutil.rmtree(tmp)
            return root
        if root.exists():
            shutil.rmtree(root)  # a stale tree of other parameters
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
