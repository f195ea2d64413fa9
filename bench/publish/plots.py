"""Figures from the MLflow aggregates and the embedding cache (PNG, matplotlib's Agg backend).

- label efficiency: macro AUROC (with its 95% interval) against the label fraction, one line per method;
- forest plot: macro AUROC with 95% intervals per method and task;
- regression forest plot: each continuous target's test MAE in its unit and R², with 95% intervals, per method;
- UMAP of each encoder's embeddings coloured by rhythm class (the MERIT paper's Fig. 4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402

from bench.publish.tables import comparable_parts, not_applicable, row_name, seed_view, seed_words  # noqa: E402

CONTROLS = ("random", "signal_stats", "llm_only")
UMAP_FIGURE = "umap_rhythm.png"


def _style(method: str) -> dict:
    return {"linestyle": "--", "alpha": 0.8} if method in CONTROLS else {"linewidth": 2 if method == "merit" else 1.2}


def label_efficiency(aggregates: pd.DataFrame, dataset: str, protocol: str, out: Path) -> Path:
    df, words = linear_cells(aggregates, dataset, protocol)
    df["fraction"] = df["fraction"].astype(float)
    tasks = sorted(df["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, (method, g) in enumerate(df[df["task"] == task].groupby("method")):
            g, colour = g.sort_values("fraction"), plt.cm.tab20(i % 20)
            ax.plot(g["fraction"], 100 * _auroc_point(g), marker="o", label=row_name(g.iloc[0]), color=colour, **_style(method))
            ax.fill_between(g["fraction"], 100 * g["auroc_ci_low"], 100 * g["auroc_ci_high"], color=colour, alpha=0.08)
        ax.set_xscale("log")
        ax.set_title(f"{dataset} / {task}")
        ax.set_xlabel("fraction of training labels")
        ax.set_ylabel("macro AUROC (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(textwrap.fill(words, 60 * len(tasks)), fontsize=8)
    fig.tight_layout()
    path = out / f"label_efficiency_{dataset}_{protocol}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def linear_cells(aggregates: pd.DataFrame, dataset: str, protocol: str) -> tuple[pd.DataFrame, str]:
    """The rows a linear table shows for one dataset and protocol, one per method x task x fraction: the seed view
    (mean over seeds where logged), the linear mode only, and the comparable part (records, pretraining budget) with
    the most methods. Returned with the words that say which rows these are."""
    df = aggregates[(aggregates["suite"] == "linear") & (aggregates["dataset"] == dataset) & (aggregates["protocol"] == protocol)]
    df = seed_view(df) if len(df) else df
    if len(df):
        df = df[(df["mode"] == "linear") & (df["val_fraction"] == "full") & (df["leads"] == "12")]
    if df.empty:
        raise LookupError(f"no linear results for {dataset} / {protocol}")
    setting, part = max(comparable_parts(df), key=lambda p: p[1]["method"].nunique())
    return part.copy(), f"{seed_words(part)}{setting}"


def _auroc_point(agg):
    """The AUROC the bootstrap interval belongs to: pooled over the units (for cv10 the fold mean can lie
    outside the interval); the mean where no pooled value was logged."""
    if "auroc_pooled" not in agg:
        return agg["auroc_mean"]
    if isinstance(agg, pd.DataFrame):
        return agg["auroc_pooled"].fillna(agg["auroc_mean"])
    return agg["auroc_pooled"] if pd.notna(agg["auroc_pooled"]) else agg["auroc_mean"]


def forest(aggregates: pd.DataFrame, dataset: str, protocol: str, fraction: float, out: Path) -> Path:
    df, words = linear_cells(aggregates, dataset, protocol)
    df = df[df["fraction"].astype(float) == fraction]
    if df.empty:
        raise LookupError(f"no linear results for {dataset} / {protocol} / {fraction}")
    tasks = sorted(df["task"].unique())
    methods = sorted(df["method"].unique(), key=lambda m: (m in CONTROLS, m))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 0.45 * len(methods) + 1.6), sharex=True, sharey=True,
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        g = df[df["task"] == task].set_index("method")
        for y, m in enumerate(methods):
            if m not in g.index:
                continue
            r = g.loc[m]
            mid, lo, hi = 100 * float(_auroc_point(r)), 100 * float(r["auroc_ci_low"]), 100 * float(r["auroc_ci_high"])
            ax.errorbar(mid, y, xerr=[[mid - lo], [hi - mid]], fmt="o", color="grey" if m in CONTROLS else "C0", capsize=3)
        ax.set_yticks(range(len(methods)), [row_name(df[df["method"] == m].iloc[0]) for m in methods])
        ax.set_title(task)
        ax.set_xlabel("pooled macro AUROC (%), 95% CI")
        ax.xaxis.set_major_locator(ticker.MultipleLocator(5))
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(textwrap.fill(f"{dataset}, protocol {protocol}, {100 * fraction:g}% labels; {words}", 50 * len(tasks)), fontsize=8)
    fig.tight_layout()
    path = out / f"forest_{dataset}_{protocol}_{fraction:g}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def regression_cells(aggregates: pd.DataFrame, dataset: str, mode: str = "linear") -> pd.DataFrame:
    """The regression table's cells of one dataset and mode: one per method and target, over its seeds where logged."""
    df = aggregates[(aggregates["dataset"] == dataset) & ~not_applicable(aggregates)] if len(aggregates) else aggregates
    df = seed_view(df) if len(df) else df
    df = df[df["mode"] == mode] if len(df) else df
    if df.empty:
        raise LookupError(f"no regression results for {dataset} ({mode}): run `bench run --suite regression` first")
    return df


def regression_forest(aggregates: pd.DataFrame, dataset: str, out: Path, mode: str = "linear") -> Path:
    """MAE (top row) and R² (bottom row) with their 95% intervals per method, one column per target in its own unit:
    the regression suite's cells of one dataset and mode (over the seeds where logged)."""
    df = regression_cells(aggregates, dataset, mode)
    targets = sorted(df["task"].unique())
    methods = sorted(df["method"].unique(), key=lambda m: (m in CONTROLS, m))
    fig, axes = plt.subplots(2, len(targets), figsize=(3.2 * len(targets), 2 * (0.3 * len(methods) + 1.2)), sharey=True,
                             squeeze=False)
    for col, target in enumerate(targets):
        g = df[df["task"] == target].set_index("method")
        unit = str(g["unit_of_target"].dropna().iloc[0]) if "unit_of_target" in g and g["unit_of_target"].notna().any() else ""
        n = int(pd.to_numeric(g["n_test"], errors="coerce").max())
        for ax, metric, label in ((axes[0][col], "mae", f"MAE ({unit})"), (axes[1][col], "r2", "R²")):
            for y, m in enumerate(methods):
                if m not in g.index:
                    continue
                mid, lo, hi = (float(g.at[m, c]) for c in (metric, f"{metric}_ci_low", f"{metric}_ci_high"))
                ax.errorbar(mid, y, xerr=[[mid - lo], [hi - mid]], fmt="o", color="grey" if m in CONTROLS else "C0", capsize=3)
            ax.set_yticks(range(len(methods)), methods)
            ax.set_xlabel(f"{label}, 95% CI")
            ax.grid(alpha=0.3, axis="x")
        axes[0][col].set_title(f"{target} (n={n})")
    fig.suptitle(textwrap.fill(f"{dataset}, regression ({mode}); {seed_words(df)}; lower MAE and higher R² are better",
                               45 * len(targets)), fontsize=8)
    fig.tight_layout()
    path = out / f"regression_{dataset}_{mode}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def aggregate_figures(store, dataset: str, out: Path) -> list[Path]:
    """Every figure drawn from the aggregates alone (no encoder, no data): label efficiency and forest per protocol of
    the linear suite, and the regression suite's forest; so a publication made from a bundle draws them too."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    linear = store.aggregates(["linear"])
    for protocol in sorted(set(linear[linear["dataset"] == dataset]["protocol"])) if not linear.empty else []:
        paths += [label_efficiency(linear, dataset, protocol, out), forest(linear, dataset, protocol, 1.0, out)]
    regression = store.aggregates(["regression"])
    if not regression.empty and (regression["dataset"] == dataset).any():
        paths.append(regression_forest(regression, dataset, out))
    return paths


def umap_grid(embeddings: dict[str, np.ndarray], labels: Sequence[str], title: str, out: Path, seed: int = 0) -> Path:
    import umap

    methods = list(embeddings)
    cols = min(4, len(methods))
    rows = int(np.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    classes = sorted(set(labels), key=lambda c: -list(labels).count(c))
    colours = {c: plt.cm.tab10(i % 10) for i, c in enumerate(classes)}
    lab = np.asarray(labels)
    for ax, m in zip(axes.ravel(), methods):
        xy = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed).fit_transform(embeddings[m])
        for c in classes:
            sel = lab == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=colours[c], label=c)
        ax.set_title(m)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(methods):]:
        ax.axis("off")
    axes[0][0].legend(markerscale=3, fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    path = out / UMAP_FIGURE
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
