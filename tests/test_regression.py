"""Patient characteristics as regression targets (configs/protocols/regression.yaml) on the real ptbxl_1819 records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
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
