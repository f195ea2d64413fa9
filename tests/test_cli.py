"""The `bench` command line: help everywhere, verify/prepare output, clear errors for typos."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bench.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [["--help"], ["data", "--help"], ["data", "list", "--help"], ["data", "prepare", "--help"],
                                  ["data", "verify", "--help"], ["data", "download", "--help"], ["demo", "--help"]])
def test_every_command_has_help(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.shared_data
def test_verify_ptbxl_1819_reports_counts():
    result = runner.invoke(app, ["data", "verify", "ptbxl_1819"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "1819 records" in out and "not mV" in out
    assert "folds: 1:169, 2:188, 3:179, 4:188, 5:185, 6:188, 7:185, 8:160, 9:183, 10:194" in out
    for task, n in [("super", 1819), ("sub", 1819), ("form", 634), ("rhythm", 1769), ("all", 1819)]:
        assert any(line.split()[:2] == [task, str(n)] for line in out.splitlines()), task
    assert "read 1819 signals (1819 readable)" in out and "signal findings: 0" in out and "problems: 0" in out


def test_prepare_demo_with_overrides(tmp_path):
    result = runner.invoke(app, ["data", "prepare", "demo_cpsc2018", "data.demo.n_records=30", "preprocess.seconds=5"])
    assert result.exit_code == 0, result.output
    assert "30 records prepared as (30, 12, 500)" in result.output


def test_config_typo_and_unknown_dataset_are_clear_errors():
    result = runner.invoke(app, ["data", "verify", "demo_cpsc2018", "data.rooot=/x"])
    assert result.exit_code == 2 and "rooot" in result.output and "fix:" in result.output
    result = runner.invoke(app, ["data", "verify", "ptbxxl"])
    assert result.exit_code == 2 and "Unknown dataset 'ptbxxl'. Available:" in result.output


def test_missing_dataset_names_root_and_fix(tmp_path):
    result = runner.invoke(app, ["data", "verify", "ptbxl", f"data.root={tmp_path}/none"])
    assert result.exit_code == 2
    assert f"{tmp_path}/none: PTB-XL folder not found" in result.output and "bench data download ptbxl" in result.output


def test_download_refuses_local_only_datasets():
    result = runner.invoke(app, ["data", "download", "ptbxl_1819"])
    assert result.exit_code == 2 and "no download source" in result.output


@pytest.mark.skip(reason="PhysioNet is unreachable from this machine and CI (no internet); "
                         "`bench data download ptbxl` streams the archive with a progress bar and unpacks atomically")
def test_download_ptbxl_from_physionet(tmp_path):  # pragma: no cover
    result = runner.invoke(app, ["data", "download", "ptbxl", f"data.root={tmp_path}/ptbxl"])
    assert result.exit_code == 0


def test_the_cheap_dataset_listing_equals_hydras_composition():
    """`bench data list` and the publication read every dataset's config without one Hydra composition each."""
    from omegaconf import OmegaConf

    from bench.config import dataset_configs, load_config

    for name, cfg in dataset_configs().items():
        assert OmegaConf.to_container(cfg.data) == OmegaConf.to_container(load_config(data=name).data), name


def test_the_command_line_imports_no_torch_and_answers_help_at_once():
    import subprocess
    import sys

    imported = subprocess.run([sys.executable, "-X", "importtime", "-c", "import bench.cli"], capture_output=True, text=True)
    modules = {line.split("|")[-1].strip() for line in imported.stderr.splitlines() if "|" in line}
    assert not {m for m in modules if m.split(".")[0] in ("torch", "scipy", "mlflow", "transformers", "sklearn")}, modules
    code = "import resource, sys; from bench.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit: pass\n" \
           "u = resource.getrusage(resource.RUSAGE_SELF); print(u.ru_utime + u.ru_stime, file=sys.stderr)"
    timed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "Usage" in timed.stdout and float(timed.stderr.strip().splitlines()[-1]) < 1.0  # ~0.25 CPU-s; a loaded CI machine


def test_encoders_list_builds_the_encoders_once_then_reads_its_listing_until_something_changes(tmp_path):
    """The second `bench encoders list` imports no torch; a changed card (or code, plugin, option) builds them again."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache"), "BENCH_HOME": str(tmp_path / "home")}
    code = "import sys; from bench.cli import app\ntry:\n    app(['encoders', 'list', *sys.argv[1:]])\nexcept SystemExit: pass\n" \
           "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)"

    def listing(*args: str) -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
        return done.stdout, done.stderr.strip().splitlines()[-1]

    first, how = listing()
    assert how == "torch imported" and "merit" in first and "signal_stats" in first
    again, how = listing()
    assert (again, how) == (first, "no torch")
    other, how = listing("encoder.preset=tiny")  # another option: other rows, built
    assert how == "torch imported" and other != first
    assert len(list((tmp_path / "cache" / "encoders_list").glob("*.json"))) == 2


def test_help_texts_fit_a_terminal_and_name_the_defaults_the_config_has():
    """No option's help is cut at 80 columns, and the defaults the help names are the config's."""
    import os
    import subprocess
    import sys

    from bench.config import load_config

    for command in (["run"], ["embed"], ["verify"], ["publish"]):
        shown = subprocess.run([sys.executable, "-m", "bench.cli", *command, "--help"], capture_output=True, text=True,
                               env={**os.environ, "COLUMNS": "80"}).stdout
        assert "…" not in shown, (command, shown)
    run_help = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--help"], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"}).stdout
    cfg = load_config()
    assert "a SQLite file in the workspace" in run_help and str(cfg.tracking.uri).startswith(f"sqlite:///{cfg.paths.workspace}")
    assert "under results/" not in run_help
