"""WFDB records: validated reading with ``wfdb`` and a fast writer for format-16 records.

Reading checks what ``wfdb`` would otherwise report obscurely (or not at all): missing files, a
data file shorter or longer than its header says, wrong lead count, unexpected sampling rate,
NaN-only leads. The writer produces the two layouts PhysioNet ships: ``.dat`` (PTB-XL) and the
CinC MATLAB v4 ``.mat`` with a 24-byte preamble ("16+24" in the header).
"""

from __future__ import annotations

import contextlib
import re
import struct
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import wfdb

from bench.data.base import RawECG
from bench.data.errors import DataError
from bench.data.leads import canonical_lead
from bench.files import atomic_path

_BYTES_PER_SAMPLE = {"16": 2, "80": 1, "32": 4}


def _read_header(record_path: Path) -> wfdb.io.record.Record:
    hea = record_path.with_suffix(".hea")
    if not hea.is_file():
        raise DataError(hea, "header file not found", "check the dataset root (data.root=...) or re-download the record")
    try:
        return wfdb.rdheader(str(record_path))
    except Exception as exc:  # wfdb raises many types for malformed headers
        raise DataError(hea, f"unreadable WFDB header ({exc})", "re-download the record") from exc


def _check_files(record_path: Path, header: wfdb.io.record.Record) -> None:
    """The signal file the header names exists and holds exactly the samples the header promises."""
    hea = record_path.with_suffix(".hea")
    if not header.file_name:
        raise DataError(hea, "header lists no signal file", "re-download the record")
    data = record_path.parent / header.file_name[0]
    if not data.is_file():
        raise DataError(data, "signal file named in the header not found", "re-download the record")
    fmt = header.fmt[0]
    if fmt in _BYTES_PER_SAMPLE and len(set(header.file_name)) == 1:
        offset = (header.byte_offset or [0])[0] or 0
        expected = offset + header.sig_len * header.n_sig * _BYTES_PER_SAMPLE[fmt]
        actual = data.stat().st_size
        if actual < expected:
            have = (actual - offset) // (header.n_sig * _BYTES_PER_SAMPLE[fmt])
            raise DataError(
                data,
                f"truncated signal file: {actual} bytes hold {have} samples per lead, header says {header.sig_len}",
                "re-download the record (the transfer was cut short)",
            )
        if actual > expected:
            raise DataError(
                data,
                f"header/data mismatch: file has {actual} bytes, header implies {expected}",
                "the header and signal file do not belong together; re-download both",
            )


#: the voltage units a header may give, as millivolts per unit
MV_PER_UNIT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}


def header_text(hea: Path) -> str:
    """A header's text; bytes that are not UTF-8 (a damaged file, or a comment written in another encoding) are refused
    naming the line, since its values (rate, gains, #Sex, #Dx) cannot be trusted to be read as written."""
    raw = hea.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(hea, f"line {line} holds bytes that are not UTF-8 text ({raw[exc.start:exc.start + 4]!r})",
                        "re-save the header as UTF-8 / ASCII, or re-download the record") from None


def _number(text: str) -> float | None:
    try:
        return float(re.split(r"[/(]", text, maxsplit=1)[0])
    except ValueError:
        return None


def check_header_values(hea: Path, text: str) -> None:
    """Values WFDB would silently replace by defaults, refused where they enter: a sampling rate that is not a positive
    number (WFDB reads 0 as 250 Hz) and an ADC gain that is zero or negative (WFDB reads 0 as 200 per mV)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(hea, "empty header", "re-download the record")
    fields = lines[0].split()
    if len(fields) >= 4 and (not fields[3].isdigit() or int(fields[3]) <= 0):
        raise DataError(hea, f"sample count {fields[3]!r} is not a positive whole number",
                        "repair the header's first line (record name, signals, rate, samples) or re-download the record")
    if len(fields) >= 3:
        fs = _number(fields[2])
        if fs is None or not np.isfinite(fs) or fs <= 0:
            raise DataError(hea, f"sampling rate {fields[2]!r} is not a positive number of Hz",
                            "repair the header's first line (record name, signals, rate, samples) or re-download the record")
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if len(parts) < 3 or not re.match(r"^[-+0-9.eE]", parts[2]):
            continue
        gain = _number(parts[2])
        lead = parts[8] if len(parts) > 8 else f"signal {number - 1}"
        units = parts[2].split("/", 1)[1] if "/" in parts[2] else "mV"
        if units.lower() not in MV_PER_UNIT:
            raise DataError(hea, f"{lead}: units {units!r} are not a voltage (bench reads {', '.join(sorted(MV_PER_UNIT))})",
                            "a record of ECG voltages, or repair the units in the header")
        if gain is None or not np.isfinite(gain) or gain <= 0:
            raise DataError(hea, f"{lead}: ADC gain {parts[2]!r} is not a positive number of units per mV (WFDB would "
                                 f"read 0 as its default of 200 and scale the signal by it)",
                            "repair the gain in the header (e.g. 1000/mV) or re-download the record")


@contextlib.contextmanager
def _readable(record_path: Path) -> Iterator[Path]:
    """The record as wfdb can read it. Georgia's CinC headers name the record ``E00271.mat`` on their first line (as
    shipped), which wfdb rejects: such a record is read through a corrected copy of its header beside a link to its
    signal file, in a temporary folder."""
    hea = record_path.with_suffix(".hea")
    first = hea.read_text(errors="replace").split("\n", 1) if hea.is_file() else [""]
    name = first[0].split(" ", 1)[0]
    if not name.startswith(record_path.name + ".") or len(first) < 2:
        yield record_path
        return
    with tempfile.TemporaryDirectory(prefix="bench-wfdb-") as tmp:
        fixed = Path(tmp) / record_path.name
        fixed.with_suffix(".hea").write_text(record_path.name + first[0][len(name):] + "\n" + first[1])
        for data in record_path.parent.glob(record_path.name + ".*"):
            if data.suffix != ".hea":
                (Path(tmp) / data.name).symlink_to(data.resolve())
        yield fixed


def read_wfdb(
    record_path: str | Path,
    *,
    expected_fs: float | Sequence[float] | None = None,
    n_leads: int = 12,
    record_id: str | None = None,
    leads: Sequence[str] | None = None,
    fs_option: str = "data.sampling_rate",
) -> RawECG:
    """Read a WFDB record (path without extension) into millivolts, validating it on the way.

    ``leads``: the lead set the dataset declares (its count replaces ``n_leads``; a record must hold those leads).
    ``fs_option``: the config key that sets the expected rate, for the hint of a refused one. The header is parsed
    once (wfdb's parser dominates the cost of a record): by ``rdrecord`` when the record reads, and again only to
    name the fault when it does not."""
    record_path = Path(record_path)
    where = record_path.with_suffix(".hea")
    n_leads = len(leads) if leads else n_leads
    if where.is_file():
        check_header_values(where, header_text(where))
    try:
        with _readable(record_path) as readable:
            rec = wfdb.rdrecord(str(readable))
    except Exception as exc:
        header = _read_header(record_path)
        _check_files(record_path, header)
        raise DataError(record_path.parent / header.file_name[0], f"unreadable signal data ({exc})", "re-download the record") from exc
    _check_files(record_path, rec)
    names = tuple(canonical_lead(n) for n in rec.sig_name)
    if rec.n_sig != n_leads:
        raise DataError(where, f"wrong lead count: {rec.n_sig} signals ({', '.join(names)}), expected {n_leads}",
                        f"use a {n_leads}-lead recording, or declare the dataset's lead set with data.leads=[{','.join(names)}]")
    if leads and set(map(canonical_lead, leads)) - set(names):
        raise DataError(where, f"the record's leads are {', '.join(names)}, the dataset declares {', '.join(leads)}",
                        f"set data.leads=[{','.join(names)}]")
    if expected_fs is not None:
        allowed = [expected_fs] if isinstance(expected_fs, (int, float)) else list(expected_fs)
        if not any(abs(rec.fs - f) < 1e-6 for f in allowed):
            raise DataError(where, f"unexpected sampling rate {rec.fs:g} Hz, expected {' or '.join(f'{f:g}' for f in allowed)} Hz",
                            f"point data.root at the right records folder or set {fs_option}={rec.fs:g}")
    signal = np.asarray(rec.p_signal, dtype=np.float64).T  # as WFDB computes it: a filter upstream runs sees the same bits
    units = [u or "mV" for u in (rec.units or ["mV"] * rec.n_sig)]
    scale = np.array([MV_PER_UNIT.get(u.lower(), 1.0) for u in units])
    signal = signal * scale[:, None]
    leads = names
    nan_only = [leads[i] for i in range(signal.shape[0]) if not np.isfinite(signal[i]).any()]
    if nan_only:
        raise DataError(where, f"lead(s) {', '.join(nan_only)} contain no valid samples (all NaN)",
                        "drop the record or run with data.on_error=skip")
    return RawECG(record_id or record_path.name, signal, float(rec.fs), leads, "mV", str(record_path))


def _digitise(signal_mv: np.ndarray, gain: float) -> np.ndarray:
    d = np.round(np.nan_to_num(signal_mv, nan=0.0) * gain)
    return np.clip(d, -32767, 32767).astype("<i2")  # -32768 is WFDB's "invalid sample" marker


def _fmt_gain(gain: float, baseline_in_header: bool) -> str:
    g = f"{gain:g}" if not baseline_in_header else f"{float(gain)}"
    return f"{g}(0)/mV" if baseline_in_header else f"{g}/mV"


def write_wfdb(
    record_path: str | Path,
    signal_mv: np.ndarray,
    fs: float,
    leads: Sequence[str],
    *,
    gain: float = 1000.0,
    mat: bool = False,
    comments: Sequence[str] = (),
) -> None:
    """Write [leads, samples] millivolts as a format-16 WFDB record (``.dat`` or CinC ``.mat``)."""
    record_path = Path(record_path)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    digital = _digitise(signal_mv, gain)  # [leads, samples]
    n_sig, n = digital.shape
    name = record_path.name
    if mat:
        data_name = f"{name}.mat"
        # MATLAB v4 matrix 'val': int32 header (type 30 = int16 little-endian, rows, cols, imag, namelen)
        preamble = struct.pack("<5i", 30, n_sig, n, 0, 4) + b"val\0"
        payload = preamble + np.asfortranarray(digital).tobytes(order="F")
        fmt_field = "16+24"
    else:
        data_name = f"{name}.dat"
        payload = digital.T.tobytes()  # sample-interleaved
        fmt_field = "16"
    checks = [int(((int(digital[i].astype(np.int64).sum()) + 32768) % 65536) - 32768) for i in range(n_sig)]
    lines = [f"{name} {n_sig} {fs:g} {n}"]
    for i in range(n_sig):
        lines.append(
            f"{data_name} {fmt_field} {_fmt_gain(gain, not mat)} 16 0 {int(digital[i, 0])} {checks[i]} 0 {leads[i]}"
        )
    lines += [f"#{c}" for c in comments]
    _atomic_write(record_path.parent / data_name, payload)
    _atomic_write(record_path.with_suffix(".hea"), ("\n".join(lines) + "\n").encode())


def _atomic_write(path: Path, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def header_comments(record_path: str | Path) -> dict[str, str]:
    """The ``#Key: value`` comment lines of a header (CinC puts Age, Sex and Dx there)."""
    header_text(Path(record_path).with_suffix(".hea"))
    header = wfdb.rdheader(str(record_path))
    out: dict[str, str] = {}
    for c in header.comments or []:
        key, sep, value = c.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out
