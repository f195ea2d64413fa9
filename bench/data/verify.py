"""`bench data verify`: what a dataset holds (records, tasks, folds, splits, sources, rates, durations) and what is
wrong with it. It is the gate before a run: it fails when records cannot be used as the dataset says (unreadable,
labelled without a split, without a label in the label space, of another source) and lists what each record's
signal shows (flat leads, long NaN gaps, amplitudes that are not millivolts)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate
from tqdm.auto import tqdm

from bench.data.base import DatasetReader
from bench.data.checks import signal_problems
from bench.data.errors import DataError


@dataclass
class VerifyReport:
    dataset: str
    n_records: int
    units: str
    prefiltered: bool
    folds: dict[int, int]
    splits: dict[str, int]
    tasks: dict[str, dict]
    notes: list[str] = field(default_factory=list)
    #: what makes the dataset unusable as it says (the command fails on these)
    problems: list[str] = field(default_factory=list)
    #: what the signals show, per record (listed; the preprocessing copes, a user should know)
    findings: list[str] = field(default_factory=list)
    rates: dict[float, int] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    n_read: int = 0

    def render(self) -> str:
        lines = [f"dataset {self.dataset}: {self.n_records} records, units {self.units}"
                 + (" (prefiltered by the publisher; not mV)" if self.prefiltered else "")]
        if self.folds:
            lines.append("folds: " + ", ".join(f"{k}:{v}" for k, v in sorted(self.folds.items())))
        if self.splits:
            lines.append("splits: " + ", ".join(f"{k}:{v}" for k, v in self.splits.items()))
        rows = [[name, t["records"], t["classes"], t["present"], ", ".join(t["absent"]) or "-"] for name, t in self.tasks.items()]
        if rows:
            lines.append(tabulate(rows, headers=["task", "records", "classes", "present", "absent classes"]))
        lines += [f"note: {n}" for n in self.notes]
        if self.n_read:
            s = np.asarray(self.seconds)
            lines.append(f"read {self.n_read} signals ({len(s)} readable): sampling rates "
                         + (", ".join(f"{k:g} Hz x {v}" for k, v in sorted(self.rates.items())) or "-")
                         + (f"; durations {s.min():.1f} / {np.median(s):.1f} / {s.max():.1f} s (min / median / max)" if len(s) else ""))
            lines.append(f"signal findings: {len(self.findings)}")
            lines += [f"finding: {p}" for p in self.findings[:50]]
            if len(self.findings) > 50:
                lines.append(f"... and {len(self.findings) - 50} more findings")
        lines.append(f"problems: {len(self.problems)}" + (" (the dataset is not usable as it is: fix them first)" if self.problems else ""))
        lines += [f"problem: {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"... and {len(self.problems) - 50} more")
        return "\n".join(lines)


def verify(reader: DatasetReader, read_signals: bool = True, progress: bool = True) -> VerifyReport:
    index = reader.index
    rec = index.records
    folds = rec["fold"].dropna().astype(int).value_counts().sort_index().to_dict() if "fold" in rec else {}
    splits = rec["split"].dropna().value_counts().to_dict() if "split" in rec else {}
    tasks = {}
    for name, task in index.tasks.items():
        counts = task.counts()
        tasks[name] = {"records": len(task.labels), "classes": len(task.classes),
                       "present": int((counts > 0).sum()), "absent": [c for c in task.classes if counts[c] == 0]}
        unsplit = rec.loc[task.labels.index, "split"].isna() if "split" in rec else None
        if unsplit is not None and rec["split"].notna().any() and unsplit.any():
            tasks[name]["without split"] = int(unsplit.sum())
    problems = list(index.problems) or [f"task {n}: {t['without split']} labelled record(s) have no train/val/test split"
                                        for n, t in tasks.items() if t.get("without split")]
    report = VerifyReport(index.name, len(rec), index.units, index.prefiltered, folds, splits, tasks, list(index.notes),
                          problems=problems)
    if read_signals:
        rates: Counter = Counter()
        for rid in tqdm(rec.index, desc=f"verify {index.name}", unit="rec", disable=not progress):
            try:
                ecg = reader.read(rid)
            except DataError as exc:
                report.problems.append(str(exc))
                continue
            finally:
                report.n_read += 1
            rates[ecg.fs] += 1
            report.seconds.append(ecg.seconds)
            report.findings += [f"{ecg.source or rid}: {p}" for p in signal_problems(ecg.signal, ecg.fs, ecg.leads, index.units)]
        report.rates = dict(rates)
    return report
