"""The generic registry: lazy placeholders, base-class check, helpful unknown-name error."""

from __future__ import annotations

import pytest

from bench.data.base import DatasetReader
from bench.data.registry import READERS
from bench.registry import Registry, UnknownNameError


def test_lazy_registration_and_lookup():
    reg: Registry = Registry("thing")
    reg.register("ordered", "collections:OrderedDict")
    from collections import OrderedDict

    assert reg.get("ordered") is OrderedDict
    with pytest.raises(UnknownNameError, match="Unknown thing 'x'. Available: ordered"):
        reg.get("x")


def test_base_class_is_enforced():
    reg: Registry = Registry("reader", base=DatasetReader)
    with pytest.raises(TypeError, match="must subclass DatasetReader"):
        reg.register("bad", dict)


def test_builtin_readers_are_registered():
    assert {"ptbxl", "ptbxl_1819", "cinc", "cpsc2018_original", "mimic_iv_ecg"} <= set(READERS.names())
    assert issubclass(READERS.get("cinc"), DatasetReader)


def test_the_documented_plugin_runs_end_to_end_without_pretraining(tmp_path):
    """docs/plugins.md's encoder (the installed toy plugin, verbatim) through bench run, bench table and bench compare:
    it has no objective, so it is evaluated as built, never sent to pretraining; its rows carry no preset."""
    import re

    from typer.testing import CliRunner

    from bench import REPO_ROOT
    from bench.cli import app

    documented = re.search(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "plugins.md").read_text(), re.S).group(1)
    installed = (REPO_ROOT / "tests/plugins/bench_toy_encoder/bench_toy_encoder/__init__.py").read_text()
    assert "class ToyMean" + documented.split("class ToyMean")[1] in installed  # the docs' example is the tested plugin
    cli = CliRunner()
    store = [f"paths.cache={tmp_path}/cache", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "linear.epochs=3", "run.n_boot=20",
             "data.demo.n_records=120"]
    ran = cli.invoke(app, ["run", "--suite", "linear", "--methods", "toy_mean,signal_stats", "--tasks", "super", *store])
    assert ran.exit_code == 0, ran.output
    assert "pretrained" not in ran.output and "toy_mean" in ran.output
    table = cli.invoke(app, ["table", "linear", *store])
    assert table.exit_code == 0 and "toy_mean (untrained)" in table.output and "@cpu_small" not in table.output.split("toy_mean")[1][:12]
    compared = cli.invoke(app, ["compare", "toy_mean", "signal_stats", "--dataset", "demo_ptbxl", "--task", "super", *store])
    assert compared.exit_code == 0, compared.output
    refused = cli.invoke(app, ["pretrain", "--method", "toy_mean", *store])
    assert refused.exit_code == 2 and "defines no pretraining objective" in refused.output
