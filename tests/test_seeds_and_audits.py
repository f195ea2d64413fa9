"""Seeds as an axis (pretraining, head and label draw together; cells over seeds with a two-level bootstrap), the
few-label validation setting, audits that refuse thin evidence, and rows that say what they are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.suites.metrics import seed_draws, two_level_bootstrap

BASE = ["encoder.preset=tiny", "pretrain.epochs=1", "linear.epochs=3", "run.n_boot=200", "data.demo.n_records=160"]


def test_two_level_bootstrap_known_answers():
    # two seeds whose AUROC never varies over records: the resampled mean is 0.6, 0.7 or 0.8 with odds 1:2:1
    per_seed = np.array([[0.6] * 4000, [0.8] * 4000])
    values = two_level_bootstrap(per_seed, seed_draws(2, 4000, 0))
    share = {v: np.mean(np.isclose(values, v)) for v in (0.6, 0.7, 0.8)}
    assert abs(share[0.6] - 0.25) < 0.03 and abs(share[0.7] - 0.5) < 0.03 and abs(share[0.8] - 0.25) < 0.03
    # one seed: exactly its record bootstrap; identical seeds: the same as one
    boot = np.random.default_rng(1).uniform(0.5, 0.9, 300)
    np.testing.assert_array_equal(two_level_bootstrap(boot[None], seed_draws(1, 300, 0)), boot)
    np.testing.assert_allclose(two_level_bootstrap(np.stack([boot] * 3), seed_draws(3, 300, 0)), boot)
    # the draws depend only on (S, B, seed): two methods with S seeds are resampled alike (a paired test pairs them)
    np.testing.assert_array_equal(seed_draws(3, 50, 7), seed_draws(3, 50, 7))
    assert not np.array_equal(seed_draws(3, 50, 7), seed_draws(3, 50, 8))


def test_seeds_drive_init_head_and_label_draw_and_the_cell_over_seeds(tmp_path):
    from bench.publish.compare import compare_methods
    from bench.publish.tables import build_table, leaderboard
    from bench.run.runner import Runner
    from bench.suites.protocols import protocol_splits

    over = [f"paths.cache={tmp_path}/cache", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", *BASE]
    runner = Runner(over, progress=False)
    runner.run("linear", ["random", "signal_stats"], ["demo_ptbxl"], ["super"], fractions=[0.1], seeds=[0, 1, 2])
    agg = runner.store.aggregates(["linear"])
    random = agg[agg["method"] == "random"].set_index("seed")
    assert set(random.index) == {"0", "1", "2", "all"}
    # the run seed reaches the architecture's initial weights and the label-fraction draw
    assert len({random.at[s, "checkpoint_hash"] for s in "012"}) == 3
    index = runner.reader(runner.dataset_cfg("demo_ptbxl")).index
    draws = [protocol_splits(index.records, index.task("super").labels, "fixed", 0.1, s)[0].train for s in range(3)]
    assert draws[0] != draws[1] != draws[2]
    cell = random.loc["all"]
    assert float(cell["n_seeds"]) == 3
    assert float(cell["auroc_pooled"]) == pytest.approx(np.mean([float(random.at[s, "auroc_pooled"]) for s in "012"]))
    assert set(cell["unit_keys"].split(",")) == {random.at[s, "unit_keys"] for s in "012"}
    assert float(cell["auroc_ci_low"]) < float(cell["auroc_pooled"]) < float(cell["auroc_ci_high"])
    assert "two-level" in cell["bootstrap"]
    # tables and the leaderboard show the cell over seeds and say S
    board = leaderboard(agg)
    assert set(board["seed"]) == {"all"} and set(board["n_seeds"]) == {3.0}
    assert "mean over S = 3 seeds" in build_table(agg, "linear", fraction=0.1)
    # a paired test over seeds pairs the seeds' draws and records; one seed's test is still there
    both = compare_methods(runner.store, f"{tmp_path}/cache", "signal_stats", "random", dataset="demo_ptbxl", task="super",
                           fraction=0.1, n_boot=200)
    one = compare_methods(runner.store, f"{tmp_path}/cache", "signal_stats", "random", dataset="demo_ptbxl", task="super",
                          fraction=0.1, seed=1, n_boot=200)
    assert both["n_seeds"] == 3 and one["n_seeds"] == 1 and both["diff"] != one["diff"]


def test_val_fraction_match_subsamples_validation_and_is_keyed_only_when_set(tmp_path):
    from bench.run.runner import Runner
    from bench.suites.base import Group
    from bench.suites.protocols import protocol_splits

    runner = Runner([f"paths.cache={tmp_path}/cache", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", *BASE], progress=False)
    index = runner.reader(runner.dataset_cfg("demo_ptbxl")).index
    labels = index.task("super").labels
    (full,) = protocol_splits(index.records, labels, "fixed", 0.1, 0)
    (match,) = protocol_splits(index.records, labels, "fixed", 0.1, 0, "match")
    assert full.train == match.train and full.test == match.test
    assert len(match.val) == max(1, round(0.1 * len(full.val))) and set(match.val) <= set(full.val)
    ident = {"suite": "linear", "method": "m", "dataset": "d", "task": "t", "protocol": "fixed", "fraction": 0.1, "seed": 0}
    assert Group(ident).agg_key == Group({**ident, "val_fraction": "full"}).agg_key
    assert Group({**ident, "val_fraction": "match"}).agg_key.endswith("|val=match")
    with pytest.raises(Exception, match="val_fraction"):
        protocol_splits(index.records, labels, "fixed", 0.1, 0, "half")


def test_subgroup_gaps_need_enough_positives_in_both_and_say_why_not():
    from bench.suites.subgroup import audit

    rng = np.random.default_rng(0)
    n = 400
    y = (rng.uniform(size=(n, 2)) < 0.3).astype(int)
    levels = pd.Series(["ref"] * 200 + ["good"] * 150 + ["tiny"] * 50)
    s = rng.uniform(size=(n, 2))
    s[200:350] = y[200:350] + 0.1 * rng.uniform(size=(150, 2))  # the "good" subgroup is ranked perfectly
    y[350:] = 0
    y[350:354, 0] = 1  # "tiny": 4 positives of class 0, none of class 1
    metrics, rows = audit(y, s, levels, "ref", min_records=20, min_positives=10)
    by = {r["level"]: r for r in rows}
    assert by["good"]["gap"] > 0.3 and by["good"]["ci_low"] > 0 and by["good"]["p"] < 0.05
    assert by["good"]["classes"] == 2 and by["good"]["positives"] >= 10
    assert "gap" not in by["tiny"] and "positives" in by["tiny"]["why"]
    assert metrics["tiny.n"] == 50 and "tiny.gap" not in metrics
    # too few records: the reason names the count
    _, rows = audit(y, s, levels, "ref", min_records=60, min_positives=10)
    assert {r["level"]: r for r in rows}["tiny"]["why"] == "50 records < 60"


def test_delong_variance_is_the_textbook_one_and_its_gap_test_holds_its_level():
    """One class: DeLong's s10/m + s01/n from the pairwise kernel. Two independent sets from one distribution: about 5 %
    of p below 0.05 (the bootstrap p of 1,000 resamples could never go below 0.002; this one has no floor)."""
    from sklearn.metrics import roc_auc_score

    from bench.suites.metrics import delong_gap_test, delong_macro_auroc, detectable_gap

    rng = np.random.default_rng(0)
    y = (rng.uniform(size=(200, 1)) < 0.3).astype(int)
    s = np.round(rng.normal(size=(200, 1)) + y, 1)  # ties, counted half
    auc, var = delong_macro_auroc(y, s)
    pos = y[:, 0] == 1
    psi = (s[pos, 0][:, None] > s[~pos, 0][None]) + 0.5 * (s[pos, 0][:, None] == s[~pos, 0][None])
    assert auc == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]), abs=1e-12)
    assert var == pytest.approx(psi.mean(1).var(ddof=1) / pos.sum() + psi.mean(0).var(ddof=1) / (~pos).sum(), rel=1e-9)
    p = []
    for _ in range(300):
        ya, yb = ((rng.uniform(size=(n, 3)) < 0.3).astype(int) for n in (150, 120))
        p.append(delong_gap_test(ya, rng.normal(size=ya.shape) + ya, yb, rng.normal(size=yb.shape) + yb)["p_value"])
    assert 0.02 <= np.mean(np.array(p) < 0.05) <= 0.09
    gap = delong_gap_test(ya, rng.normal(size=ya.shape) + 2 * ya, yb, rng.normal(size=yb.shape) + yb)
    assert gap["diff"] > 0.1 and gap["p_value"] < 1e-4  # far beyond what a 1,000-resample bootstrap p could say
    assert detectable_gap(0.02, 28) > detectable_gap(0.02, 1) > 2 * 0.02


def test_robustness_marks_a_constant_output_instead_of_scoring_it():
    from bench.suites.metrics import degenerate_classes

    rng = np.random.default_rng(0)
    y = (rng.uniform(size=(100, 3)) < 0.3).astype(int)
    assert degenerate_classes(y, rng.uniform(size=(100, 3)), 5) == 0
    constant = np.full((100, 3), 0.4)
    assert degenerate_classes(y, constant, 5) == 3
    two_values = rng.uniform(size=(100, 3))
    two_values[:, 1] = (rng.uniform(size=100) > 0.5).astype(float)
    assert degenerate_classes(y, two_values, 5) == 1


def test_rows_say_what_they_are_and_the_budget_is_computed():
    from bench.publish.tables import budget_words, row_name, seed_view

    assert row_name({"method": "merit", "preset": "cpu_small", "checkpoint": "cache:checkpoints/x/encoder.pt"}) == "merit@cpu_small"
    assert row_name({"method": "ecgfounder", "preset": "cpu_small", "checkpoint": "untrained"}) == "ecgfounder@cpu_small (untrained)"
    assert row_name({"method": "random", "preset": "cpu_small", "checkpoint": "untrained"}) == "random (control)"
    assert row_name({"method": "stmem", "preset": "official", "checkpoint": "external:st_mem.pth"}) == "stmem"
    words = budget_words("3 epochs x 1442 records, batch 128, lr 0.001")
    assert "4,326 samples seen" in words and f"{200 * 745916 / 4326:,.0f}x fewer" in words
    df = pd.DataFrame({"suite": "linear", "method": "m", "dataset": "d", "task": "t", "protocol": "fixed", "fraction": [1.0] * 3,
                       "seed": ["0", "1", "all"], "auroc_pooled": [0.7, 0.8, 0.75]})
    assert list(seed_view(df)["seed"]) == ["all"]
    assert list(seed_view(df[df["seed"] != "all"])["seed"]) == ["0"]


def test_the_reports_own_ceiling_scores_the_labels_from_text_alone(tmp_path, shared):
    from bench.publish.tables import leaderboard
    from bench.run.runner import Runner
    from bench.suites.report_text import report_scores

    # known answer: a word that names the class separates it perfectly
    texts = ["sinus rhythm normal", "atrial fibrillation", "normal ecg", "fibrillation atrial irregular"] * 5
    y = np.array([[0], [1], [0], [1]] * 5)
    settings = {"tfidf": {"ngram_range": [1, 1], "min_df": 1}, "logistic": {"C": 10.0, "max_iter": 100}}
    s = report_scores(texts, y, texts, settings)
    assert s[y[:, 0] == 1].min() > s[y[:, 0] == 0].max()
    runner = Runner([f"paths.cache={tmp_path}/cache", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"], progress=False)
    runner.run("report_text", ["ignored"], ["ptbxl_1819"], ["super"])
    board = leaderboard(runner.store.aggregates(["report_text"]))
    (row,) = board.to_dict("records")
    assert row["name"] == "report_text (control: no ECG)" and row["checkpoint"] == "none"
    assert row["auroc_pooled"] > 0.8 and row["n_test"] == 194  # the reports carry the super labels


def test_robustness_shifts_the_recorded_signal_before_an_encoders_own_filters(tmp_path):
    """ECGFounder filters and z-scores in the shared preprocessing (window_steps): the robustness suite shifts the raw
    prepared record first and runs those steps after, as on a recorded signal. So its band-pass and median baseline
    remove added baseline wander (the embedding stays near the clean one), which a shift after the steps would not."""
    import numpy as np

    from bench.data.base import RawECG
    from bench.data.leads import STANDARD_LEADS
    from bench.data.perturb import Condition, apply
    from bench.data.preprocess import PreprocessConfig, preprocess
    from bench.encoders.embeddings import encode_arrays
    from bench.encoders.loading import load_encoder

    handle = load_encoder("ecgfounder", {"preset": "tiny"})
    contract = handle.encoder.contract
    t = np.arange(5000) / 500
    beats = np.exp(-((((t * 1.1) % 1.0) - 0.3) / 0.015) ** 2)
    x = np.stack([np.stack([beats * (1 + 0.1 * j) for j in range(12)]) * (1 + 0.2 * i) for i in range(4)]).astype(np.float32)
    full = PreprocessConfig.from_mapping(contract.preprocess_mapping({}, "ptbxl"))
    raw_cfg = PreprocessConfig.from_mapping({k: v for k, v in contract.preprocess_mapping({}, "ptbxl").items() if k != "window_steps"})
    prep = lambda cfg: np.stack([preprocess(RawECG(f"r{i}", r, 500.0, STANDARD_LEADS), cfg) for i, r in enumerate(x)])
    stepped, raw = prep(full), prep(raw_cfg)
    wander = Condition("wander", "wander", snr_db=0.0)
    ids = [f"r{i}" for i in range(len(x))]
    clean = encode_arrays(handle, stepped, "mV")[0]
    before = encode_arrays(handle, contract.filter_and_scale(apply(wander, raw, list(STANDARD_LEADS), 500.0, ids, 0)), "mV")[0]
    after = encode_arrays(handle, apply(wander, stepped, list(STANDARD_LEADS), 500.0, ids, 0), "mV")[0]
    assert np.abs(before - clean).max() < 0.5 * np.abs(after - clean).max()
