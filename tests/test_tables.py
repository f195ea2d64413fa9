"""Table rendering from a small fixture store with known aggregates."""

from __future__ import annotations

import pytest

from bench.run.store import ResultStore
from bench.publish.tables import EmptyStore, build_table, leaderboard


@pytest.fixture()
def store(tmp_path):
    s = ResultStore(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts")
    for method, auc in [("merit", 0.91), ("merit_cma", 0.85), ("merit_mse", 0.80), ("random", 0.60)]:
        tags = {"suite": "linear", "method": method, "dataset": "ptbxl_1819", "task": "super", "protocol": "fixed",
                "fraction": 1.0, "seed": 0, "applicable": "yes", "checkpoint_hash": f"h-{method}", "split_hash": "s1",
                "code_version": "v"}
        s.replace_aggregate("linear", f"{method}|super", tags, {"auroc_mean": auc, "auroc_ci_low": auc - 0.02,
                                                                 "auroc_ci_high": auc + 0.02, "f1_mean": auc - 0.2,
                                                                 "bacc_mean": auc - 0.1, "n_test": 194,
                                                                 "classes_scored": 4, "classes_total": 5})
    return s


def test_best_bold_second_underlined_and_intervals(store):
    text = build_table(store.aggregates(["linear"]), "linear")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "**91.0 [89.0, 93.0] (4/5)**" in rows["merit"]  # classes scored / classes that exist
    assert "<u>85.0 [83.0, 87.0] (4/5)</u>" in rows["merit_cma"]
    assert "**" not in rows["random (control)"] and "<u>" not in rows["random (control)"]


def test_with_paper_shows_difference_only_for_the_papers_protocol_and_fraction(store):
    names = {"ptbxl_1819": "ptbxl"}
    fixed = build_table(store.aggregates(["linear"]), "linear", with_paper=True, methods=["merit", "merit_cma"], paper_names=names)
    paper_row = next(line for line in fixed.splitlines() if line.startswith("| merit (paper: cv10, 100% labels)"))
    assert "93.3" in paper_row  # the paper's PTB-XL super AUC (93.26), labelled with its protocol
    assert "Δ" not in fixed  # ours is the fixed split: no difference against the paper's 10-fold numbers
    for fraction, auc in ((1.0, 0.91), (0.1, 0.88)):
        tags = {"suite": "linear", "method": "merit", "dataset": "ptbxl_1819", "task": "super", "protocol": "cv10",
                "fraction": fraction, "seed": 0, "applicable": "yes"}
        store.replace_aggregate("linear", f"merit|super|cv10|{fraction}", tags, {"auroc_pooled": auc, "auroc_mean": auc})
    cv10 = build_table(store.aggregates(["linear"]), "linear", with_paper=True, protocol="cv10", paper_names=names)
    delta = next(line for line in cv10.splitlines() if line.startswith("| merit Δ"))
    assert "-2.3" in delta  # 91.0 - 93.26
    tenth = build_table(store.aggregates(["linear"]), "linear", with_paper=True, protocol="cv10", fraction=0.1, paper_names=names)
    assert "Δ" not in tenth and "93.3" in tenth


def test_ablation_keeps_only_merit_variants_and_csv_is_plain(store):
    text = build_table(store.aggregates(["linear"]), "ablation", fmt="csv")
    assert "random" not in text and "**" not in text and "merit_mse" in text


def test_replacing_an_aggregate_keeps_one_row(store):
    tags = {"suite": "linear", "method": "merit", "dataset": "ptbxl_1819", "task": "super", "protocol": "fixed",
            "fraction": 1.0, "seed": 0, "applicable": "yes"}
    store.replace_aggregate("linear", "merit|super", tags, {"auroc_mean": 0.5})
    board = leaderboard(store.aggregates(["linear"]))
    assert len(board) == 4 and board.loc[board["method"] == "merit", "auroc_mean"].item() == 0.5


def test_empty_store_raises(tmp_path):
    s = ResultStore(f"sqlite:///{tmp_path}/m.db", tmp_path / "a")
    with pytest.raises(EmptyStore):
        build_table(s.aggregates(["zero_shot"]), "zero_shot")


def test_forest_and_efficiency_plots_render(store, tmp_path):
    from bench.publish import plots

    tags = {"suite": "linear", "method": "merit", "dataset": "ptbxl_1819", "task": "super", "protocol": "fixed",
            "fraction": 0.1, "seed": 0, "applicable": "yes"}
    store.replace_aggregate("linear", "merit|super|0.1", tags, {"auroc_mean": 0.8, "auroc_ci_low": 0.75, "auroc_ci_high": 0.85})
    agg = store.aggregates(["linear"])
    forest = plots.forest(agg, "ptbxl_1819", "fixed", 1.0, tmp_path)
    curve = plots.label_efficiency(agg, "ptbxl_1819", "fixed", tmp_path)
    for path in (forest, curve):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(LookupError):
        plots.forest(agg, "ptbxl_1819", "cv10", 1.0, tmp_path)


def test_figures_draw_the_rows_the_tables_show_one_per_method(store, tmp_path):
    """A store with per-seed rows, the over-seeds row and other modes of the same cell (as the publication's): the
    figures take the seed view of the linear mode, one row per method and task, and do not fail."""
    from bench.publish import plots

    base = {"suite": "linear", "dataset": "ptbxl_1819", "task": "super", "protocol": "fixed", "fraction": 1.0,
            "applicable": "yes", "split_hash": "s1", "checkpoint_hash": "h-merit"}
    for seed, mode, auc in (("1", "linear", 0.70), ("all", "linear", 0.77), ("0", "attentive", 0.95), ("1", "finetune", 0.50)):
        tags = {**base, "method": "merit", "seed": seed, "mode": mode, "n_seeds": 3 if seed == "all" else 1}
        store.replace_aggregate("linear", f"merit|super|{seed}|{mode}", tags,
                                {"auroc_mean": auc, "auroc_ci_low": auc - 0.02, "auroc_ci_high": auc + 0.02})
    cells, words = plots.linear_cells(store.aggregates(["linear"]), "ptbxl_1819", "fixed")
    assert cells.groupby(["method", "task", "fraction"]).size().max() == 1
    merit = cells[cells["method"] == "merit"].iloc[0]
    assert merit["seed"] == "all" and merit["mode"] == "linear" and merit["auroc_mean"] == pytest.approx(0.77)
    assert "split s1" in words
    path = plots.forest(store.aggregates(["linear"]), "ptbxl_1819", "fixed", 1.0, tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_regression_figure_draws_each_target_once_per_method_over_its_seeds(store, tmp_path):
    """The regression forest takes the table's cells: the over-seeds row where there is one, not the per-seed rows, no
    method the suite could not run, one dataset; a store without that dataset's cells says so."""
    from bench.publish import plots

    base = {"suite": "regression", "dataset": "ptbxl_1819", "protocol": "fixed", "fraction": 1.0, "mode": "linear"}
    rows = [("merit", "age", "0", 14.0, "years", "yes"), ("merit", "age", "all", 13.0, "years", "yes"),
            ("merit", "height", "0", 8.0, "cm", "yes"), ("random", "age", "0", 15.0, "years", "yes"),
            ("broken", "age", "0", 1.0, "years", "no")]
    for method, task, seed, mae, unit, applicable in rows:
        store.replace_aggregate("regression", f"{method}|{task}|{seed}",
                                {**base, "method": method, "task": task, "seed": seed, "unit_of_target": unit,
                                 "applicable": applicable, "n_seeds": 3 if seed == "all" else 1},
                                {"mae": mae, "mae_ci_low": mae - 1, "mae_ci_high": mae + 1, "r2": 0.3, "r2_ci_low": 0.1,
                                 "r2_ci_high": 0.5, "n_test": 194})
    agg = store.aggregates(["regression"])
    cells = plots.regression_cells(agg, "ptbxl_1819")
    assert sorted(zip(cells["method"], cells["task"], cells["seed"])) == [("merit", "age", "all"), ("merit", "height", "0"),
                                                                          ("random", "age", "0")]
    path = plots.regression_forest(agg, "ptbxl_1819", tmp_path)
    assert path.name == "regression_ptbxl_1819_linear.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = [p.name for p in plots.aggregate_figures(store, "ptbxl_1819", tmp_path / "all")]  # the fixture's linear cells too
    assert drawn == ["label_efficiency_ptbxl_1819_fixed.png", "forest_ptbxl_1819_fixed_1.png", path.name]
    with pytest.raises(LookupError, match="demo_ptbxl"):
        plots.regression_forest(agg, "demo_ptbxl", tmp_path)


def test_cv10_cell_shows_the_pooled_auroc_its_interval_belongs_to(tmp_path):
    s = ResultStore(f"sqlite:///{tmp_path}/m.db", tmp_path / "a")
    tags = {"suite": "linear", "method": "merit", "dataset": "ptbxl_1819", "task": "super", "protocol": "cv10",
            "fraction": 1.0, "seed": 0, "applicable": "yes"}
    s.replace_aggregate("linear", "merit|super|cv10", tags, {"auroc_mean": 0.90, "auroc_pooled": 0.80, "auroc_ci_low": 0.75,
                                                             "auroc_ci_high": 0.85, "f1_mean": 0.5, "bacc_mean": 0.7})
    text = build_table(s.aggregates(["linear"]), "linear", protocol="cv10")
    assert "80.0 [75.0, 85.0]" in text and "90.0" not in text and "pooled out-of-fold" in text


def test_low_support_cells_are_marked(tmp_path):
    s = ResultStore(f"sqlite:///{tmp_path}/m.db", tmp_path / "a")
    for method, low in (("merit", "yes"), ("random", "no")):
        tags = {"suite": "linear", "method": method, "dataset": "d", "task": "form", "protocol": "fixed", "fraction": 0.01, "seed": 0,
                "applicable": "yes", "low_support": low}
        s.replace_aggregate("linear", f"{method}|form", tags, {"auroc_pooled": 0.7, "auroc_mean": 0.7, "min_train_positives": 1})
    rows = {line.split("|")[1].strip(): line for line in build_table(s.aggregates(["linear"]), "linear").splitlines()
            if line.startswith("| ")}
    assert "†" in rows["merit"] and "†" not in rows["random (control)"]


@pytest.mark.parametrize("n_seeds, words", [(1, "S = 1 seed [95% percentile interval resampling the 32 test items]"),
                                             (3, "mean over S = 3 seeds [95% percentile interval resampling the 32 test items and the seeds]")])
def test_textgen_title_says_what_its_interval_resamples(n_seeds, words):
    import pandas as pd

    row = {"suite": "textgen", "method": "merit", "dataset": "ptbxl_1819", "task": "report", "protocol": "fixed", "fraction": 1.0,
           "llm": "smollm2", "n_seeds": n_seeds, "n_test": 32,
           "seed": "all", **{f"bleu_{p}": v for p, v in (("mean", 1.0), ("ci_low", 0.5), ("ci_high", 1.5))}}
    assert words in build_table(pd.DataFrame([row]), "textgen")


def test_synthetic_rows_are_marked_wherever_they_appear():
    """Rows of generated records carry synthetic=yes (their dataset, a transfer direction's source or target, or their
    pretraining pool is a demo dataset), and a table part of them says so in its title."""
    import pandas as pd

    from bench.publish.tables import SYNTHETIC_WORDS, comparable_parts, is_synthetic

    real = {"dataset": "ptbxl_1819", "pool": "ptbxl_1819:[1, 2]", "split_hash": "a"}
    assert not is_synthetic(real)
    assert is_synthetic({"dataset": "demo_ptbxl", "pool": "none"})
    assert is_synthetic({"dataset": "cpsc2018", "source_dataset": "demo_cpsc2018", "target_dataset": "demo_ptbxl", "pool": "none"})
    assert is_synthetic({"dataset": "cpsc2018", "pool": "demo_cpsc2018:[1]"})
    assert not is_synthetic({"dataset": "ptbxl_super", "source_dataset": "ptbxl_1819", "target_dataset": "cpsc2018_150"})
    frame = pd.DataFrame([{**real, "method": "merit", "pretrain_budget": ""},
                          {"dataset": "cpsc2018", "source_dataset": "demo_cpsc2018", "pool": "none", "split_hash": "b",
                           "method": "signal_stats", "pretrain_budget": ""}])
    words = dict((w.split("records: split ")[1][:1], w) for w, _ in comparable_parts(frame))
    assert SYNTHETIC_WORDS in words["b"] and SYNTHETIC_WORDS not in words["a"]
