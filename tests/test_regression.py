"""Patient characteristics as regression targets (configs/protocols/regression.yaml) on the real ptbxl_1819 records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app

cli = CliRunner()


def test_targets_are_read_as_the_config_states():
    from bench.suites.regression import regression_scores, target_values

    records = pd.DataFrame({"age": [50, 300, np.nan, 70], "height": [170, 180, 160, 0], "weight": [70, 81, 64, 90]},
                           index=["a", "b", "c", "d"])
    age = target_values(records, {"column": "age", "censored": {300: 89}})
    assert age.to_dict() == {"a": 50.0, "b": 89.0, "d": 70.0}  # 300 = "89 or older"; no value: left out
    bmi = target_values(records, {"ratio": ["weight", "height"]})
    assert list(bmi.index) == ["a", "b", "c"] and bmi["b"] == pytest.approx(81 / 1.8 ** 2)
    assert target_values(records, {"column": "heart_rate"}) is None
    s = regression_scores(np.array([1.0, 2, 3, 4]), np.array([1.5, 2, 2.5, 4]))
    assert s["mae"] == pytest.approx(0.25) and s["r2"] == pytest.approx(1 - 0.5 / 5) and 0.9 < s["pearson_r"] <= 1


def test_the_regression_suite_scores_age_with_intervals_and_keys_its_settings(tmp_path):
    store = [f"paths.cache={tmp_path}/cache", f"tracking.uri=sqlite:///{tmp_path}/m.db", f"tracking.artifacts={tmp_path}/a",
             "run.n_boot=200"]
    ran = cli.invoke(app, ["run", "--suite", "regression", "--methods", "signal_stats", "--datasets", "ptbxl_1819",
                           "--tasks", "age,height", "--seeds", "0", "--quiet", *store])
    assert ran.exit_code == 0, ran.output
    table = cli.invoke(app, ["table", "regression", *store])
    assert table.exit_code == 0, table.output
    line = next(x for x in table.output.splitlines() if x.startswith("| signal_stats"))
    assert "age (years, n=194) MAE" in table.output and "height (cm, n=59) MAE" in table.output
    mae = float(line.split("|")[2].split()[0])
    assert 5 < mae < 16  # per-lead statistics hold some age; a constant guess of the mean is ~15 years off
    from bench.config import load_config
    from bench.run.runner import Runner
    from bench.suites.base import Request, get_suite, unit_key

    def keys(*extra):
        r = Runner([*store, *extra], progress=False)
        s = get_suite("regression")
        return {unit_key(s, u.material) for g in s.groups(r, Request(["signal_stats"], ["ptbxl_1819"], ["age"], seeds=[0]))
                for u in g.units}

    assert keys() and not keys() & keys("regression.alphas=[1.0,10.0]")
    assert not keys() & keys("regression.targets.age.censored={300:90}")
    bad = cli.invoke(app, ["run", "--suite", "regression", "--methods", "signal_stats", "--datasets", "ptbxl_1819",
                           "--tasks", "heart_rate", *store])
    assert bad.exit_code != 0 and "not in configs/protocols/regression.yaml" in bad.output


class _LinearEncoder(torch.nn.Module):
    """The least an encoder needs for the modes' trainers: a linear map of the flattened view to 8 features."""

    def __init__(self, n_in: int):
        super().__init__()
        self.proj = torch.nn.Linear(n_in, 8)
        self.spec = type("Spec", (), {"embed_dim": 8})()

    def encode_ecg(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1))

    def layer_groups(self):
        return [list(self.proj.parameters())]


def test_mse_heads_recover_a_target_that_is_a_linear_function_of_a_feature():
    """Known answer: y = 3 x + 1 for a feature x of the input; the attentive head (frozen tokens) and fine-tuning (views)
    trained with the continuous objective predict it on held-out records with R² > 0.9, in the target's own scale."""
    from bench.suites.modes import CONTINUOUS, ModeConfig, fit_attentive, fit_tuned, predict_attentive, predict_tuned
    from bench.suites.regression import regression_scores

    rng = np.random.default_rng(0)
    feature = rng.normal(size=800)
    y = (3 * feature + 1)[:, None].astype(np.float32)
    train, val, test = np.arange(600), np.arange(600, 700), np.arange(700, 800)
    tokens = rng.normal(scale=0.2, size=(800, 6, 16)).astype(np.float32)
    tokens[:, :, 0] += feature[:, None]
    cfg = ModeConfig(mode="attentive", epochs=40, lr=3e-3, batch_size=32, patience=None)
    head, info = fit_attentive(tokens, y, train, val, cfg, seed=0, objective=CONTINUOUS)
    assert "val_neg_mse" in info and regression_scores(y[test, 0], predict_attentive(head, tokens, test)[:, 0])["r2"] > 0.9
    views = rng.normal(scale=0.2, size=(800, 1, 2, 20)).astype(np.float32)
    views[:, 0, 0] += feature[:, None]
    cfg = ModeConfig(mode="finetune", epochs=30, lr=1e-2, batch_size=32, patience=None, lr_factors=(1.0, 1.0, 1.0))
    model, info = fit_tuned(_LinearEncoder(40), views, y, train, val, cfg, seed=0, amp=False, objective=CONTINUOUS)
    assert regression_scores(y[test, 0], predict_tuned(model, views, test)[:, 0])["r2"] > 0.9


def test_continuous_targets_asked_of_the_linear_suite_run_in_every_mode(tmp_path):
    """`bench run --suite linear --tasks age,sex --modes linear,finetune`: sex through the linear suite, age through the
    regression suite's ridge (linear) and MSE (finetune) heads, each mode its own cell and table block; `bench table
    summary` ranks both in the patient category (age by MAE)."""
    store = [f"paths.cache={tmp_path}/cache", f"tracking.uri=sqlite:///{tmp_path}/m.db", f"tracking.artifacts={tmp_path}/a",
             "run.n_boot=50", "encoder.preset=tiny", "pretrain.epochs=1", "linear.epochs=3", "data.demo.n_records=160",
             "modes.finetune.epochs=1"]
    ran = cli.invoke(app, ["run", "--suite", "linear", "--methods", "merit_mse,random", "--tasks", "age,sex", "--modes",
                           "linear,finetune", "--seeds", "0", "--quiet", *store])
    assert ran.exit_code == 0, ran.output
    assert "age: continuous target(s), run by the regression suite" in ran.output
    assert "linear: 4 units" in ran.output and "regression: 4 units" in ran.output
    summary = cli.invoke(app, ["table", "summary", *store])  # sex by AUROC and age by MAE, ranked together as "patient"
    assert summary.exit_code == 0, summary.output
    assert "demo_ptbxl, patient: mean rank over the 2 task(s) age, sex" in summary.output
    assert "age: rank (MAE)" in summary.output and "sex: rank (AUROC)" in summary.output
    table = cli.invoke(app, ["table", "regression", *store])
    assert table.exit_code == 0, table.output
    assert "continuous targets on demo_ptbxl, linear: ridge head on the frozen embedding (the epoch or alpha chosen" in table.output
    assert "continuous targets on demo_ptbxl, finetune: fine-tuned encoder with an MSE head" in table.output
    from bench.config import load_config
    from bench.run.store import ResultStore

    aggs = ResultStore.from_config(load_config(store)).aggregates(["regression"])
    assert {"regression|merit_mse|demo_ptbxl|age|fixed|1.0|0",
            "regression|merit_mse|demo_ptbxl|age|fixed|1.0|0|finetune"} <= set(aggs["agg_key"])
    compared = cli.invoke(app, ["compare", "merit_mse", "random", "--suite", "regression", "--dataset", "demo_ptbxl", "--task",
                                "age", *store])  # the paired test reads MAE on a continuous target, in its unit
    assert compared.exit_code == 0, compared.output
    mae = aggs.set_index("agg_key")["mae"]
    diff = float(compared.output.split("observed MAE difference ")[1].split()[0])
    assert diff == pytest.approx(mae["regression|merit_mse|demo_ptbxl|age|fixed|1.0|0"]
                                 - mae["regression|random|demo_ptbxl|age|fixed|1.0|0"], abs=1e-3 * max(1, abs(diff)))
    n_test = int(aggs.set_index("agg_key")["n_test"]["regression|random|demo_ptbxl|age|fixed|1.0|0"])
    assert "years (negative: merit_mse errs less)" in compared.output and f"n={n_test})" in compared.output
    crossed = cli.invoke(app, ["compare", "merit_mse", "random", "--suite", "linear", "--dataset", "demo_ptbxl", "--task", "age",
                               *store])
    assert crossed.exit_code != 0 and "no linear aggregate" in crossed.output
    from bench.publish.compare import compare_methods

    for suites in (("regression", "linear"), ("linear", "regression")):  # a continuous target against a label cell: refused
        with pytest.raises(ValueError, match="compares only with another regression cell"):
            compare_methods(ResultStore.from_config(load_config(store)), f"{tmp_path}/cache", "merit_mse", "merit_mse",
                            suite=suites[0], suite_b=suites[1], dataset="demo_ptbxl", task="age", n_boot=20)
