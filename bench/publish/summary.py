"""`bench table summary`: one summary per kind of question, made honestly.

Methods are ranked per task by macro AUROC, or for a continuous target (the regression suite's ridge head) by MAE (1 =
best, ties share the mean rank), and a category's score is a method's mean rank over the category's tasks, never an
average of raw metrics across tasks. Its 95 % interval resamples: for each
of B draws, every task's test records are resampled (the same stratified resample for every method, and the same seed
draw where cells are over seeds), the methods re-ranked per task and the ranks averaged; percentile interval. Only
methods with a cell on every task of a category are ranked in it; the table names the tasks it covers and those it
leaves out. Categories are data (configs/tasks/categories.yaml).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import rankdata

from bench import REPO_ROOT
from bench.publish.compare import shared_resample_aurocs, shared_resample_maes
from bench.publish.tables import auroc_estimate, degenerate, not_applicable, row_name, seed_view
from bench.suites.base import render_block
from bench.suites.metrics import percentile_interval

CATEGORIES = REPO_ROOT / "configs" / "tasks" / "categories.yaml"


def _task_boot(store, boot_cache: Path, methods: list[str], dataset: str, task: str, protocol: str, fraction: float,
               seed, mode: str, n_boot: int, boot_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every method's AUROC on the full test set [M] and on B shared resamples [B, M]."""
    stats, _ = shared_resample_aurocs(store, boot_cache, {m: (m, mode) for m in methods}, dataset=dataset, task=task,
                                      protocol=protocol, fraction=fraction, seed=seed, n_boot=n_boot, boot_seed=boot_seed)
    return np.array([stats[m][1] for m in methods]), np.stack([stats[m][0] for m in methods], axis=1)


def _target_boot(store, methods: list[str], dataset: str, task: str, seed, mode: str, n_boot: int,
                 boot_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every method's negative MAE on a continuous target (higher is better, so ranks read as for AUROC) on the full
    test set [M] and on B shared resamples of its records, seeds drawn where cells are over seeds [B, M]."""
    stats, _, _ = shared_resample_maes(store, {m: (m, mode) for m in methods}, dataset=dataset, task=task, seed=seed,
                                       n_boot=n_boot, boot_seed=boot_seed)
    return -np.array([stats[m][1] for m in methods]), -np.stack([stats[m][0] for m in methods], axis=1)


def _cells(aggregates: pd.DataFrame, dataset: str, protocol: str, fraction: float, mode: str, estimate) -> pd.DataFrame:
    """The cells a summary ranks: one dataset, protocol, label fraction and mode, all 12 leads, not degenerate."""
    if aggregates.empty:
        return aggregates
    df = seed_view(aggregates[(aggregates["dataset"] == dataset) & (aggregates["protocol"] == protocol)
                              & (aggregates["fraction"].astype(float) == float(fraction)) & ~not_applicable(aggregates)])
    if len(df):
        df = df[(df["mode"] == mode) & (df["leads"] == "12") & (df["val_fraction"] == "full")]
        df = df[[not degenerate(r) and np.isfinite(estimate(r)) for r in df.to_dict("records")]]
    return df


def summary_table(store, aggregates: pd.DataFrame, boot_cache: Path, dataset: str, *, protocol: str = "fixed",
                  fraction: float = 1.0, mode: str = "linear", n_boot: int = 1000, boot_seed: int = 0, fmt: str = "md") -> str:
    categories = (yaml.safe_load(CATEGORIES.read_text()) or {}).get(dataset, {})
    df = _cells(aggregates, dataset, protocol, fraction, mode, auroc_estimate)
    targets = _cells(store.aggregates(["regression"]), dataset, "fixed", 1.0, mode, lambda r: float(r.get("mae", np.nan)))
    continuous = set(targets["task"]) if len(targets) else set()
    df = pd.concat([df, targets[[t in categories for t in targets["task"]]]] if len(targets) else [df], ignore_index=True)
    if df.empty:
        raise LookupError(f"no linear results for {dataset} ({protocol}, {100 * fraction:g}% labels, {mode})")
    uncategorised = sorted(set(df["task"]) - set(categories))
    blocks = []
    for category in sorted(set(categories.values())):
        tasks = sorted(t for t, c in categories.items() if c == category and t in set(df["task"]))
        if not tasks:
            continue
        methods = sorted(set.intersection(*(set(df[df["task"] == t]["method"]) for t in tasks)))
        left_out = sorted(set(df[df["task"].isin(tasks)]["method"]) - set(methods))
        if len(methods) < 2:
            continue
        seeds = {t: "all" if (df[(df["task"] == t)]["seed"].astype(str) == "all").all() else 0 for t in tasks}
        whole, boots = zip(*(_target_boot(store, methods, dataset, t, seeds[t], mode, n_boot, boot_seed) if t in continuous else
                             _task_boot(store, boot_cache, methods, dataset, t, protocol, fraction, seeds[t], mode, n_boot, boot_seed)
                             for t in tasks))
        rank = np.mean([rankdata(-w) for w in whole], axis=0)  # [M]
        boot_rank = np.mean([np.apply_along_axis(lambda a: rankdata(-a), 1, b) for b in boots], axis=0)  # [B, M]
        names = {m: row_name(df[df["method"] == m].iloc[0]) for m in methods}
        rows = []
        for i in np.argsort(rank, kind="stable"):
            lo, hi = percentile_interval(boot_rank[:, i])
            rows.append([names[methods[i]], f"{rank[i]:.2f} [{lo:.2f}, {hi:.2f}]"]
                        + [f"{rankdata(-whole[k])[i]:g} ({-whole[k][i]:.2f})" if t in continuous else
                           f"{rankdata(-whole[k])[i]:g} ({100 * whole[k][i]:.1f})" for k, t in enumerate(tasks)])
        columns = [f"{t}: rank (MAE)" if t in continuous else f"{t}: rank (AUROC)" for t in tasks]
        cells = pd.DataFrame(rows, columns=["method", "mean rank [95% CI]", *columns]).set_index("method")
        best = ("highest macro AUROC" + (" or, for a continuous target, lowest MAE" if continuous & set(tasks) else "")
                if set(tasks) - continuous else "lowest MAE")
        title = (f"summary on {dataset}, {category}: mean rank over the {len(tasks)} task(s) {', '.join(tasks)} ({mode}, {protocol}, "
                 f"{100 * fraction:g}% labels; rank 1 = {best} of the {len(methods)} methods with a cell on every "
                 f"one; 95% CI: {n_boot} resamples of each task's test records, seeds drawn where cells are over seeds, methods "
                 f"re-ranked on each)" + (f"; not ranked (a task missing): {', '.join(left_out)}" if left_out else "")
                 + (f"; tasks in no category: {', '.join(uncategorised)}" if uncategorised else ""))
        blocks.append(render_block(cells, title, fmt))
    if not blocks:
        raise LookupError(f"no category of {dataset} has two methods on all its tasks (configs/tasks/categories.yaml)")
    return "\n\n".join(blocks) + "\n"
