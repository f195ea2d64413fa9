"""`bench data verify`: what a dataset holds (records, tasks, folds, splits) and what is wrong with it."""

from __future__ import annotations

from dataclasses import dataclass, field

from tabulate import tabulate
from tqdm.auto import tqdm

from bench.data.base import DatasetReader
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
    problems: list[str] = field(default_factory=list)
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
            lines.append(f"read {self.n_read} signals: {len(self.problems)} problem(s)")
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
    report = VerifyReport(index.name, len(rec), index.units, index.prefiltered, folds, splits, tasks, list(index.notes))
    if read_signals:
        for rid in tqdm(rec.index, desc=f"verify {index.name}", unit="rec", disable=not progress):
            try:
                reader.read(rid)
            except DataError as exc:
                report.problems.append(str(exc))
            report.n_read += 1
    return report
