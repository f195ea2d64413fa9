"""`bench publish` -> results bundle -> `bench verify`, and the page in a real headless browser (demo data, tiny preset)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app

cli = CliRunner()


def _overrides(root):
    return [f"paths.cache={root}/cache", f"paths.results={root}/results", f"tracking.uri=sqlite:///{root}/results/mlflow.db",
            f"tracking.artifacts={root}/results/artifacts", "encoder.preset=tiny", "pretrain.epochs=1", "pretrain.batch_size=32",
            "linear.epochs=4", "run.n_boot=50", "data.demo.n_records=160"]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A small publication: linear (two fractions) and zero-shot for two encoders and a control, with its bundle."""
    root = tmp_path_factory.mktemp("pub")
    template = root / "readme_template.md"  # the README's prose; every number a reference into the results
    template.write_text("MERIT reaches {{ cell('linear/demo_ptbxl/super/fixed/1/merit') }} on super "
                        "({{ value('linear/demo_ptbxl/super/fixed/1/merit', 'n_test') }} test records); against MSE-only: "
                        "{{ paired('super', 'merit', 'merit_mse') }}.\n\nClaim: {{ claim('linear/demo_ptbxl/super/fixed/1/merit', "
                        "'linear/demo_ptbxl/super/fixed/1/random') }}; {{ claim('linear/demo_ptbxl/super/fixed/1/merit:attentive', "
                        "'linear/demo_ptbxl/super/fixed/1/merit') }}; age: {{ claim('regression/demo_ptbxl/age/fixed/1/merit', "
                        "'regression/demo_ptbxl/age/fixed/1/random') }}, {{ cell('regression/demo_ptbxl/age/fixed/1/merit') }} "
                        "({{ claim_count() }} claims). Rhythm, "
                        "{{ order('linear/demo_ptbxl/rhythm/fixed/1/merit', 'linear/demo_ptbxl/rhythm/fixed/1/random', "
                        "'linear/demo_ptbxl/rhythm/fixed/1/merit_mse') }}.\n\n{{ table('linear_fixed_1') }}")
    for args in (["run", "--suite", "linear", "--methods", "merit,merit_mse,random", "--tasks", "super,rhythm", "--fractions", "0.5,1"],
                 ["run", "--suite", "linear", "--methods", "merit,merit_mse,random", "--tasks", "super", "--modes", "attentive",
                  "modes.common.epochs=2"],
                 ["run", "--suite", "zero_shot", "--methods", "merit,merit_mse", "--tasks", "super", "--seeds", "0,1"],
                 ["run", "--suite", "robustness", "--methods", "merit", "--tasks", "super"],
                 ["run", "--suite", "regression", "--methods", "random,merit", "--tasks", "age", "--seeds", "0"],
                 ["publish", "--dataset", "demo_ptbxl", "--paired-n-boot", "200", "--no-figures", "--readme", str(template)]):
        result = cli.invoke(app, [*args, *_overrides(root)])
        assert result.exit_code == 0, result.output
    return root / "results"


def _copy(results: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(results, out, ignore=shutil.ignore_patterns("mlflow.db", "artifacts"))
    return out


def test_bundle_verifies_without_mlflow_and_holds_no_machine_paths(published, tmp_path):
    results = _copy(published, tmp_path)  # no MLflow store, no cache beside it
    result = cli.invoke(app, ["verify", str(results)])
    assert result.exit_code == 0, result.output
    assert "every number is recomputed from its bundle" in result.output
    readme = (results / "README.md").read_text()
    assert "MERIT reaches" in readme and "Holm p" in readme and "| merit" in readme  # rendered from the results
    assert "(3 claims)" in readme and readme.count("told apart") + readme.count(" leads `") == 3
    assert "Δ MAE `" in readme and " years [95% CI " in readme  # the age claim: MAE in years, and its cell likewise
    assert "by estimate, not tested: `" in readme
    manifest = json.loads((results / "bundle" / "manifest.json").read_text())
    assert {a["suite"] for a in manifest["aggregates"]} == {"linear", "zero_shot", "robustness", "regression"}
    modes = (results / "tables" / "modes.md").read_text()  # recomputed from the bundle too, rank correlations included
    assert "by evaluation mode" in modes and "Spearman ρ" in modes and "linear vs attentive" in modes
    assert len(manifest["checkpoints"]) == 3  # merit (seeds 0, 1) and merit_mse (seed 0: no text tower, no zero-shot)
    over_seeds = [a for a in manifest["aggregates"] if a["tags"]["seed"] == "all"]  # recomputed by verify like the rest
    assert over_seeds and all(a["suite"] == "zero_shot" and a["metrics"]["n_seeds"] == 2 for a in over_seeds
                              if a["tags"]["applicable"] == "yes")
    assert not (results / "bundle" / "checkpoints").exists()  # named and hashed, never committed as weights
    board = pd.read_csv(results / "leaderboard.csv")
    assert len(board) == 3 * 2 * 2 + 3 + 1 + 2  # linear: methods x tasks x fractions; attentive: 3; zero-shot: merit only; age: 2
    age = board[board["suite"] == "regression"]  # a continuous target's row is read by its MAE, in the target's unit
    assert set(age["metric"]) == {"MAE"} and set(age["unit_of_target"]) == {"years"} and age["auroc"].isna().all()
    assert (age["mae_ci_low"] <= age["mae"]).all() and (age["mae"] <= age["mae_ci_high"]).all()
    assert set(board[board["suite"] != "regression"]["metric"]) == {"macro AUROC"}
    assert not board["checkpoint"].astype(str).str.startswith("/").any()
    assert board["checkpoint"].str.startswith(("cache:checkpoints/", "untrained")).all()
    assert str(published.parent) not in (results / "bundle" / "manifest.json").read_text()


@pytest.mark.parametrize("tamper", ["leaderboard", "table", "metric_with_hash", "predictions", "unit_metric", "readme", "claim",
                                    "threshold", "epoch", "regression_metric"])
def test_tampering_is_caught_and_named(published, tmp_path, tamper):
    results = _copy(published, tmp_path)
    manifest_path = results / "bundle" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if tamper == "leaderboard":
        board = pd.read_csv(results / "leaderboard.csv", dtype=str, keep_default_na=False)
        i = board.index[(board["method"] == "merit") & (board["task"] == "super") & (board["suite"] == "linear") & (board["mode"] == "linear")][0]
        board.loc[i, "auroc_mean"] = f"{float(board.loc[i, 'auroc_mean']) + 0.01:.6f}"
        board.to_csv(results / "leaderboard.csv", index=False, lineterminator="\n")
        expect = f"leaderboard.csv row linear/demo_ptbxl/super/fixed/linear/full/12/{board.loc[i, 'fraction']}/merit: auroc_mean"
    elif tamper == "table":
        path = results / "tables" / "linear_fixed_1.md"
        path.write_text(path.read_text().replace("| merit@", "| merit_x@", 1))
        expect = "tables/linear_fixed_1.md line"
    elif tamper == "readme":  # one number of the README's prose edited (73.0 -> 78.0 in the issue)
        import re

        path = results / "README.md"
        text = path.read_text()
        number = re.search(r"MERIT reaches (\d+\.\d)", text).group(1)
        path.write_text(text.replace(f"MERIT reaches {number}", f"MERIT reaches {float(number) + 5:.1f}", 1))
        expect = "README.md line"
    elif tamper == "claim":  # a claim's wording turned: "not told apart" -> "leads", or the other way
        import re

        path = results / "README.md"
        text = path.read_text()
        untold = re.search(r"(`[^`]+`) and (`[^`]+`) are not told apart", text)
        turned = (text.replace(untold.group(0), f"{untold.group(1)} leads {untold.group(2)}", 1) if untold else
                  re.sub(r"(`[^`]+`) leads (`[^`]+`)", r"\1 and \2 are not told apart", text, count=1))
        assert turned != text
        path.write_text(turned)
        expect = "README.md line"
    elif tamper in ("threshold", "epoch"):  # what was chosen on validation edited, the hashes left consistent
        from bench.publish.bundle import BundleStore, arrays_hash

        unit = next(u for u in manifest["units"] if u["suite"] == "linear" and u["tags"]["method"] == "merit"
                    and u["tags"].get("mode", "linear") == "linear")
        assert unit["validation"] == ["y_true", "y_score"] and "selection_loss" in unit["vectors"]
        arrays = BundleStore.open(results).predictions(BundleStore.open(results).unit("linear", unit["key"]))
        assert len(arrays["val_record_ids"]) == unit["metrics"]["n_val"]
        if tamper == "threshold":
            arrays["thresholds"][0] += 0.1
            unit["vectors"]["thresholds"] = arrays["thresholds"].tolist()
            expect = f"linear unit {unit['key']} (merit/{unit['tags']['task']}): threshold of class 0 is"
        else:
            unit["metrics"]["best_epoch"] = float(np.argmax(arrays["selection_loss"]) + 1)
            expect = f"linear unit {unit['key']} (merit/{unit['tags']['task']}): best_epoch is"
        unit["predictions"] = arrays_hash(arrays)
        manifest_path.write_text(json.dumps(manifest))
    elif tamper == "metric_with_hash":  # a stored aggregate edited, and the manifest's hashes left consistent
        agg = next(a for a in manifest["aggregates"] if a["suite"] == "linear" and a["tags"]["method"] == "random")
        agg["metrics"]["auroc_pooled"] += 0.02
        manifest_path.write_text(json.dumps(manifest))
        expect = f"linear aggregate {agg['tags']['agg_key']}: auroc_pooled"
    elif tamper == "predictions":
        path = results / "bundle" / "predictions" / "linear.parquet"
        frame = pd.read_parquet(path)
        scores = frame.at[0, "y_score"].copy()
        scores[0] += 0.5
        frame.at[0, "y_score"] = scores
        frame.to_parquet(path, index=False)
        from bench.encoders.checkpoint import file_hash

        manifest["files"]["predictions/linear.parquet"] = file_hash(path, 64)  # the file list made consistent too
        manifest_path.write_text(json.dumps(manifest))
        expect = f"linear unit {frame.at[0, 'unit_key']}"
    elif tamper == "regression_metric":  # a continuous target's MAE edited: its stored predictions give another
        unit = next(u for u in manifest["units"] if u["suite"] == "regression")
        unit["metrics"]["mae"] += 0.5
        manifest_path.write_text(json.dumps(manifest))
        expect = f"regression unit {unit['key']} (random/age): mae is"
    else:  # a unit's metric edited in the manifest
        unit = next(u for u in manifest["units"] if u["suite"] == "linear" and u["tags"]["method"] == "merit")
        unit["metrics"]["auroc"] -= 0.05
        manifest_path.write_text(json.dumps(manifest))
        expect = f"linear unit {unit['key']} (merit/{unit['tags']['task']}): auroc is"
    result = cli.invoke(app, ["verify", str(results)])
    assert result.exit_code == 1, result.output
    assert expect in result.output, result.output
    if tamper in ("unit_metric", "table"):  # the one number alone, found by --only, serially and over two processes
        only = unit["key"] if tamper == "unit_metric" else "tables/linear_fixed_1.md"
        for workers in ("1", "2"):
            quick = cli.invoke(app, ["verify", str(results), "--only", only, "--workers", workers, "--quiet"])
            assert quick.exit_code == 1 and expect in quick.output, quick.output


def test_verify_only_checks_what_it_names_and_holds_on_an_untouched_bundle(published, tmp_path):
    results = _copy(published, tmp_path)
    manifest = json.loads((results / "bundle" / "manifest.json").read_text())
    unit = manifest["units"][0]["key"]
    for only, said in ((unit, "what --only"), ("zero_shot", "what --only"), ("leaderboard.csv", "what --only")):
        result = cli.invoke(app, ["verify", str(results), "--only", only, "--quiet"])
        assert result.exit_code == 0 and said in result.output, result.output
    wrong = cli.invoke(app, ["verify", str(results), "--only", "nonsense"])
    assert wrong.exit_code == 2 and "not a suite, a unit or aggregate key" in wrong.output


def test_verify_without_a_bundle_says_how_to_make_one(tmp_path):
    result = cli.invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 2 and "no results bundle" in result.output and "bench publish" in result.output


def test_page_in_a_headless_browser_lists_every_row_and_sorts(published, tmp_path, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    board = pd.read_csv(published / "leaderboard.csv")
    page = published / "index.html"
    assert "http" not in page.read_text().split("<script")[0].lower() or "https://" not in page.read_text()  # no remote resources
    browser = chromium()
    try:
        browser.get(page.as_uri())
        Select(browser.find_element(By.ID, "f-suite")).select_by_value("zero_shot")  # the fraction follows (zero-shot has 0)
        assert browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr") and not browser.find_element(By.ID, "empty").text
        for name in ("suite", "protocol", "mode", "fraction"):
            Select(browser.find_element(By.ID, f"f-{name}")).select_by_value("all")
        rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
        assert len(rows) == len(board)
        Select(browser.find_element(By.ID, "f-suite")).select_by_value("regression")  # MAE in years, no forest plot
        matrix = browser.find_elements(By.CSS_SELECTOR, "#matrix tbody tr")
        assert len(matrix) == 2 and all(" years" in r.text and "[" in r.text for r in matrix)
        assert not browser.find_elements(By.CSS_SELECTOR, "#forest svg")
        shown = sorted(float(r.find_elements(By.TAG_NAME, "td")[1].text.split()[0]) for r in matrix)
        assert shown == sorted(round(v, 2) for v in board[board["suite"] == "regression"]["mae"])
        Select(browser.find_element(By.ID, "f-suite")).select_by_value("linear")  # one metric to sort by

        def auroc_column():
            return [float(r.find_elements(By.TAG_NAME, "td")[8].text) for r in browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")]

        before = auroc_column()
        header = browser.find_elements(By.CSS_SELECTOR, "#rows thead th")[8]
        header.click()
        after = auroc_column()
        assert after != before and after == sorted(before, reverse=True)
        header.click()
        assert auroc_column() == sorted(before)
        Select(browser.find_element(By.ID, "f-suite")).select_by_value("linear")
        Select(browser.find_element(By.ID, "f-mode")).select_by_value("linear")
        Select(browser.find_element(By.ID, "f-fraction")).select_by_value("1")  # JavaScript writes 1.0 as 1
        assert len(browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")) == int(
            ((board["suite"] == "linear") & (board["fraction"] == 1.0) & (board["mode"] == "linear")).sum())
        heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#matrix thead th")][1:]
        bold = browser.find_elements(By.CSS_SELECTOR, "#matrix td.best")
        assert len(bold) + sum("(tied)" in h for h in heads) == len(heads)  # each column: a tested leader, or "tied"
        matrix = browser.find_elements(By.CSS_SELECTOR, "#matrix tbody tr")
        # rows say what they are: presets pretrained here, and the control
        assert {r.find_element(By.TAG_NAME, "td").text for r in matrix} == {"merit@tiny", "merit_mse@tiny", "random (control)"}
        cell = matrix[0].find_elements(By.TAG_NAME, "td")[1]
        assert "checkpoint_hash:" in cell.get_attribute("title") and "code_version:" in cell.get_attribute("title")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#forest svg")) == 2  # one forest plot per task
        assert all("% labels" in h for h in heads)  # headers in words: task (dataset), labels %, mode, split
        browser.save_screenshot(str(tmp_path / "leaderboard.png"))
        assert (tmp_path / "leaderboard.png").stat().st_size > 10_000
        toggle = browser.find_element(By.ID, "f-synthetic")  # every row here is demo data: shown, marked, and hideable
        assert board["synthetic"].eq("yes").all() and toggle.is_selected() and "◇" in matrix[0].text
        toggle.click()
        assert not browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
    finally:
        browser.quit()


def test_demo_says_its_budget_prints_the_compact_table_and_where_to_look(tmp_path):
    result = cli.invoke(app, ["demo", f"paths.cache={tmp_path}/cache", f"paths.results={tmp_path}/results",
                              f"tracking.uri=sqlite:///{tmp_path}/results/mlflow.db", "encoder.preset=tiny", "demo.n_records=120",
                              "demo.linear_epochs=3", "run.n_boot=50"])
    assert result.exit_code == 0, result.output
    assert "demo budget (tiny on purpose" in result.output and "pretrain.epochs=1" in result.output
    table = [line for line in result.output.splitlines() if line.startswith("| ")]
    assert table[0].split("|")[1].strip() == "method" and len(table) == 1 + 4  # header and the four methods
    assert all(line.count("[") == 4 for line in table[1:])  # an interval in every task column
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/results/mlflow.db" in result.output
    import os

    assert (Path(os.environ["BENCH_HOME"]) / "demo" / "index.html").is_file()  # in the workspace, never in results/


def _kill_when(cmd: list[str], ready, timeout: float = 240.0) -> bool:
    """Run ``cmd``, SIGKILL it as soon as ``ready()`` holds; True when it was killed before it finished."""
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < timeout:
        if ready():
            proc.kill()
            proc.wait()
            return True
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    return False


def test_a_killed_publish_leaves_the_old_publication_whole(published, tmp_path):
    """SIGKILL while the new publication is being built (staging made, first table written, bundle being exported):
    results/ stays the old publication and verifies; a stale staging folder goes at the next publish."""
    import sys

    from bench.files import recover_folder, staged_folder

    root = published.parent
    results = tmp_path / "results"
    shutil.copytree(published, results)
    before = {p.relative_to(results).as_posix(): p.read_bytes() for p in results.rglob("*") if p.is_file()}
    template = root / "readme_template.md"
    cmd = [sys.executable, "-m", "bench.cli", "publish", "--dataset", "demo_ptbxl", "--paired-n-boot", "200", "--no-figures",
           "--readme", str(template), "--out", str(results), *_overrides(root)]
    staged = staged_folder(results)
    points = {"staging made": lambda: staged.is_dir(),
              "a table written": lambda: any((staged / "tables").glob("*.md")) if staged.is_dir() else False,
              "bundle export": lambda: any(staged.glob(".bundle-*")) if staged.is_dir() else False}
    killed = [name for name, ready in points.items() if _kill_when(cmd, ready)]
    assert len(killed) >= 2, f"publish finished before the kill points; killed at {killed}"
    after = {p.relative_to(results).as_posix(): p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert after == before
    verified = cli.invoke(app, ["verify", str(results)])
    assert verified.exit_code == 0, verified.output
    recover_folder(results)  # what the next publish does first
    assert not staged.exists()
    previous = results.with_name(f".{results.name}.previous")  # a kill between the two renames of the fallback swap
    results.rename(previous)
    recover_folder(results)
    assert results.is_dir() and not previous.exists()
    assert cli.invoke(app, ["verify", str(results)]).exit_code == 0


def test_cells_run_again_replace_theirs_in_a_publication_and_nothing_else(published, tmp_path):
    """`bench publish --from-bundle results --with-runs URI`: a cell run again (here with another head budget) replaces
    the bundle's cell of the same key, units and predictions included; every other cell keeps its units; verify holds."""
    results = _copy(published, tmp_path)
    shared = [o for o in _overrides(published.parent) if not o.startswith(("tracking.", "paths.results"))]  # the same cache
    rerun = [f"tracking.uri=sqlite:///{tmp_path}/rerun.db", f"tracking.artifacts={tmp_path}/rerun_artifacts"]
    ran = cli.invoke(app, ["run", "--suite", "linear", "--methods", "random", "--tasks", "super", "--fractions", "1",
                           *shared, *rerun, "linear.epochs=9"])
    assert ran.exit_code == 0, ran.output
    before = json.loads((results / "bundle" / "manifest.json").read_text())
    cell = "linear|random|demo_ptbxl|super|fixed|1.0|0"
    alone = cli.invoke(app, ["publish", "--with-runs", f"sqlite:///{tmp_path}/rerun.db", "--out", str(tmp_path / "x"), *shared])
    assert alone.exit_code == 2 and "--from-bundle" in alone.output and not (tmp_path / "x").exists()
    out = cli.invoke(app, ["publish", "--from-bundle", str(results), "--with-runs", f"sqlite:///{tmp_path}/rerun.db",
                           "--out", str(results), "--dataset", "demo_ptbxl", "--paired-n-boot", "200",
                           "--readme", str(published.parent / "readme_template.md"), *shared])
    assert out.exit_code == 0, out.output
    assert "1 aggregates of" in out.output and "replaced and 0 added" in out.output
    after = json.loads((results / "bundle" / "manifest.json").read_text())
    old, new = ({a["tags"]["agg_key"]: a for a in m["aggregates"] if a["suite"] == "linear"} for m in (before, after))
    assert old.keys() == new.keys()
    assert old[cell]["tags"]["unit_keys"] != new[cell]["tags"]["unit_keys"]
    assert old[cell]["metrics"]["auroc_mean"] != new[cell]["metrics"]["auroc_mean"]
    assert all(new[k]["tags"]["unit_keys"] == a["tags"]["unit_keys"] for k, a in old.items() if k != cell)
    gone = set(old[cell]["tags"]["unit_keys"].split(","))
    assert not gone & {u["key"] for u in after["units"]}
    assert len(after["units"]) == len(before["units"])  # one unit out, one in
    predictions = pd.read_parquet(results / "bundle" / "predictions" / "linear.parquet")
    assert not gone & set(predictions["unit_key"]) and set(new[cell]["tags"]["unit_keys"].split(",")) <= set(predictions["unit_key"])
    verified = cli.invoke(app, ["verify", str(results)])
    assert verified.exit_code == 0, verified.output
    drawn = sorted(p.name for p in (results / "figures").glob("*.png"))  # from the bundle's aggregates, no encoder
    assert "forest_demo_ptbxl_fixed_1.png" in drawn and "label_efficiency_demo_ptbxl_fixed.png" in drawn, drawn


def test_seeds_run_again_beside_a_bundles_seed_pool_with_it(published, tmp_path):
    """A store that ran seeds 1 and 2 of a cell the bundle has at seed 0: the published cell over seeds pools all three
    (not the two the store ran), recomputed from their units; the bundle's seed-0 unit stays; verify holds."""
    results = _copy(published, tmp_path)
    shared = [o for o in _overrides(published.parent) if not o.startswith(("tracking.", "paths.results"))]
    rerun = [f"tracking.uri=sqlite:///{tmp_path}/rerun.db", f"tracking.artifacts={tmp_path}/rerun_artifacts"]
    ran = cli.invoke(app, ["run", "--suite", "regression", "--methods", "random", "--tasks", "age", "--seeds", "1,2", *shared, *rerun])
    assert ran.exit_code == 0, ran.output
    seed0 = {u["key"] for u in json.loads((results / "bundle" / "manifest.json").read_text())["units"]
             if u["suite"] == "regression" and u["tags"]["method"] == "random" and u["tags"]["seed"] == "0"}
    out = cli.invoke(app, ["publish", "--from-bundle", str(results), "--with-runs", f"sqlite:///{tmp_path}/rerun.db",
                           "--out", str(results), "--dataset", "demo_ptbxl", "--paired-n-boot", "200", "--no-figures",
                           "--readme", str(published.parent / "readme_template.md"), *shared])
    assert out.exit_code == 0, out.output
    after = json.loads((results / "bundle" / "manifest.json").read_text())
    cells = {a["tags"]["seed"]: a for a in after["aggregates"] if a["suite"] == "regression" and a["tags"]["method"] == "random"}
    assert set(cells) == {"0", "1", "2", "all"} and cells["all"]["metrics"]["n_seeds"] == 3
    pooled = set(cells["all"]["tags"]["unit_keys"].split(","))
    assert len(seed0) == 1 and seed0 <= pooled and len(pooled) == 3
    assert cells["all"]["metrics"]["mae"] == pytest.approx(np.mean([cells[s]["metrics"]["mae"] for s in "012"]))
    verified = cli.invoke(app, ["verify", str(results)])
    assert verified.exit_code == 0, verified.output


def test_publishing_an_empty_store_is_one_line(tmp_path):
    result = cli.invoke(app, ["publish", "--out", str(tmp_path / "out"), f"tracking.uri=sqlite:///{tmp_path}/empty.db",
                              f"paths.cache={tmp_path}/cache"])
    assert result.exit_code == 2 and "holds no results" in result.output and not (tmp_path / "out").exists()


def test_a_replay_runs_units_again_from_scratch_and_finds_a_changed_number(published, tmp_path):
    """`bench verify --replay`: drawn units recomputed in a fresh cache and workspace give the published metrics; a
    published metric that the code does not give again is named."""
    import yaml

    from bench.publish.replay import candidates

    settings = tmp_path / "replay.yaml"  # the settings the fixture's runs used
    fixture = [o for o in _overrides(tmp_path / "nowhere") if not o.startswith(("paths.", "tracking."))]
    settings.write_text(yaml.safe_dump({"candidates": [{"name": "attentive", "when": {"mode": ["attentive"]},
                                                        "overrides": [*fixture, "modes.common.epochs=2"]},
                                                       {"name": "fixture", "overrides": fixture}],
                                        "suites": ["linear", "zero_shot"]}))
    results = _copy(published, tmp_path)
    manifest_path = results / "bundle" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    pool = [u for u in manifest["units"] if u["suite"] in ("linear", "zero_shot")]
    drawn = [pool[i] for i in np.random.default_rng(3).choice(len(pool), size=2, replace=False)]
    drawn[1]["tags"]["input_contract"] = "0123456789ab"  # published under a contract key today's code no longer makes
    manifest_path.write_text(json.dumps(manifest))
    ok = cli.invoke(app, ["verify", str(results), "--replay", "2", "--replay-seed", "3", "--replay-settings", str(settings)])
    assert ok.exit_code == 0, ok.output
    assert "2 unit(s)" in ok.output and "give the published metrics" in ok.output and ok.output.count("equal (") == 2
    assert "input contract 0123456789ab published" in ok.output and "giving the same metrics" in ok.output
    drawn[0]["metrics"]["auroc"] += 0.01  # a number its predictions would also betray; the replay finds it from scratch
    manifest_path.write_text(json.dumps(manifest))
    bad = cli.invoke(app, ["verify", str(results), "--replay", "2", "--replay-seed", "3", "--replay-settings", str(settings)])
    assert bad.exit_code == 1 and "auroc is" in bad.output and "replayed" in bad.output, bad.output
    tags = {"suite": "transfer", "method": "merit", "dataset": "ptbxl_super", "task": "to_cpsc2018",
            "source_dataset": "ptbxl_1819", "target_dataset": "cpsc2018_150", "mode": "linear"}
    assert candidates({"suite": "linear", "leads": "I"}, {"candidates": [{"overrides": ["pretrain.epochs=3"]}]}) == [
        ["pretrain.epochs=3", "preprocess.lead_set=I"]]
    assert candidates(tags, {"candidates": [{"overrides": ["pretrain.epochs=3"]}]}) == [[
        "pretrain.epochs=3", "transfer.families.ptbxl_super.dataset=ptbxl_1819", "transfer.families.cpsc2018.dataset=cpsc2018_150"]]


def test_the_replay_settings_are_the_ones_the_publication_script_runs_with():
    """configs/publication/replay.yaml restates scripts/republish.sh's settings; a change to one must reach the other."""
    from bench import REPO_ROOT
    from bench.publish.replay import load_settings

    script = (REPO_ROOT / "scripts" / "republish.sh").read_text()
    settings = load_settings()
    for candidate in settings["candidates"]:
        for override in candidate["overrides"]:
            key, value = override.split("=", 1)
            assert key in script and (value in script or f"{key}=$" in script), override
