"""Words that follow the numbers: claims worded by their tests, typed comparatives refused, degenerate outputs never
scored, rank-correlation intervals that contain their estimate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf


def _test(diff: float, lo: float, hi: float, p_holm: float, seed: str = "all") -> dict:
    return {"diff": diff, "ci_low": lo, "ci_high": hi, "p_holm": p_holm, "p_value": p_holm, "p_floor": 2 / 10001,
            "n_seeds": 3 if seed == "all" else 1, "seed": seed}


def test_a_claim_is_worded_by_its_test():
    from bench.publish.claims import Cell, claim_words

    a, b = Cell.parse("linear/ptbxl_1819/rhythm/fixed/1/heartlang"), Cell.parse("linear/ptbxl_1819/rhythm/fixed/1/stmem")
    untold = claim_words(a, b, _test(0.058, -0.031, 0.144, 0.41))
    assert untold.startswith("`heartlang` and `stmem` are not told apart (Δ `heartlang` − `stmem` +5.8 points")
    assert "[95% CI -3.1, +14.4]" in untold and "Holm p 0.410" in untold and "S = 3 seeds" in untold
    assert " leads " not in untold
    held = claim_words(a, b, _test(-0.06, -0.09, -0.02, 0.004, seed="0"))  # b is the leader: named first, Δ turned
    assert held.startswith("`stmem` leads `heartlang` (Δ `stmem` − `heartlang` +6.0 points [95% CI +2.0, +9.0]")
    assert "seed 0 of each" in held
    modes = Cell.parse("linear/ptbxl_1819/super/fixed/1/merit:attentive")
    assert modes.mode == "attentive" and modes.label == "`merit` (attentive)"
    ked, stats = Cell.parse("regression/ptbxl_1819/age/fixed/1/ecgfm_ked"), Cell.parse("regression/ptbxl_1819/age/fixed/1/signal_stats")
    mae = {"metric": "MAE", "unit": "years"}  # a continuous target: the smaller error leads, Δ in the target's unit
    assert claim_words(ked, stats, _test(-2.5, -3.75, -1.25, 0.01, seed="0") | mae).startswith(
        "`ecgfm_ked` leads `signal_stats` (Δ MAE `ecgfm_ked` − `signal_stats` -2.50 years [95% CI -3.75, -1.25]")
    assert claim_words(ked, stats, _test(2.5, 1.25, 3.75, 0.01, seed="0") | mae).startswith(
        "`signal_stats` leads `ecgfm_ked` (Δ MAE `signal_stats` − `ecgfm_ked` -2.50 years [95% CI -3.75, -1.25]")
    assert claim_words(ked, stats, _test(-0.24, -1.1, 0.6, 0.7) | mae).startswith(
        "`ecgfm_ked` and `signal_stats` are not told apart (Δ MAE `ecgfm_ked` − `signal_stats` -0.24 years [95% CI -1.10, +0.60]")


def test_cells_on_two_evaluation_sets_are_not_a_claim():
    from bench.publish.claims import Cell, ClaimError, claim_job

    with pytest.raises(ClaimError, match="same test records"):
        claim_job(Cell.parse("linear/ptbxl_1819/super/fixed/1/merit"), Cell.parse("linear/ptbxl_1819/sub/fixed/1/merit"), 100, 0)
    job = claim_job(Cell.parse("report_text/ptbxl_1819/super/fixed/1/report_text"),
                    Cell.parse("linear/ptbxl_1819/super/fixed/1/ecgfm_ked"), 100, 0)
    assert (job["suite"], job["suite_b"], job["mode_a"], job["mode_b"]) == ("report_text", "linear", "linear", "linear")


def test_typed_comparatives_are_found_and_a_template_with_one_is_refused(tmp_path):
    from bench.publish.claims import typed_comparatives
    from bench.publish.readme import ReadmeError, render_readme

    assert typed_comparatives("HeartLang leads ST-MEM; `x` leads `y`; sits above seven; the best one; not told apart") == [
        "line 1: 'leads'", "line 1: 'leads'", "line 1: 'above'", "line 1: 'best'", "line 1: 'told apart'"]
    # ECG leads are not a comparison, and what a claim renders is not typed
    assert typed_comparatives("12 leads I, II and V1; the limb leads of a record; per-lead statistics") == []
    assert typed_comparatives("{{ claim('a', 'b') }} {# leads above #}") == []
    template = tmp_path / "t.md"
    template.write_text("MERIT is not told apart from\nrandom: {{ cell('x') }}\n")
    with pytest.raises(ReadmeError, match=r"comparative words typed in the prose \(line 1: 'told apart'\)"):
        render_readme(pd.DataFrame(), [], tmp_path, template)


def test_a_degenerate_cell_carries_no_metric_and_says_why(tmp_path):
    """The shared aggregation of every classification suite: one flat class in one seed and the cell has no AUROC."""
    from bench.suites.base import Group, Unit, UnitResult
    from bench.suites.classification import classification_aggregate
    from bench.suites.metrics import degenerate_reason

    rng = np.random.default_rng(0)
    ids = np.array([f"r{i:03d}" for i in range(120)])
    y = (rng.uniform(size=(120, 2)) < 0.4).astype(int)
    y[:2] = [[1, 1], [0, 0]]

    def unit(seed: int, flat: bool) -> tuple[Unit, UnitResult]:
        s = rng.uniform(size=(120, 2))
        if flat:
            s[:, 1] = np.where(rng.uniform(size=120) < 0.5, 0.0, 1.0)  # a saturated head: two distinct scores
        arrays = {"record_ids": ids, "y_true": y, "y_score": s, "y_pred": (s > 0.5).astype(int), "classes": np.array(["A", "B"])}
        return Unit({"seed": seed}, {}), UnitResult({"auroc": 0.5}, {}, arrays)

    ctx = type("Ctx", (), {"base": OmegaConf.create({"run": {"n_boot": 50, "bootstrap_seed": 0}, "paths": {"cache": str(tmp_path)}})})
    group = Group({"suite": "transfer", "method": "m", "dataset": "d", "task": "t", "protocol": "fixed", "fraction": 1.0,
                   "seed": "all"})
    fine = classification_aggregate(ctx, group, [unit(0, False), unit(1, False)], ["A", "B"])
    assert np.isfinite(fine.metrics["auroc_pooled"]) and "degenerate" not in fine.tags
    flat = classification_aggregate(ctx, group, [unit(0, False), unit(1, True)], ["A", "B"])
    assert np.isnan(flat.metrics["auroc_pooled"]) and np.isnan(flat.metrics["auroc_ci_low"]) and np.isnan(flat.metrics["f1_mean"])
    assert flat.tags["degenerate"].startswith("seed 1: B: 2 distinct score(s) for ")
    assert degenerate_reason(y, np.full((120, 2), 0.3), ["A", "B"]).count("1 distinct score(s)") == 2


def test_tables_and_readme_show_a_degenerate_cell_as_such():
    from bench.publish.tables import build_table, leaderboard

    rows = [{"suite": "transfer", "method": m, "dataset": "ptbxl_super", "task": "to_cpsc2018", "protocol": "fixed",
             "fraction": 1.0, "seed": "0", "n_test": 99.0, "auroc_pooled": v, "auroc_ci_low": v - 0.05, "auroc_ci_high": v + 0.05,
             "classes_scored": 3.0, "classes_total": 3.0, "degenerate": why, "source_dataset": "ptbxl_1819"}
            for m, v, why in (("merit", 0.7, ""), ("signal_stats", np.nan, "seed 0: CD: 1 distinct score(s) for 47 positives"))]
    aggregates = pd.DataFrame(rows)
    table = build_table(aggregates, "transfer")
    line = next(x for x in table.splitlines() if x.startswith("| signal_stats"))
    assert "degenerate" in line and "nan" not in line
    board = leaderboard(aggregates)
    assert board.set_index("method").at["signal_stats", "degenerate"].startswith("seed 0: CD")
    assert board.set_index("method").at["merit", "degenerate"] == ""


def test_the_rank_correlation_interval_contains_its_estimate():
    """Over 7 methods ρ takes few values: 27 % of the resamples equal the estimate, which is the lowest of them."""
    from bench.publish.modes import bias_corrected_interval
    from bench.suites.metrics import percentile_interval

    rng = np.random.default_rng(0)
    samples = np.concatenate([np.full(270, 0.71), rng.choice([0.75, 0.79, 0.82, 0.86, 0.89, 0.93], size=730)])
    lo, hi = percentile_interval(samples)
    assert lo == pytest.approx(0.71)  # the old interval started at its own estimate
    lo, hi = bias_corrected_interval(samples, 0.71)
    assert lo < 0.71 <= hi or lo <= 0.71 < hi
    assert all(np.isnan(bias_corrected_interval(np.full(1000, 0.9), 0.5)))  # no resample near it: no interval
    symmetric = rng.normal(0.5, 0.1, size=4000)
    lo, hi = bias_corrected_interval(symmetric, 0.5)
    assert lo == pytest.approx(0.5 - 0.196, abs=0.02) and hi == pytest.approx(0.5 + 0.196, abs=0.02)
