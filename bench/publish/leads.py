"""`bench table leads`: how much each encoder loses on a reduced lead set (configs/protocols/lead_sets.yaml). Methods x
lead sets per task and evaluation mode with intervals, and each method's paired difference to its own 12-lead cell on the
same test records and resamples (Holm over the table's comparisons)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.publish.compare import compare_methods, with_holm
from bench.publish.tables import _fmt, auroc_estimate, degenerate, not_applicable, seed_view, seed_words
from bench.suites.base import render_block
from bench.suites.metrics import format_p

NATIVE = "(a native lead subset)"  # what InputContract.describe says of a run that encoded only a subset's leads


def _order(lead_sets) -> list[str]:
    """12 first, then the named sets from the largest, then single leads in the standard order."""
    from bench.data.leads import STANDARD_LEADS

    def rank(name: str) -> tuple:
        return (0, -int(name)) if name.isdigit() else (1, STANDARD_LEADS.index(name) if name in STANDARD_LEADS else 99)

    return sorted(set(lead_sets), key=rank)


def _like_with_like(aggregates: pd.DataFrame) -> pd.DataFrame:
    """``seed_view``'s cells, except that a task and mode whose reduced sets were run at fewer seeds than its 12-lead
    cells shows every set at seed 0: a row then compares cells of one seed, as its paired differences do."""
    df = seed_view(aggregates)
    if df.empty:
        return df
    keep = []
    for (task, mode), g in df.groupby(["task", "mode"], sort=False):
        if (g["seed"].astype(str) == "all").all() or (g["seed"].astype(str) != "all").all():
            keep.append(g)
            continue
        seed0 = seed_view(aggregates[(aggregates["task"] == task) & (aggregates["seed"].astype(str) == "0")])
        keep.append(seed0[seed0["mode"] == mode])
    return pd.concat(keep, ignore_index=True)


def leads_table(store, aggregates: pd.DataFrame, boot_cache: Path, dataset: str, *, protocol: str = "fixed",
                fraction: float = 1.0, n_boot: int = 1000, boot_seed: int = 0, fmt: str = "md") -> str:
    """Per task and mode: methods x lead sets (macro AUROC [95% CI]), then Δ to 12 leads per method and set."""
    if aggregates.empty:
        raise LookupError(f"no linear results for {dataset}")
    df = _like_with_like(aggregates[(aggregates["dataset"] == dataset) & (aggregates["protocol"] == protocol)
                                    & (aggregates["fraction"].astype(float) == float(fraction)) & ~not_applicable(aggregates)])
    if df.empty or set(df["leads"]) == {"12"}:
        raise LookupError(f"no reduced lead set for {dataset} ({protocol}, {100 * fraction:g}% labels): run e.g. "
                          f"bench run --suite linear --leads 12,6,2,I first")
    blocks = []
    for (task, mode), g in df.groupby(["task", "mode"], sort=True):
        sets = _order(g["leads"])
        if sets == ["12"]:
            continue
        methods = sorted(set(g["method"]))
        cells = pd.DataFrame(index=methods, columns=sets, dtype=object)
        for r in g.to_dict("records"):
            why = degenerate(r)
            cells.loc[r["method"], r["leads"]] = "degenerate" if why else _fmt(auroc_estimate(r), r.get("auroc_ci_low"),
                                                                                  r.get("auroc_ci_high"))
        n = int(pd.to_numeric(g["n_test"], errors="coerce").max())
        native = {r["method"] for r in g.to_dict("records") if NATIVE in str(r.get("input", ""))}
        cells.index = [f"{m} (native)" if m in native else m for m in methods]
        blocks.append(render_block(cells.fillna("–"), f"{dataset}/{task}: macro AUROC (%) [95% CI] by evaluation lead set "
                                                      f"({mode}, {protocol}, {100 * fraction:g}% labels, {seed_words(g)}, "
                                                      f"n={n}; the leads outside a set are zeros, or for a method marked "
                                                      f"native not encoded at all; 12 = all)", fmt))
        tests = []
        for method in methods:
            have = {r["leads"] for r in g[g["method"] == method].to_dict("records") if not degenerate(r)}
            for ls in [s for s in sets if s != "12" and s in have and "12" in have]:
                t = compare_methods(store, boot_cache, method, method, dataset=dataset, task=task, protocol=protocol,
                                    fraction=fraction, n_boot=n_boot, boot_seed=boot_seed, mode_a=mode, leads_a=ls,
                                    leads_b="12")
                tests.append({**t, "pair": f"{method}: {ls} − 12"})
        if tests:
            rows = [[t["pair"], f"{100 * t['diff']:+.2f}", f"[{100 * t['ci_low']:+.2f}, {100 * t['ci_high']:+.2f}]",
                     format_p(t["p_holm"], t["p_floor"])] for t in with_holm(tests)]
            blocks.append(render_block(pd.DataFrame(rows, columns=["difference", "Δ macro AUROC (points)", "95% CI", "Holm p"])
                                       .set_index("difference"),
                                       f"{dataset}/{task}: each method on a lead set against itself on all 12 ({mode}; "
                                       f"{n_boot} shared resamples of the test records{', seeds drawn too' if str(tests[0]['seed']) == 'all' else ''}; "
                                       f"Holm over the {len(rows)} comparisons)", fmt))
    if not blocks:
        raise LookupError(f"no reduced lead set for {dataset}")
    return "\n\n".join(blocks) + "\n"
