"""The paper's tables and the leaderboard, regenerated from the MLflow aggregates (never typed by hand).

Cells are percentages. AUROC cells show the pooled test AUROC (the single test for fixed, the pooled
out-of-fold predictions for cv10) with its 95% bootstrap interval and, in brackets after it, the number
of classes scored of those that exist ("7/12"); F1 and balanced accuracy (BAcc, at validation-chosen
thresholds; top-1 for zero-shot) show the mean over units. A "†" marks a cell whose training split had
fewer than 5 positives for a scored class. In each column the best value is bold and the second
underlined. ``with_paper`` adds the published number (results/paper/merit_paper_tables.csv) beside
ours, and the difference only where the paper's protocol and label fraction are the cell's.
"""

from __future__ import annotations

import functools

from typing import Sequence

import numpy as np
import pandas as pd

from bench import REPO_ROOT
from bench.suites.base import render_block

PAPER_TABLE = REPO_ROOT / "results" / "paper" / "merit_paper_tables.csv"
ABLATION = ["merit_mse", "merit_cma", "merit_ib", "merit"]
KINDS = {"linear": ("linear",), "zero_shot": ("zero_shot",), "transfer": ("transfer",), "ablation": ("linear", "zero_shot"),
         "textgen": ("textgen",)}
TEXTGEN_METRICS = {"bleu": "BLEU (sacrebleu)", "bleu_nltk": "BLEU-4 (NLTK)", "meteor": "METEOR", "rouge_l_f1": "ROUGE-L F1",
                   "rouge_l_recall": "ROUGE-L R", "bertscore_f1": "BERTScore F1 (MiniLM)"}
METRICS = {"auroc": "AUC", "f1": "F1", "bacc": "BAcc", "challenge": "Challenge"}
PAPER_METRIC = {"auroc": "auc", "f1": "f1"}  # the paper's "accuracy" is undefined there, so not set against BAcc
PROVENANCE = ["checkpoint_hash", "checkpoint", "checkpoint_sha256", "pool", "preset", "pretrain_budget", "split_hash", "seed",
              "code_version", "n_boot", "boot_key", "input_contract", "input", "corpora", "contaminated", "pretrain_text",
              "trust_checkpoint_code", "unit_set", "low_support", "task_version"]
LOW_SUPPORT_MARK = "†"


# a released checkpoint scored on a dataset inside its declared training corpora (--allow-contamination)
CONTAMINATED_MARK = " ⚠contaminated"
# an encoder pretrained on the records' label descriptions (pretrain_pool.text=label_text), not their reports
LABEL_TEXT_MARK = " ‡labels"


def auroc_estimate(row) -> float:
    """The AUROC a cell shows: pooled over the cell's units, the estimate its bootstrap interval belongs to
    (= the mean for one unit); the mean over units where no pooled value exists."""
    pooled = float(row.get("auroc_pooled", np.nan))
    return pooled if np.isfinite(pooled) else float(row.get("auroc_mean", np.nan))


def is_continuous(row) -> bool:
    """A leaderboard row read by MAE (a continuous target; lower is better), not by AUROC."""
    return row.get("metric") == "MAE"


def board_estimate(row) -> float:
    """The estimate a leaderboard row is read by: a continuous target's MAE, else ``auroc_estimate``."""
    return float(row.get("mae", np.nan)) if is_continuous(row) else auroc_estimate(row)


def degenerate(row) -> str:
    """Why a cell is not scored ("" when it is): its outputs were degenerate (bench/suites/metrics.py)."""
    value = row.get("degenerate", "")
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else str(value)


def row_marks(row) -> str:
    """The warnings a cell carries after its number: contamination and label-text pretraining."""
    return ((CONTAMINATED_MARK if "yes" in str(row.get("contaminated", "")) else "")
            + (LABEL_TEXT_MARK if "labels" in str(row.get("pretrain_text", "")) else ""))


class EmptyStore(LookupError):
    """No results for the table that was asked for."""


def _paper() -> pd.DataFrame:
    if not PAPER_TABLE.is_file():
        return pd.DataFrame(columns=["suite", "method", "dataset", "task", "protocol", "fraction", "metric", "value"])
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


def row_name(row) -> str:
    """What a row is, in its name: ``merit@cpu_small`` for a preset bench pretrained, ``ecgfounder@cpu_small (untrained)``
    for an architecture's initial weights, ``random (control)`` for a control; a released checkpoint keeps the method's
    name (its file is in the provenance); a row others submitted (`bench leaderboard add`) says so."""
    name = _row_name(row)
    return f"{name} (submitted)" if str(row.get("submitted", "")) == "yes" else name


def _row_name(row) -> str:
    from bench.encoders.cards import card_kind

    from bench.encoders.cards import load_card

    method, preset = str(row["method"]), str(row.get("preset", "") or "").split(",")[0]
    if not load_card(method).get("presets"):  # a plugin without presets: the configured preset name means nothing to it
        preset = ""
    checkpoints = str(row.get("checkpoint", "") or "").split(",")
    if card_kind(method) == "control":
        return f"{method} (control)"
    if checkpoints == ["none"]:  # a suite's control without an encoder (the reports' own ceiling)
        return f"{method} (control: no ECG)"
    if "untrained" in checkpoints:
        return f"{method}@{preset} (untrained)" if preset else f"{method} (untrained)"
    if preset and checkpoints[0].startswith("cache:"):
        return f"{method}@{preset}"
    return method


def budget_words(budget: str) -> str:
    """A pretraining budget with the samples it showed each encoder set against the MERIT paper's (its model card's
    ``paper_budget``): computed from the budget tag, never typed."""
    import re

    from bench.encoders.cards import load_card

    found = re.match(r"(\d+) epochs x (\d+) records", budget or "")
    paper = load_card("merit").get("paper_budget") or {}
    if not found or not paper:
        return budget
    seen, theirs = int(found[1]) * int(found[2]), int(paper["epochs"]) * int(paper["records"])
    return (f"{budget}: {seen:,} samples seen per encoder, {theirs / seen:,.0f}x fewer than the MERIT paper's "
            f"{paper['epochs']} x {paper['records']:,} = {theirs:,}")


LABEL_MAP_WORDS = {"paper": "the paper's Table 5 (STE → STTC)", "ste_as_mi": "ste_as_mi (STE → MI)"}


def transfer_words(part: pd.DataFrame) -> str:
    """Which datasets a transfer table's part went between, synthetic demo data named as such."""
    if "target_dataset" not in part or part["target_dataset"].isna().all():
        return ""
    pairs = sorted({f"{s} → {t}" for s, t in zip(part["source_dataset"], part["target_dataset"])})
    demo = any("demo_" in p for p in pairs)
    maps = sorted(set(part["label_map"].fillna("paper"))) if "label_map" in part else ["paper"]
    words = [LABEL_MAP_WORDS.get(m, m) for m in maps]
    return (f"; datasets: {', '.join(pairs)}" + (" (demo_* = synthetic demo records, not a result)" if demo else " (real records)")
            + f"; label map: {', '.join(words)}")


def seed_words(cells: pd.DataFrame) -> str:
    """What a table's cells average over: "mean over S = 3 seeds (...)", or "S = 1 (seed 0)"."""
    seeds = sorted(set(cells["seed"].astype(str))) if "seed" in cells else ["0"]
    if seeds == ["all"]:
        s = sorted({int(float(v)) for v in pd.to_numeric(cells.get("n_seeds"), errors="coerce").dropna()})
        return f"mean over S = {'/'.join(map(str, s))} seeds (interval: two-level bootstrap, seeds then records)"
    return f"S = 1 (seed {', '.join(seeds)})"


CELL = ["suite", "method", "dataset", "task", "protocol", "mode", "val_fraction", "leads", "fraction"]
# a leaderboard row's name: its column (every key but the method) and the method, in the file's column and sort order
BOARD_KEYS = ["suite", "dataset", "task", "protocol", "mode", "val_fraction", "leads", "fraction", "method"]


def seed_view(aggregates: pd.DataFrame) -> pd.DataFrame:
    """One aggregate per table cell: the cell over all its seeds (``seed="all"``) where the store has it, else its
    smallest seed (what a table states as S = 1). Suites with their own seed folding (textgen) pass through."""
    if aggregates.empty or "seed" not in aggregates:
        return aggregates
    df = aggregates.copy()
    df["mode"] = df["mode"].fillna("linear") if "mode" in df else "linear"
    df["val_fraction"] = df["val_fraction"].fillna("full") if "val_fraction" in df else "full"
    df["leads"] = df["leads"].fillna("12").astype(str) if "leads" in df else "12"
    seed = df["seed"].astype(str)
    rank = np.where(seed == "all", -1, pd.to_numeric(seed, errors="coerce").fillna(0))
    df = df.assign(_rank=rank, _frac=df["fraction"].astype(float)).sort_values("_rank", kind="stable")
    first = df.groupby([c if c != "fraction" else "_frac" for c in CELL], sort=False)["_rank"].transform("min")
    return df[df["_rank"] == first].drop(columns=["_rank", "_frac"])


def not_applicable(df: pd.DataFrame) -> pd.Series:
    """Rows a suite wrote for a method it could not run (``applicable=no``: zero-shot without a text tower, a mode with
    nothing to train); tables name them instead of scoring them."""
    return df["applicable"].eq("no") if "applicable" in df else pd.Series(False, index=df.index)


def not_applicable_words(na: pd.DataFrame) -> str:
    """The title's words for those rows: the methods, and the reasons the run recorded."""
    if na.empty:
        return ""
    why = sorted(set(na["why_not"].dropna().astype(str))) if "why_not" in na else []
    return f"; not applicable: {', '.join(sorted(set(na['method'])))}" + (f" ({'; '.join(why)})" if why else "")


RANK_WORDS = "bold = highest estimate, underlined = second (a ranking of estimates, not a test: the paired tests say which gaps hold)"
BUDGET_FREE = {"", "none", "untrained", "released", "unrecorded"}  # rows that sit beside any pretraining budget


@functools.lru_cache(maxsize=1)
def synthetic_datasets() -> frozenset[str]:
    """The dataset configs whose records bench generates (a ``demo`` block): never real data."""
    from bench.config import dataset_configs

    return frozenset(name for name, cfg in dataset_configs().items() if cfg.data.get("demo"))


def is_synthetic(row) -> bool:
    """A row touches synthetic records: its dataset, a transfer direction's source or target, or its pretraining pool is a
    generated dataset (or the row says so itself)."""
    if str(row.get("synthetic", "") or "") == "yes":
        return True
    names = {str(row.get(k, "") or "") for k in ("dataset", "source_dataset", "target_dataset")}
    names |= {part.split(":")[0] for part in str(row.get("pool", "") or "").split(",")}
    return bool(names & synthetic_datasets())


SYNTHETIC_WORDS = "SYNTHETIC demo records (they show the pipeline, not a result)"


def comparable_parts(sub: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A suite's aggregates split so that no table column mixes records or budgets: one part per record partition
    (``split_hash``) and, within it, per pretraining budget of the rows bench pretrained; untrained, released and
    text-free rows (controls) join every part of their partition. Each part comes with the words that say what it is."""
    leads = sub.get("leads", pd.Series("12", index=sub.index)).fillna("12").astype(str)
    if set(leads) != {"12"}:  # one part per evaluation lead set, the full record first
        return [(words + (f"; lead set {ls} (the other leads zeroed)" if ls != "12" else ""), part)
                for ls in sorted(set(leads), key=lambda v: (v != "12", v)) for words, part in comparable_parts(sub[leads == ls].drop(columns="leads"))]
    versions = sub.get("task_version", pd.Series("", index=sub.index)).fillna("").astype(str)
    if "task" in sub and (versions.groupby(sub["task"]).nunique() > 1).any():  # two versions of one task never share a column
        return [(words + f"; task {v or 'version not recorded'}", part) for v in sorted(set(versions))
                for words, part in comparable_parts(sub[versions == v].drop(columns="task_version"))]
    split = sub.get("split_hash", pd.Series("", index=sub.index)).fillna("").astype(str)
    budget = sub.get("pretrain_budget", pd.Series("", index=sub.index)).fillna("").astype(str)
    parts = []
    for sh in sorted(set(split)):
        here = sub[split == sh]
        trained = sorted(set(budget[split == sh]) - BUDGET_FREE)
        free = here[budget[split == sh].isin(BUDGET_FREE)]
        for b in trained or [None]:
            part = pd.concat([here[budget[split == sh] == b], free]) if b else here
            words = ((f"; {SYNTHETIC_WORDS}" if any(is_synthetic(r) for r in part.to_dict("records")) else "")
                     + f"; records: split {sh[:8] or '?'}; pretraining budget: "
                     f"{budget_words(b) if b else 'none (untrained, released or control rows)'}")
            parts.append((words, part))
    return parts


def _suite_cells(sub: pd.DataFrame, suite: str, methods: Sequence[str] | None, fmt: str, with_paper: bool,
                 paper_names: dict[str, str] | None) -> pd.DataFrame:
    """One comparable part of a suite's aggregates as table cells: methods x (dataset/task x metric), the column names
    carrying the number of test records."""
    metrics = ["auroc"] if suite == "transfer" else list(METRICS)
    groups = sorted({(d, t) for d, t in zip(sub["dataset"], sub["task"])})
    order = [m for m in (list(methods or []) or ABLATION + sorted(set(sub["method"]) - set(ABLATION))) if m in set(sub["method"])]
    cells = pd.DataFrame(index=order, dtype=object)
    values = pd.DataFrame(index=order, dtype=float)
    names = {m: row_name(sub[sub["method"] == m].iloc[0]) for m in order}
    columns = {}
    for d, t in groups:
        g = sub[(sub["dataset"] == d) & (sub["task"] == t)].set_index("method")
        n_test = pd.to_numeric(g.get("n_test", pd.Series(dtype=float)), errors="coerce").max()
        scored = pd.to_numeric(g.get("challenge_mean", pd.Series(dtype=float)), errors="coerce").notna().any()
        for m in [m for m in metrics if m != "challenge" or scored]:  # the challenge score: CinC label spaces only
            col = columns[(d, t, m)] = f"{d}/{t} {METRICS[m]}" + (f" (n={n_test:.0f})" if m == "auroc" and np.isfinite(n_test) else "")
            for meth in order:
                if meth not in g.index:
                    cells.loc[meth, col] = "–"
                    continue
                row = g.loc[meth]
                if degenerate(row):
                    cells.loc[meth, col] = "degenerate"
                    continue
                v = auroc_estimate(row) if m == "auroc" else float(row.get(f"{m}_mean", np.nan))
                lo, hi = (row.get("auroc_ci_low"), row.get("auroc_ci_high")) if m == "auroc" else (None, None)
                text = _fmt(v, lo, hi)
                if m == "auroc" and np.isfinite(float(row.get("classes_total", np.nan))):
                    text += f" ({float(row['classes_scored']):.0f}/{float(row['classes_total']):.0f})"
                if str(row.get("low_support", "")) == "yes":
                    text += LOW_SUPPORT_MARK
                cells.loc[meth, col] = text + row_marks(row)
                values.loc[meth, col] = v
    cells = _mark(cells, values, fmt)
    if with_paper:
        paper = _paper()
        paper = paper[paper["suite"] == suite]
        cell_proto = sub["protocol"].iloc[0]
        cell_frac = float(sub["fraction"].astype(float).iloc[0])
        for meth in order:
            prow, drow, any_value, any_delta, paper_setting = {}, {}, False, False, ""
            for d, t in groups:
                for m in [m for m in metrics if m in PAPER_METRIC]:
                    col = columns[(d, t, m)]
                    paper_dataset = (paper_names or {}).get(d) or d  # e.g. ptbxl_1819 -> the paper's ptbxl
                    if suite == "transfer":  # families: compare only when the source is the real dataset
                        g = sub[(sub["dataset"] == d) & (sub["task"] == t) & (sub["method"] == meth)]
                        src = g["source_dataset"].iloc[0] if len(g) and "source_dataset" in g else None
                        paper_dataset = d if src and (paper_names or {}).get(src) else None
                    hit = paper[(paper["method"] == meth) & (paper["dataset"] == paper_dataset) & (paper["task"] == t)
                                & (paper["metric"] == PAPER_METRIC[m])]
                    if len(hit):
                        pv = float(hit["value"].iloc[0])
                        same = hit["protocol"].iloc[0] == cell_proto and float(hit["fraction"].iloc[0]) == cell_frac
                        prow[col], any_value = f"{pv:.1f}", True
                        paper_setting = f"{hit['protocol'].iloc[0]}, {100 * float(hit['fraction'].iloc[0]):g}% labels"
                        ours = values.loc[meth, col] if col in values.columns else np.nan
                        drow[col] = (f"{100 * ours - pv:+.1f}" if np.isfinite(ours) else "–") if same else ""
                        any_delta = any_delta or same
                    else:
                        prow[col] = drow[col] = ""
            if any_value:
                cells.loc[f"{meth} (paper: {paper_setting})"] = pd.Series(prow)
            if any_delta:
                cells.loc[f"{meth} Δ ours−paper"] = pd.Series(drow)
    return cells.rename(index=names)


def build_table(aggregates: pd.DataFrame, kind: str, *, protocol: str | None = None, fraction: float | None = None,
                methods: Sequence[str] | None = None, with_paper: bool = False, fmt: str = "md",
                paper_names: dict[str, str] | None = None) -> str:
    suites = KINDS[kind]
    df = seed_view(aggregates[aggregates["suite"].isin(suites)]) if len(aggregates) else aggregates
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
            sub = sub[sub.get("mode", pd.Series("linear", index=sub.index)).fillna("linear") == "linear"]  # `bench table modes` has the rest
            if sub.empty:
                continue
            proto = protocol or ("fixed" if (sub["protocol"] == "fixed").any() else sub["protocol"].iloc[0])
            frac = fraction if fraction is not None else sub["fraction"].astype(float).max()
            sub = sub[(sub["protocol"] == proto) & (sub["fraction"].astype(float) == float(frac))]
            title = (f"{suite} probing — protocol {proto}, {100 * float(frac):g}% labels; AUC [95% CI] (classes scored/total)"
                     + (" pooled out-of-fold" if proto == "cv10" else "") + "; F1 / BAcc at per-class thresholds chosen on "
                     "validation" + (", means over the 10 folds" if proto == "cv10" else "") + f"; {LOW_SUPPORT_MARK} = a scored "
                     "class had < 5 training positives")
        else:
            title = {"zero_shot": "zero-shot — AUC [95% CI] (classes scored/total); F1 / BAcc of top-1 decisions",
                     "transfer": "cross-domain transfer — macro AUROC [95% CI] (classes scored/total); target records "
                                 "without a label in the aligned space are left out"}[suite]
        if "pretrain_text" in sub and sub["pretrain_text"].astype(str).str.contains("labels").any():
            title += f";{LABEL_TEXT_MARK} = pretrained on the records' label descriptions, not their reports"
        if kind == "ablation":
            sub = sub[sub["method"].isin(ABLATION)]
        if methods:
            sub = sub[sub["method"].isin(methods)]
        na = not_applicable(sub)
        title += not_applicable_words(sub[na])
        sub = sub[~na]
        if sub.empty:
            continue
        for setting, part in comparable_parts(sub):
            blocks.append(render_block(_suite_cells(part, suite, methods, fmt, with_paper, paper_names),
                                       f"{title}; {seed_words(part)}{setting}{transfer_words(part)}; {RANK_WORDS}", fmt))
    if not blocks:
        raise EmptyStore(kind)
    return "\n\n".join(blocks) + "\n"


def suite_table(aggregates: pd.DataFrame, suite: str, fmt: str = "md", methods: Sequence[str] | None = None) -> str:
    """`bench table <suite>` for a suite outside the paper's layouts: the suite plugin renders its own."""
    from bench.suites.base import get_suite

    df = aggregates[(aggregates["suite"] == suite) & ~not_applicable(aggregates)] if len(aggregates) else aggregates
    if df.empty:
        raise EmptyStore(suite)
    df = df.sort_values(["method", "dataset", "task"], kind="stable")  # rows in one order, whatever order the store lists them in
    return get_suite(suite).table(df, fmt, methods) + "\n"


def _textgen_table(sub: pd.DataFrame, methods: Sequence[str] | None, fmt: str) -> str:
    """Table 3 layout: methods x BLEU / METEOR / ROUGE / BERTScore, mean over seeds [95% interval resampling
    test items and seeds]."""
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
                row = g.loc[m]
                v, lo, hi = (float(row.get(f"{key}_{part}", np.nan)) for part in ("mean", "ci_low", "ci_high"))
                cells.loc[m, label] = f"{v:.1f} [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else f"{v:.1f}"
                values.loc[m, label] = v
        cells = _mark(cells, values, fmt)
        n = int(g["n_seeds"].max()) if "n_seeds" in g else 0
        n_test = int(g["n_test"].max()) if "n_test" in g else 0
        seeds, resampled = (f"mean over S = {n} seeds", " and the seeds") if n > 1 else ("S = 1 seed", "")
        title = (f"text generation on {dataset} (LLM {g['llm'].iloc[0] if 'llm' in g else '?'}; {seeds} "
                 f"[95% percentile interval resampling the {n_test} test items{resampled}])")
        blocks.append(render_block(cells, title, fmt))
    return "\n\n".join(blocks)


#: a continuous target's columns (the regression suite's cells): MAE in the target's unit, R², Pearson r, with intervals
CONTINUOUS_COLUMNS = ["mae", "mae_ci_low", "mae_ci_high", "r2", "r2_ci_low", "r2_ci_high", "pearson_r", "rmse"]


def board_metric(suite: str) -> str:
    """What a leaderboard row of ``suite`` is read by (``Suite.board_metric``): "macro AUROC", or "MAE" for a suite of
    continuous targets."""
    from bench.suites.base import SUITES

    return SUITES.get(suite).board_metric if suite in SUITES.names() else "macro AUROC"


def leaderboard(aggregates: pd.DataFrame) -> pd.DataFrame:
    """One row per method x dataset x task x protocol x mode x fraction, with provenance: the cell over all its seeds where
    there is one (``seed`` = all, ``n_seeds`` = S), else its smallest seed. ``metric`` says what a row is read by: its
    AUROC columns, or for a continuous target its MAE columns (in ``unit_of_target``; its AUROC columns empty)."""
    if aggregates.empty:
        return aggregates
    df = seed_view(aggregates[~not_applicable(aggregates)])
    df["fraction"] = df["fraction"].astype(float)
    num = ["auroc_mean", "auroc_std", "auroc_ci_low", "auroc_ci_high", "auroc_pooled", "auprc_mean", "f1_mean", "bacc_mean", "challenge_mean",
           "hamming_acc_mean", "classes_scored", "classes_total", "min_train_positives", "n_test", "n_units", "n_seeds",
           "auroc_seed_std", *CONTINUOUS_COLUMNS]
    for c in num:
        if c not in df:
            df[c] = np.nan
    for c in PROVENANCE:
        if c not in df:
            df[c] = ""
    rows = []
    for key, g in df.groupby(BOARD_KEYS, sort=True):
        row = dict(zip(BOARD_KEYS, key))
        for c in num:
            row[c] = round(float(g[c].astype(float).mean()), 6)
        for c in PROVENANCE:
            row[c] = ";".join(sorted({str(v) for v in g[c]}))
        row["auroc"] = round(auroc_estimate(row), 6)  # the estimate auroc_ci_low/high belong to (cv10: pooled out of fold)
        row["metric"] = board_metric(row["suite"])
        row["unit_of_target"] = ";".join(sorted({str(v) for v in g.get("unit_of_target", pd.Series(dtype=str)).dropna() if str(v)}))
        row["name"] = row_name(g.iloc[0])
        row["synthetic"] = "yes" if any(is_synthetic(r) for r in g.to_dict("records")) else "no"
        row["degenerate"] = " | ".join(sorted({degenerate(r) for r in g.to_dict("records")} - {""}))
        row["submitted"] = "yes" if any(str(r.get("submitted", "")) == "yes" for r in g.to_dict("records")) else "no"
        for tag in ("submitter", "submission_command", "submission"):  # who submitted the row, its command, its record
            row[tag] = ";".join(sorted({str(v) for v in g.get(tag, pd.Series(dtype=str)).dropna() if str(v)}))
        rows.append(row)
    out = pd.DataFrame(rows)
    first = [*BOARD_KEYS, "auroc", "auroc_ci_low", "auroc_ci_high"]
    return out[first + [c for c in out.columns if c not in first]].sort_values(BOARD_KEYS).reset_index(drop=True)


def compact_table(aggregates: pd.DataFrame, methods: Sequence[str]) -> str:
    """`bench demo`'s table: methods x tasks, macro AUROC (%) [95% interval] of the largest label fraction, narrow
    enough for a terminal; one block per comparable part (records, budget), each saying which."""
    df = seed_view(aggregates[~not_applicable(aggregates)]) if len(aggregates) else aggregates
    if df.empty:
        raise EmptyStore("linear")
    df = df[df["fraction"].astype(float) == df["fraction"].astype(float).max()]
    blocks = []
    for setting, part in comparable_parts(df):
        tasks = sorted(set(part["task"]))
        cells = pd.DataFrame(index=[m for m in methods if m in set(part["method"])], columns=tasks, dtype=object)
        names = {}
        for row in part.itertuples():
            if row.method in cells.index:
                r = row._asdict()
                names[row.method] = row_name(r)
                cells.loc[row.method, row.task] = _fmt(auroc_estimate(r), r.get("auroc_ci_low"), r.get("auroc_ci_high")) + row_marks(r)
        cells = cells.rename(index=names)
        n = pd.to_numeric(part.get("n_test"), errors="coerce").max()
        blocks.append(render_block(cells, f"macro AUROC (%) [95% bootstrap interval over test records], linear probe, "
                                          f"{n:.0f} test records{setting}", "md"))
    return "\n\n".join(blocks)
