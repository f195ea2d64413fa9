"""`bench run` -> MLflow -> `bench table` / `bench leaderboard` on small demo data (tiny preset)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.run.runner import Runner

cli = CliRunner()


def _overrides(root):
    return [f"paths.cache={root}/cache", f"paths.results={root}/results", f"tracking.uri=sqlite:///{root}/results/mlflow.db",
            "encoder.preset=tiny", "pretrain.epochs=1", "pretrain.batch_size=32", "linear.epochs=4", "run.n_boot=50",
            "data.demo.n_records=160"]


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


def _run(args, root):
    result = cli.invoke(app, [*args, *_overrides(root)])
    return result


def test_killed_run_resumes_without_recomputing(store_root):
    calls = []

    def kill_after_three(n):
        calls.append(n)
        if n == 3:
            raise KeyboardInterrupt

    runner = Runner(_overrides(store_root), progress=False, after_unit=kill_after_three)
    with pytest.raises(KeyboardInterrupt):
        runner.run("linear", ["merit", "merit_mse", "random"], ["demo_ptbxl"], ["super", "rhythm"])
    result = _run(["run", "--suite", "linear", "--methods", "merit,merit_mse,random", "--tasks", "super,rhythm"], store_root)
    assert result.exit_code == 0, result.output
    assert "6 units (3 run, 3 already in MLflow)" in result.output
    again = _run(["run", "--suite", "linear", "--methods", "merit,merit_mse,random", "--tasks", "super,rhythm"], store_root)
    assert "6 units (0 run, 6 already in MLflow)" in again.output


def test_table_prints_real_numbers_with_intervals(store_root):
    result = _run(["table", "linear"], store_root)
    assert result.exit_code == 0, result.output
    rows = {line.split("|")[1].strip(): line for line in result.output.splitlines() if line.startswith("| merit") or line.startswith("| random")}
    # rows are named for what they are: a pretraining preset after '@', controls marked
    assert set(rows) == {"merit@tiny", "merit_mse@tiny", "random (control)"}
    assert "[" in rows["merit@tiny"] and "demo_ptbxl/super AUC" in result.output
    assert "**" in result.output  # best value marked
    latex = _run(["table", "linear", "--format", "latex"], store_root)
    assert "\\textbf{" in latex.output and "\\begin{tabular}" in latex.output


def test_leaderboard_is_byte_identical_on_second_call(store_root, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert _run(["leaderboard", "--out", str(a)], store_root).exit_code == 0
    assert _run(["leaderboard", "--out", str(b)], store_root).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    header = a.read_text().splitlines()[0].split(",")
    for col in ("method", "dataset", "task", "protocol", "fraction", "auroc_mean", "auroc_ci_low", "auroc_ci_high", "n_test",
                "checkpoint_hash", "split_hash", "seed", "code_version"):
        assert col in header
    assert len(a.read_text().splitlines()) == 1 + 6


def test_zero_shot_marks_encoders_without_text_tower(store_root):
    result = _run(["run", "--suite", "zero_shot", "--methods", "merit,merit_mse", "--tasks", "super"], store_root)
    assert result.exit_code == 0, result.output
    assert "not applicable: merit_mse (no text tower)" in result.output
    table = _run(["table", "zero_shot"], store_root).output
    assert "not applicable: merit_mse (no text tower)" in table  # named in the title, not a block of n/a rows
    assert not any(line.startswith("| merit_mse") for line in table.splitlines())
    assert any(line.startswith("| merit@") for line in table.splitlines())


def test_leakage_is_refused(store_root, tmp_path):
    from bench.config import load_config
    from bench.encoders.pretrain import run_pretraining

    cfg = load_config([*_overrides(store_root), "pretrain_pool.folds=[1,2,3,4,5,6,7,8,9,10]"], data="demo_ptbxl")
    ckpt = run_pretraining(cfg, "merit", progress=False).checkpoint
    result = _run(["run", "--suite", "linear", "--methods", "merit", "--tasks", "super", "--ckpt", f"merit={ckpt}"], store_root)
    assert result.exit_code == 2
    assert "leakage:" in result.output and "test record(s) of demo_ptbxl" in result.output


def test_empty_store_says_what_to_run(tmp_path):
    result = _run(["table", "transfer"], tmp_path)
    assert result.exit_code == 1 and "bench run --suite transfer" in result.output


def test_transfer_runs_on_demo_data(store_root):
    result = _run(["run", "--suite", "transfer", "--methods", "signal_stats", "--directions", "ptbxl_super:cpsc2018,csn:cpsc2018"],
                  store_root)
    assert result.exit_code == 0, result.output
    table = _run(["table", "transfer"], store_root).output
    assert "ptbxl_super/to_cpsc2018 AUC" in table and "csn/to_cpsc2018 AUC" in table
    from bench.config import load_config
    from bench.run.store import ResultStore

    store = ResultStore.from_config(load_config(_overrides(store_root)))
    runner = Runner(_overrides(store_root), progress=False)
    n_target = len(runner.reader(runner.dataset_cfg("demo_cpsc2018")).index.records)
    for run in store.finished_units("transfer", method="signal_stats").values():
        y = store.predictions(run)["y_true"]
        assert (y.sum(1) > 0).all()  # target records with no label in the aligned space are left out ...
        assert len(y) + int(run.data.tags["n_target_unlabelled_dropped"]) == n_target  # ... and counted


def test_paired_comparison_between_methods(store_root):
    result = _run(["compare", "merit", "random", "--dataset", "demo_ptbxl", "--task", "super"], store_root)
    assert result.exit_code == 0, result.output
    assert "merit - random on demo_ptbxl/super" in result.output and "paired bootstrap p" in result.output
    missing = _run(["compare", "merit", "ecg_fm", "--dataset", "demo_ptbxl", "--task", "super"], store_root)
    assert missing.exit_code == 2 and "no linear aggregate for ecg_fm" in missing.output


def test_pretraining_text_is_the_report_and_label_text_is_tagged_marked_and_refused_for_zero_shot(store_root):
    """The default pretraining text is the record's report; label_text is another checkpoint (another hash, so
    other unit keys), its rows say pretrain_text=labels and carry the table mark, and zero-shot refuses it
    unless forced."""
    from bench.config import load_config
    from bench.encoders.pretrain import run_pretraining
    from bench.run.store import ResultStore
    from bench.publish.tables import LABEL_TEXT_MARK

    cfg = load_config(_overrides(store_root), data="demo_ptbxl")
    assert cfg.pretrain_pool.text == "report"
    report = run_pretraining(cfg, "merit", progress=False).checkpoint
    labels = run_pretraining(load_config([*_overrides(store_root), "pretrain_pool.text=label_text"], data="demo_ptbxl"), "merit",
                             progress=False).checkpoint
    assert "-report-" in report.parent.name and "-label_text-" in labels.parent.name
    assert report.read_bytes() != labels.read_bytes()

    refused = _run(["run", "--suite", "zero_shot", "--methods", "merit", "--tasks", "super", "pretrain_pool.text=label_text"], store_root)
    assert refused.exit_code == 2 and "not zero-shot" in refused.output and "--allow-label-text" in refused.output
    forced = _run(["run", "--suite", "zero_shot", "--methods", "merit", "--tasks", "super", "--allow-label-text",
                   "pretrain_pool.text=label_text"], store_root)
    assert forced.exit_code == 0, forced.output
    assert "1 units (1 run" in forced.output  # the report-text unit of test_zero_shot_... is not reused
    store = ResultStore.from_config(load_config(_overrides(store_root)))
    tags = {run.data.tags["pretrain_text"] for run in store.finished_units("zero_shot", method="merit").values()}
    assert tags == {"report", "labels"}
    for run in store.finished_units("zero_shot", method="merit").values():
        assert run.data.tags["checkpoint"].startswith("cache:checkpoints/merit-tiny-demo_ptbxl-")  # no machine path
    table = _run(["table", "zero_shot", "--methods", "merit"], store_root).output
    merit_row = next(line for line in table.splitlines() if line.startswith("| merit"))
    assert LABEL_TEXT_MARK.strip() in merit_row and "pretrained on the records' label descriptions" in table
