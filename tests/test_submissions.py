"""Submissions: a plugin encoder's runs packed by `bench submit` in the submitter's own workspace, verified and added by
`bench leaderboard add` to a publication, and the refusals that leave the publication as it was (demo data, tiny preset)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app

cli = CliRunner()
CLEAN = "0.1.0+gsubmittest00"  # the code version a clean checkout records (the tests run from any tree)


def _overrides(root: Path) -> list[str]:
    return [f"paths.cache={root}/cache", f"paths.results={root}/results", f"tracking.uri=sqlite:///{root}/mlflow.db",
            f"tracking.artifacts={root}/artifacts", "encoder.preset=tiny", "pretrain.epochs=1", "pretrain.batch_size=32",
            "linear.epochs=4", "run.n_boot=50", "data.demo.n_records=160"]


def _invoke(args: list[str]):
    result = cli.invoke(app, args)
    return result


@pytest.fixture(scope="module")
def house(tmp_path_factory):
    """The publication: MERIT and the random control on the demo's super task, published with its bundle."""
    root = tmp_path_factory.mktemp("house")
    for args in (["run", "--suite", "linear", "--methods", "merit,random", "--tasks", "super"],
                 ["publish", "--dataset", "demo_ptbxl", "--paired-n-boot", "200", "--no-figures", "--readme", ""]):
        result = _invoke([*args, *_overrides(root)])
        assert result.exit_code == 0, result.output
    return root / "results"


def _runs(root: Path, monkeypatch, version: str = CLEAN, extra: tuple[str, ...] = ()) -> None:
    """The submitter's own workspace: the plugin encoder (tests/plugins/bench_toy_encoder, installed like any third-party
    package) run on the published task."""
    monkeypatch.setattr("bench.run.runner.code_version", lambda: version)
    result = _invoke(["run", "--suite", "linear", "--methods", "toy_mean", "--tasks", "super", *_overrides(root), *extra])
    assert result.exit_code == 0, result.output


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _submit(root: Path, results: Path, out: Path):
    return _invoke(["submit", "--methods", "toy_mean", "--out", str(out), "--results", str(results), "--submitter", "Ada Lovelace",
                    f"tracking.uri=sqlite:///{root}/mlflow.db", f"tracking.artifacts={root}/artifacts", f"paths.cache={root}/cache"])


def test_a_plugin_encoders_submission_joins_the_leaderboard_marked_submitted(house, tmp_path, monkeypatch, chromium):
    results = tmp_path / "results"
    shutil.copytree(house, results)
    user = tmp_path / "user"
    _runs(user, monkeypatch)
    packed = _submit(user, results, tmp_path / "sub")
    assert packed.exit_code == 0, packed.output
    meta = json.loads((tmp_path / "sub" / "submission.json").read_text())
    assert meta["methods"] == ["toy_mean"] and meta["submitter"] == "Ada Lovelace" and "bench submit" in meta["command"]
    assert meta["code_versions"] == [CLEAN] and any(v.startswith("demo_ptbxl/super@") for v in meta["task_versions"])
    added = _invoke(["leaderboard", "add", str(tmp_path / "sub"), "--results", str(results), f"paths.cache={tmp_path}/boot"])
    assert added.exit_code == 0, added.output
    board = pd.read_csv(results / "leaderboard.csv")
    mine, theirs = board[board["method"] == "toy_mean"], board[board["method"] != "toy_mean"]
    assert len(mine) and set(mine["submitted"]) == {"yes"} and set(mine["submitter"]) == {"Ada Lovelace"}
    assert all(n.startswith("toy_mean") and n.endswith(" (submitted)") for n in mine["name"]) and set(theirs["submitted"]) == {"no"}
    paired = (results / "tables" / "paired_linear_fixed.md").read_text()
    assert "merit − toy_mean" in paired and "merit − random" in paired  # tested against MERIT on the shared test records
    _page_shows_submitted_rows_apart(results, board, chromium)
    verified = _invoke(["verify", str(results)])
    assert verified.exit_code == 0, verified.output
    again = _invoke(["leaderboard", "add", str(tmp_path / "sub"), "--results", str(results), f"paths.cache={tmp_path}/boot"])
    assert again.exit_code != 0 and "already" in again.output


def test_a_changed_prediction_a_foreign_split_and_a_dirty_tree_are_refused_in_one_line(house, tmp_path, monkeypatch):
    from bench.publish.bundle import export_bundle
    from bench.publish.publication import PublishSettings
    from bench.publish.submission import SUBMISSION, _MethodsOnly
    from bench.run.store import ResultStore

    results = tmp_path / "results"
    shutil.copytree(house, results)
    before = _digest(results)

    user = tmp_path / "user"
    _runs(user, monkeypatch)
    assert _submit(user, results, tmp_path / "sub").exit_code == 0
    tampered = tmp_path / "tampered"
    shutil.copytree(tmp_path / "sub", tampered)
    frame = pd.read_parquet(tampered / "bundle" / "predictions" / "linear.parquet")
    score = next(c for c in frame.columns if "score" in c)
    frame.loc[0, score] = frame.loc[0, score] + 0.5 if frame[score].dtype.kind == "f" else frame.loc[0, score]
    frame.to_parquet(tampered / "bundle" / "predictions" / "linear.parquet", index=False)
    refused = _invoke(["leaderboard", "add", str(tampered), "--results", str(results)])
    assert refused.exit_code == 2 and "refused" in refused.output and "linear.parquet" in refused.output, refused.output
    assert len(refused.output.strip().splitlines()) == 1

    # runs on another test split, packed by hand (bench submit refuses them too): `leaderboard add` checks again
    foreign = tmp_path / "foreign"
    _runs(foreign, monkeypatch, extra=("data.splits.val=[10]", "data.splits.test=[9]"))
    refused_pack = _submit(foreign, results, tmp_path / "foreign_sub")
    assert refused_pack.exit_code == 2 and "refused" in refused_pack.output and not (tmp_path / "foreign_sub").exists()
    store = ResultStore(f"sqlite:///{foreign}/mlflow.db", foreign / "artifacts")
    (tmp_path / "by_hand").mkdir()
    export_bundle(_MethodsOnly(store, ["toy_mean"]), tmp_path / "by_hand", ["linear"], PublishSettings(readme=""))
    (tmp_path / "by_hand" / SUBMISSION).write_text(json.dumps({"methods": ["toy_mean"], "submitter": "x", "cards": {}}))
    refused = _invoke(["leaderboard", "add", str(tmp_path / "by_hand"), "--results", str(results)])
    assert refused.exit_code == 2 and ("split" in refused.output or "task version" in refused.output), refused.output
    assert len(refused.output.strip().splitlines()) == 1

    dirty = tmp_path / "dirty"
    _runs(dirty, monkeypatch, version=CLEAN + ".dirty")
    refused = _submit(dirty, results, tmp_path / "dirty_sub")
    assert refused.exit_code == 2 and "dirty tree" in refused.output and len(refused.output.strip().splitlines()) == 1
    assert _digest(results) == before  # nothing of the publication changed


def _page_shows_submitted_rows_apart(results: Path, board: pd.DataFrame, chromium) -> None:
    """The page in a headless browser: the rows filter shows the submitted rows, the house's, or all."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser = chromium()
    try:
        browser.get((results / "index.html").as_uri())
        for name in ("suite", "protocol", "mode", "leads", "fraction"):
            Select(browser.find_element(By.ID, f"f-{name}")).select_by_value("all")
        browser.find_element(By.ID, "f-synthetic").click() if not browser.find_element(By.ID, "f-synthetic").is_selected() else None
        counts = {}
        for who in ("all", "house", "submitted"):
            Select(browser.find_element(By.ID, "f-origin")).select_by_value(who)
            rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
            counts[who] = len(rows)
            if who == "submitted":  # the method column names the row; its hover names the submitter and the command
                assert all("(submitted)" in r.find_elements(By.TAG_NAME, "td")[6].text for r in rows)
                href = rows[0].find_elements(By.TAG_NAME, "td")[6].find_element(By.TAG_NAME, "a").get_attribute("href")
                record = json.loads(Path(href.removeprefix("file://")).read_text())  # the row links to its submission
                assert record["submitter"] == "Ada Lovelace" and record["methods"] == ["toy_mean"]
                assert "submitter: Ada Lovelace" in rows[0].get_attribute("title")
                assert "submission_command: bench submit" in rows[0].get_attribute("title")
        assert counts == {"all": len(board), "house": int((board["submitted"] == "no").sum()),
                          "submitted": int((board["submitted"] == "yes").sum())}
    finally:
        browser.quit()
