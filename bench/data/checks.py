"""What is wrong with a signal before it is used: one set of checks for `bench data verify` (listed per record) and
`bench embed` (refused). The thresholds are stated here, once."""

from __future__ import annotations

from typing import Sequence

import numpy as np

FLAT_STD_MV = 1e-4          # a lead whose standard deviation is below this (in mV) is flat
MAX_PEAK_TO_PEAK_MV = 20.0  # median lead peak-to-peak above this: ADC counts or microvolts, not millivolts
MIN_PEAK_TO_PEAK_MV = 0.02  # median lead peak-to-peak below this: volts, or a flat record
MAX_NAN_FRACTION = 0.1      # more non-finite samples than this in a lead would be mostly interpolated
MIN_SECONDS = 2.0           # records shorter than this are mostly zero padding in every encoder's window


def longest_run(mask: np.ndarray) -> int:
    """The longest run of True in a 1-D mask."""
    if not mask.any():
        return 0
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def signal_problems(x: np.ndarray, fs: float, leads: Sequence[str], units: str = "mV", nan_window: int = 6) -> list[str]:
    """The problems of one record [leads, samples] at ``fs``: non-finite leads and long gaps, flat leads, amplitudes
    that are not millivolts (for mV data), and a record too short for any encoder's window."""
    out, flat = [], []
    bad = ~np.isfinite(x)
    for i, lead in enumerate(leads):
        if bad[i].all():
            out.append(f"lead {lead} has no valid sample (all NaN)")
            continue
        if bad[i].mean() > MAX_NAN_FRACTION:
            out.append(f"lead {lead} is {100 * bad[i].mean():.0f} % NaN (more than {100 * MAX_NAN_FRACTION:.0f} % would be "
                       f"interpolated)")
        elif longest_run(bad[i]) > 2 * nan_window + 1:
            out.append(f"lead {lead} has a NaN gap of {longest_run(bad[i])} samples ({longest_run(bad[i]) / fs:.2f} s), "
                       f"interpolated by the preprocessing")
        if np.nanstd(x[i]) < FLAT_STD_MV:
            flat.append(lead)
    if flat:
        out.append(f"flat lead(s) {', '.join(flat)} (standard deviation under {FLAT_STD_MV:g} mV)")
    if units == "mV" and not bad.all():
        p2p = np.nanmedian(np.nanpercentile(x, 99.5, axis=-1) - np.nanpercentile(x, 0.5, axis=-1))
        if p2p > MAX_PEAK_TO_PEAK_MV:
            out.append(f"amplitudes look like ADC counts or microvolts, not millivolts (median peak-to-peak {p2p:.3g}; fix: "
                       f"divide by the gain, e.g. 1000)")
        elif p2p < MIN_PEAK_TO_PEAK_MV:
            out.append(f"amplitudes look like volts, not millivolts (median peak-to-peak {p2p:.3g}; fix: multiply by 1000)")
    if x.shape[-1] / fs < MIN_SECONDS:
        out.append(f"record of {x.shape[-1] / fs:.2f} s: shorter than {MIN_SECONDS:g} s, it would be mostly zero padding")
    return out
