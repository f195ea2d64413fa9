"""Table rendering from a small fixture store with known aggregates."""

from __future__ import annotations

import pytest

from bench.results_store import ResultStore
from bench.tables import EmptyStore, build_table, leaderboard


@pytest.fixture()
def store(tmp_path):
    s = ResultStore(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts")
    for method, auc in [("merit", 0.91), ("merit_cma", 0.85), ("merit_mse", 0.80), ("random", 0.60)]:
        tags = {"suite": "linear", "method": method, "dataset": "ptbxl_1819", "task": "super", "protocol": "fixed",
                "fraction": 1.0, "seed": 0, "applicable": "yes", "checkpoint_hash": f"h-{method}", "split_hash": "s1",
                "code_version": "v"}
        s.replace_aggregate("linear", f"{method}|super", tags, {"auroc_mean": auc, "auroc_ci_low": auc - 0.02,
                                                                 "auroc_ci_high": auc + 0.02, "f1_mean": auc - 0.2,
                                                                 "acc_mean": auc - 0.1, "n_test": 194})
    return s


def test_best_bold_second_underlined_and_intervals(store):
    text = build_table(store.aggregates(["linear"]), "linear")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "**91.0 [89.0, 93.0]**" in rows["merit"]
    assert "<u>85.0 [83.0, 87.0]</u>" in rows["merit_cma"]
    assert "**" not in rows["random"] and "<u>" not in rows["random"]


def test_with_paper_maps_dataset_and_shows_difference(store):
    text = build_table(store.aggregates(["linear"]), "linear", with_paper=True, methods=["merit", "merit_cma"],
                       paper_names={"ptbxl_1819": "ptbxl"})
    paper_row = next(line for line in text.splitlines() if line.startswith("| merit (paper)"))
    assert "93.3" in paper_row  # the paper's PTB-XL super AUC (93.26)
    delta = next(line for line in text.splitlines() if line.startswith("| merit Δ"))
    assert "-2.3" in delta  # 91.0 - 93.26


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
    from bench import plots

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


def test_cv10_cell_shows_the_pooled_auroc_its_interval_belongs_to(tmp_path):
    s = ResultStore(f"sqlite:///{tmp_path}/m.db", tmp_path / "a")
    tags = {"suite": "linear", "method": "merit", "dataset": "ptbxl_1819", "task": "super", "protocol": "cv10",
            "fraction": 1.0, "seed": 0, "applicable": "yes"}
    s.replace_aggregate("linear", "merit|super|cv10", tags, {"auroc_mean": 0.90, "auroc_pooled": 0.80, "auroc_ci_low": 0.75,
                                                             "auroc_ci_high": 0.85, "f1_mean": 0.5, "acc_mean": 0.7})
    text = build_table(s.aggregates(["linear"]), "linear", protocol="cv10")
    assert "80.0 [75.0, 85.0]" in text and "90.0" not in text and "pooled out-of-fold" in text
