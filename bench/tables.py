"""The paper's tables and the leaderboard, regenerated from the MLflow aggregates (never typed by hand).

Cells are percentages. AUROC cells show the mean over test folds (cv10) or the single test (fixed)
with the 95% bootstrap interval of the pooled test predictions; F1 / accuracy show the mean. In each
column the best value is bold and the second underlined. ``with_paper`` adds the published number
(results/paper/merit_paper_tables.csv) beside ours, and the difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench import REPO_ROOT

PAPER_TABLE = REPO_ROOT / "results" / "paper" / "merit_paper_tables.csv"
ABLATION = ["merit_mse", "merit_cma", "merit_ib", "merit"]
KINDS = {"linear": ("linear",), "zero_shot": ("zero_shot",), "transfer": ("transfer",), "ablation": ("linear", "zero_shot"),
         "textgen": ("textgen",)}
TEXTGEN_METRICS = {"bleu": "BLEU (sacrebleu)", "bleu_nltk": "BLEU-4 (NLTK)", "meteor": "METEOR", "rouge_l_f1": "ROUGE-L F1",
                   "rouge_l_recall": "ROUGE-L R", "bertscore_f1": "BERTScore F1 (MiniLM)"}
METRICS = {"auroc": "AUC", "f1": "F1", "acc": "Acc"}
PAPER_METRIC = {"auroc": "auc", "f1": "f1", "acc": "accuracy"}
PROVENANCE = ["checkpoint_hash", "checkpoint", "pool", "preset", "split_hash", "seed", "code_version", "n_boot", "boot_key",
              "input_contract", "input", "corpora", "contaminated"]


# a released checkpoint scored on a dataset inside its declared training corpora (--allow-contamination)
CONTAMINATED_MARK = " ⚠contaminated"


class EmptyStore(LookupError):
    """No results for the table that was asked for."""


def _paper() -> pd.DataFrame:
    if not PAPER_TABLE.is_file():
        return pd.DataFrame(columns=["suite", "method", "dataset", "task", "metric", "value"])
    p = pd.read_csv(PAPER_TABLE)
    p.loc[p["suite"] == "zero_shot_ablation", "suite"] = "zero_shot"
    return p


def _fmt(value: float, lo: float | None = None, hi: float | None = None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    s = f"{100 * value:.1f}"
    if lo is not None and np.isfinite(lo) and hi is not None and np.isfinite(hi):
        s += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return s


def _mark(cells: pd.DataFrame, values: pd.DataFrame, fmt: str) -> pd.DataFrame:
    bold = {"md": "**{}**", "latex": "\\textbf{{{}}}", "csv": "{}"}[fmt]
    under = {"md": "<u>{}</u>", "latex": "\\underline{{{}}}", "csv": "{}"}[fmt]
    out = cells.copy()
    for col in values.columns:
        ranked = values[col].dropna().sort_values(ascending=False)
        if len(ranked) > 1:
            out.loc[ranked.index[0], col] = bold.format(out.loc[ranked.index[0], col])
            if len(ranked) > 2 or ranked.iloc[1] != ranked.iloc[0]:
                out.loc[ranked.index[1], col] = under.format(out.loc[ranked.index[1], col])
    return out


def build_table(aggregates: pd.DataFrame, kind: str, *, protocol: str | None = None, fraction: float | None = None,
                methods: Sequence[str] | None = None, with_paper: bool = False, fmt: str = "md",
                paper_names: dict[str, str] | None = None) -> str:
    suites = KINDS[kind]
    df = aggregates[aggregates["suite"].isin(suites)].copy() if len(aggregates) else aggregates
    if df.empty:
        raise EmptyStore(kind)
    blocks = []
    for suite in suites:
        sub = df[df["suite"] == suite].copy()
        if sub.empty:
            continue
        if suite == "textgen":
            blocks.append(_textgen_table(sub, methods, fmt))
            continue
        if suite == "linear":
            proto = protocol or ("fixed" if (sub["protocol"] == "fixed").any() else sub["protocol"].iloc[0])
            frac = fraction if fraction is not None else sub["fraction"].astype(float).max()
            sub = sub[(sub["protocol"] == proto) & (sub["fraction"].astype(float) == float(frac))]
            title = f"{suite} probing — protocol {proto}, {100 * float(frac):g}% labels" + (
                "; AUC = pooled out-of-fold AUROC [95% CI], F1 / Acc = means over the 10 folds" if proto == "cv10" else "")
        else:
            title = {"zero_shot": "zero-shot", "transfer": "cross-domain transfer (macro AUROC)"}[suite]
        if kind == "ablation":
            sub = sub[sub["method"].isin(ABLATION)]
        if methods:
            sub = sub[sub["method"].isin(methods)]
        if sub.empty:
            continue
        metrics = ["auroc"] if suite == "transfer" else list(METRICS)
        groups = sorted({(d, t) for d, t in zip(sub["dataset"], sub["task"])})
        order = [m for m in (list(methods or []) or ABLATION + sorted(set(sub["method"]) - set(ABLATION))) if m in set(sub["method"])]
        cells = pd.DataFrame(index=order, dtype=object)
        values = pd.DataFrame(index=order, dtype=float)
        for d, t in groups:
            g = sub[(sub["dataset"] == d) & (sub["task"] == t)].set_index("method")
            for m in metrics:
                col = f"{d}/{t} {METRICS[m]}"
                for meth in order:
                    if meth not in g.index:
                        cells.loc[meth, col] = "–"
                        continue
                    row = g.loc[meth]
                    if row.get("applicable", "yes") == "no":
                        cells.loc[meth, col] = "n/a"
                        continue
                    v = float(row.get(f"{m}_mean", np.nan))
                    if m == "auroc" and np.isfinite(float(row.get("auroc_pooled", np.nan))):
                        v = float(row["auroc_pooled"])  # the estimate its bootstrap interval belongs to (= the mean for one unit)
                    lo, hi = (row.get("auroc_ci_low"), row.get("auroc_ci_high")) if m == "auroc" else (None, None)
                    cells.loc[meth, col] = _fmt(v, lo, hi) + (CONTAMINATED_MARK if "yes" in str(row.get("contaminated", "")) else "")
                    values.loc[meth, col] = v
        cells = _mark(cells, values, fmt)
        if with_paper:
            paper = _paper()
            paper = paper[paper["suite"] == suite]
            for meth in order:
                prow, drow, any_value = {}, {}, False
                for d, t in groups:
                    for m in metrics:
                        col = f"{d}/{t} {METRICS[m]}"
                        paper_dataset = (paper_names or {}).get(d) or d  # e.g. ptbxl_1819 -> the paper's ptbxl
                        if suite == "transfer":  # families: compare only when the source is the real dataset
                            g = sub[(sub["dataset"] == d) & (sub["task"] == t) & (sub["method"] == meth)]
                            src = g["source_dataset"].iloc[0] if len(g) and "source_dataset" in g else None
                            paper_dataset = d if src and (paper_names or {}).get(src) else None
                        hit = paper[(paper["method"] == meth) & (paper["dataset"] == paper_dataset) & (paper["task"] == t)
                                    & (paper["metric"] == PAPER_METRIC[m])]
                        if len(hit):
                            pv = float(hit["value"].iloc[0])
                            prow[col], any_value = f"{pv:.1f}", True
                            ours = values.loc[meth, col] if col in values.columns else np.nan
                            drow[col] = f"{100 * ours - pv:+.1f}" if np.isfinite(ours) else "–"
                        else:
                            prow[col] = drow[col] = ""
                if any_value:
                    cells.loc[f"{meth} (paper)"] = pd.Series(prow)
                    cells.loc[f"{meth} Δ ours−paper"] = pd.Series(drow)
        cells = cells.fillna("")
        table = cells.reset_index().rename(columns={"index": "method"})
        if fmt == "csv":
            blocks.append(table.to_csv(index=False))
        else:
            rendered = tabulate(table, headers="keys", tablefmt="github" if fmt == "md" else "latex_raw", showindex=False)
            blocks.append((f"### {title}\n\n" if fmt == "md" else f"% {title}\n") + rendered)
    if not blocks:
        raise EmptyStore(kind)
    return "\n\n".join(blocks) + "\n"


def _textgen_table(sub: pd.DataFrame, methods: Sequence[str] | None, fmt: str) -> str:
    """Table 3 layout: methods x BLEU / METEOR / ROUGE / BERTScore, mean +- t-interval half-width over seeds."""
    if methods:
        sub = sub[sub["method"].isin(methods)]
    blocks = []
    for dataset, g in sub.groupby("dataset", sort=True):
        g = g.set_index("method")
        order = [m for m in (list(methods or []) or sorted(g.index, key=lambda m: (m in ("random", "llm_only"), m))) if m in g.index]
        cells = pd.DataFrame(index=order, dtype=object)
        values = pd.DataFrame(index=order, dtype=float)
        for key, label in TEXTGEN_METRICS.items():
            for m in order:
                v, h = float(g.loc[m].get(f"{key}_mean", np.nan)), float(g.loc[m].get(f"{key}_ci_half", np.nan))
                cells.loc[m, label] = f"{v:.1f} ± {h:.1f}" if np.isfinite(h) else f"{v:.1f}"
                values.loc[m, label] = v
        cells = _mark(cells, values, fmt).fillna("")
        table = cells.reset_index().rename(columns={"index": "method"})
        if fmt == "csv":
            blocks.append(table.to_csv(index=False))
        else:
            n = int(g["n_seeds"].max()) if "n_seeds" in g else 0
            title = f"text generation on {dataset} (LLM {g['llm'].iloc[0] if 'llm' in g else '?'}; mean ± 95% t-interval over {n} seeds)"
            rendered = tabulate(table, headers="keys", tablefmt="github" if fmt == "md" else "latex_raw", showindex=False)
            blocks.append((f"### {title}\n\n" if fmt == "md" else f"% {title}\n") + rendered)
    return "\n\n".join(blocks)


def leaderboard(aggregates: pd.DataFrame) -> pd.DataFrame:
    """One row per method x dataset x task x protocol x fraction (mean over seeds), with provenance."""
    if aggregates.empty:
        return aggregates
    df = aggregates[aggregates.get("applicable", "yes") != "no"].copy()
    keys = ["suite", "dataset", "task", "protocol", "fraction", "method"]
    df["fraction"] = df["fraction"].astype(float)
    num = ["auroc_mean", "auroc_std", "auroc_ci_low", "auroc_ci_high", "auroc_pooled", "auprc_mean", "f1_mean", "acc_mean", "n_test", "n_units"]
    for c in num:
        if c not in df:
            df[c] = np.nan
    for c in PROVENANCE:
        if c not in df:
            df[c] = ""
    rows = []
    for key, g in df.groupby(keys, sort=True):
        row = dict(zip(keys, key))
        for c in num:
            row[c] = round(float(g[c].astype(float).mean()), 6)
        for c in PROVENANCE:
            row[c] = ";".join(sorted({str(v) for v in g[c]}))
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(keys).reset_index(drop=True)
