"""Content-addressed units, suites as plugins, exact unit sets, and the subgroup / robustness suites on demo data."""

from __future__ import annotations

import json

import pandas as pd

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.run.runner import Runner
from bench.suites.base import Request, get_suite, unit_key

cli = CliRunner()
BASE = ["encoder.preset=tiny", "pretrain.epochs=1", "linear.epochs=3", "run.n_boot=50", "data.demo.n_records=160"]


def _store(root) -> list[str]:
    return [f"paths.cache={root}/cache", f"paths.results={root}/results", f"tracking.uri=sqlite:///{root}/results/mlflow.db"]


def _keys(root, suite: str, method: str, overrides: list[str], tasks=("super",)) -> set[str]:
    """The unit keys a run would use, planned without computing anything."""
    runner = Runner([*_store(root), *BASE, *overrides], progress=False)
    s = get_suite(suite)
    return {unit_key(s, u.material) for g in s.groups(runner, Request([method], ["demo_ptbxl"], list(tasks))) for u in g.units}


# every option that can change a linear or zero-shot number, with a value that changes it (the sampling rate and
# window are the encoder's input contract, not options: preprocess.target_fs / seconds do not reach these encoders)
PERTURBATIONS = {
    "linear": [["preprocess.leads=[I,II,III,aVR,aVL,aVF]"], ["preprocess.nan_window=3"], ["preprocess.crop=center"], ["data.demo.n_records=150"], ["data.demo.seed=1"],
               ["linear.epochs=4"], ["linear.lr=0.01"], ["linear.batch_size=32"], ["linear.weight_decay=0.1"],
               ["linear.standardize=false"], ["encoder.preset=cpu_small"], ["pretrain.seed=1"], ["linear.val_fraction=match"],
               ["preprocess.lead_set=2"], ["preprocess.lead_set=II"]],
    "zero_shot": [["zero_shot.lowercase=false"], ["preprocess.nan_window=3"], ["encoder.preset=cpu_small"], ["pretrain.seed=1"],
                  ["pretrain_pool.text=label_text", "run.allow_label_text=true"]],
}


@pytest.mark.parametrize("suite,method", [("linear", "random"), ("zero_shot", "merit")])
def test_every_option_that_changes_a_number_changes_every_unit_key(tmp_path, suite, method):
    base = _keys(tmp_path, suite, method, [])
    assert base and base == _keys(tmp_path, suite, method, [])  # deterministic
    for overrides in PERTURBATIONS[suite]:
        assert not base & _keys(tmp_path, suite, method, overrides), f"{overrides} left a unit key unchanged"


def test_how_work_is_fed_leaves_the_keys_but_bf16_encoding_changes_them(tmp_path, monkeypatch):
    """Preparation workers, loader processes and the encoding batch size cannot change a number (equivalence
    tests in test_preprocess_cache / test_merit / below), so they keep every key; bf16 autocast (CUDA) can."""
    base = _keys(tmp_path, "linear", "random", [])
    for overrides in (["data.workers=1"], ["loader.workers=2", "loader.prefetch_factor=4"], ["embed.batch_size=7"]):
        assert _keys(tmp_path, "linear", "random", overrides) == base, overrides
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # keys only: nothing is encoded
    assert not base & _keys(tmp_path, "linear", "random", [])
    assert _keys(tmp_path, "linear", "random", ["embed.amp=false"]) == base


def test_encoding_through_loader_processes_gives_the_same_embeddings():
    import numpy as np

    from bench.data.loader import LoaderConfig
    from bench.encoders.embeddings import EncodeSettings, encode_arrays
    from bench.encoders.loading import load_encoder

    handle = load_encoder("merit", {"preset": "tiny", "text": {"kind": "hashing"}})
    x = np.random.default_rng(0).normal(size=(21, 12, 1000)).astype(np.float32)
    emb, aligned = encode_arrays(handle, x, "mV")
    emb2, aligned2 = encode_arrays(handle, x, "mV", EncodeSettings(batch_size=8, loader=LoaderConfig(workers=2)))
    np.testing.assert_allclose(emb2, emb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aligned2, aligned, rtol=1e-5, atol=1e-6)
    direct, _ = handle.encoder.embed(x[:5])
    np.testing.assert_allclose(emb[:5], direct.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_prompt_content_not_its_file_name_is_in_the_zero_shot_key(tmp_path):
    from bench import REPO_ROOT

    prompts = json.loads((REPO_ROOT / "configs/protocols/merl_ckepe_prompt.json").read_text())
    same, edited = tmp_path / "same.json", tmp_path / "edited.json"
    same.write_text(json.dumps(prompts))
    edited.write_text(json.dumps({**prompts, "NORM": "an entirely different description"}))
    base = _keys(tmp_path, "zero_shot", "merit", [])
    assert _keys(tmp_path, "zero_shot", "merit", [f"zero_shot.prompts={same}"]) == base
    assert not base & _keys(tmp_path, "zero_shot", "merit", [f"zero_shot.prompts={edited}"])


def test_suite_version_is_in_the_key():
    s = get_suite("linear")
    bumped = type("Bumped", (type(s),), {"version": s.version + "x"})()
    assert unit_key(s, {"a": 1}) != unit_key(bumped, {"a": 1})


def _run(root, *args):
    """``args``: the command, then its config overrides (after BASE, so they win over it)."""
    command = [a for a in args if "=" not in a or a.startswith("--")]
    result = cli.invoke(app, [*command, *_store(root), *BASE, *[a for a in args if a not in command]])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_issue_reproductions_rerun_the_affected_units_and_nothing_else(tmp_path):
    first = _run(tmp_path, "run", "--suite", "linear", "--methods", "signal_stats", "--tasks", "super")
    assert "1 units (1 run, 0 already in MLflow)" in first
    assert "1 units (0 run, 1 already in MLflow)" in _run(tmp_path, "run", "--suite", "linear", "--methods", "signal_stats",
                                                          "--tasks", "super")
    six = _run(tmp_path, "run", "--suite", "linear", "--methods", "signal_stats", "--tasks", "super", "preprocess.leads=[I,II,III,aVR,aVL,aVF]")
    assert "1 units (1 run, 0 already in MLflow)" in six
    _run(tmp_path, "run", "--suite", "linear", "--methods", "random", "--tasks", "super")
    cpu = _run(tmp_path, "run", "--suite", "linear", "--methods", "random", "--tasks", "super", "encoder.preset=cpu_small")
    assert "1 units (1 run, 0 already in MLflow)" in cpu


def test_aggregates_pool_exactly_their_units_so_compare_ignores_stale_ones(tmp_path):
    from bench.config import load_config
    from bench.publish.compare import compare_methods
    from bench.run.store import ResultStore

    for epochs in ("3", "4"):  # the second run leaves the first run's units behind in the store
        _run(tmp_path, "run", "--suite", "linear", "--methods", "signal_stats,random", "--tasks", "super", f"linear.epochs={epochs}")
    cfg = load_config([*_store(tmp_path), *BASE])
    store = ResultStore.from_config(cfg)
    assert len(store.finished_units("linear", method="random")) == 2
    tags = store.aggregate_tags("linear", "linear|random|demo_ptbxl|super|fixed|1.0|0")
    (key,) = tags["unit_keys"].split(",")
    (unit,) = store.units_by_key("linear", [key], method="random")
    assert unit.data.params["head.epochs"] == "4"
    r = compare_methods(store, cfg.paths.cache, "signal_stats", "random", dataset="demo_ptbxl", task="super", n_boot=50)
    agg = store.aggregates(["linear"])
    assert r["n"] == int(agg.loc[agg["method"] == "random", "n_test"].iloc[0])  # not twice the records


def test_a_plugin_suite_runs_through_the_executor_and_has_its_table(tmp_path):
    out = cli.invoke(app, ["suites", "list"]).output
    assert "toy_prevalence" in out and "subgroup" in out and "robustness" in out
    assert "1 units (1 run" in _run(tmp_path, "run", "--suite", "toy_prevalence", "--methods", "none", "--tasks", "super")
    assert "1 units (0 run, 1 already" in _run(tmp_path, "run", "--suite", "toy_prevalence", "--methods", "none", "--tasks", "super")
    assert "prevalence.NORM" in _run(tmp_path, "table", "toy_prevalence")


def test_runner_holds_no_suite_specific_code():
    import inspect

    import bench.run.runner

    source = inspect.getsource(bench.run.runner)
    for word in ("zero_shot", "transfer", "textgen", "train_heads", "protocol_splits", "prompts"):
        assert word not in source


def test_subgroup_and_robustness_suites_run_on_demo_data(tmp_path):
    small = ["subgroup.min_records=3", "subgroup.min_positives=1"]  # the demo's test fold is small
    out = _run(tmp_path, "run", "--suite", "subgroup", "--methods", "signal_stats", "--tasks", "super", *small)
    assert "1 units (1 run" in out
    table = _run(tmp_path, "table", "subgroup")
    assert "by age" in table and "by sex" in table and "female − male" in table and "male (reference)" in table
    assert "Holm p" in table and "positives" in table
    again = _run(tmp_path, "run", "--suite", "subgroup", "--methods", "signal_stats", "--tasks", "super", *small)
    assert "1 units (0 run, 1 already" in again
    rob = _run(tmp_path, "run", "--suite", "robustness", "--methods", "signal_stats", "--tasks", "super")
    assert "11 units (11 run" in rob
    table = _run(tmp_path, "table", "robustness")
    row = next(line for line in table.splitlines() if line.startswith("| signal_stats"))
    assert row.count("[") == 10  # ten shifted conditions, each with its paired interval


def test_a_re_aggregation_keeps_the_units_provenance_and_repool_mends_an_old_store(tmp_path, monkeypatch):
    """Units computed by one code version and re-aggregated by another: the aggregate names the version that computed
    its units (what `bench verify` rebuilds from them); `bench runs repool` mends aggregates written otherwise."""
    import bench.run.runner as runner_module
    from bench.config import load_config
    from bench.run.runner import repool_provenance
    from bench.run.store import ResultStore

    args = ("run", "--suite", "linear", "--methods", "signal_stats", "--tasks", "super")
    monkeypatch.setattr(runner_module, "code_version", lambda: "0.1.0+gfirst")
    _run(tmp_path, *args)
    monkeypatch.setattr(runner_module, "code_version", lambda: "0.1.0+gsecond")
    _run(tmp_path, *args)  # every unit is reloaded, the aggregate written again
    store = ResultStore.from_config(load_config([*_store(tmp_path), *BASE]))
    agg_key = "linear|signal_stats|demo_ptbxl|super|fixed|1.0|0"
    tags = store.aggregate_tags("linear", agg_key)
    assert tags["code_version"] == "0.1.0+gfirst"
    metrics = store.aggregates(["linear"]).iloc[0]["auroc_mean"]
    store.replace_aggregate("linear", agg_key, {**tags, "code_version": "0.1.0+gsecond"}, {"auroc_mean": metrics})  # the old bug
    assert repool_provenance(store, ["linear"]) == [agg_key]
    assert store.aggregate_tags("linear", agg_key)["code_version"] == "0.1.0+gfirst"
    assert store.aggregates(["linear"]).iloc[0]["auroc_mean"] == metrics and repool_provenance(store, ["linear"]) == []


def test_the_transfer_label_map_is_a_named_keyed_option_stated_in_the_table(tmp_path):
    """STE -> STTC (the paper's Table 5) or STE -> MI: other aligned classes, other unit keys, the table says which."""
    from bench.publish.tables import transfer_words
    from bench.suites.transfer import aligned_classes, load_label_maps

    runner = Runner([*_store(tmp_path), *BASE], progress=False)
    maps = load_label_maps(runner.base.transfer.label_maps)
    moved = load_label_maps(runner.base.transfer.label_maps, "ste_as_mi")
    assert {c.name: c.target_codes for c in aligned_classes(maps, "ptbxl_super", "cpsc2018")}["STTC"] == ["STE", "STD"]
    ste = {c.name: c.target_codes for c in aligned_classes(moved, "ptbxl_super", "cpsc2018")}
    assert ste["MI"] == ["STE"] and ste["STTC"] == ["STD"]
    assert maps["cpsc2018_to_csn"] == moved["cpsc2018_to_csn"]  # the rest as printed

    def keys(*overrides: str) -> set[str]:
        r = Runner([*_store(tmp_path), *BASE, *overrides], progress=False)
        s = get_suite("transfer")
        return {unit_key(s, u.material) for g in s.groups(r, Request(["random"], directions=["ptbxl_super:cpsc2018"]))
                for u in g.units}

    paper = keys()
    assert paper and not paper & keys("transfer.label_map=ste_as_mi")
    with pytest.raises(Exception, match="transfer.label_map='ste_as_me' is not a label map"):
        keys("transfer.label_map=ste_as_me")
    part = pd.DataFrame({"source_dataset": ["demo_ptbxl"], "target_dataset": ["demo_cpsc2018"], "label_map": ["ste_as_mi"]})
    assert "label map: ste_as_mi (STE → MI)" in transfer_words(part)
    assert "the paper's Table 5 (STE → STTC)" in transfer_words(part.drop(columns="label_map"))


def test_a_native_lead_subset_encodes_only_its_leads_keyed_and_marked(tmp_path):
    """ST-MEM takes a lead set natively (its contract's lead_subset): under --leads 12,2 its 2-lead cells encode leads I
    and II alone (the other leads' content cannot reach the embedding), with another input contract key than 12 leads,
    the same checkpoint, and `bench table leads` marks the method native."""
    import numpy as np

    from bench.encoders import create_encoder

    encoder = create_encoder("stmem", preset="tiny").eval()
    x = np.random.default_rng(0).normal(size=(2, 12, encoder.contract.n_samples)).astype("float32")
    embed = lambda a: encoder.embed(a)[0].detach().numpy()  # noqa: E731
    full = embed(x)
    encoder.take_leads(["II", "I"])
    assert encoder.contract.present_leads == ("I", "II") and encoder.contract.lead_index == [0, 1]
    other = x.copy()
    other[:, 2:] = np.random.default_rng(1).normal(size=other[:, 2:].shape)
    assert np.allclose(embed(x), embed(other)) and not np.allclose(embed(x), full)
    with pytest.raises(ValueError, match="not natively"):
        create_encoder("merit_mse", preset="tiny").take_leads(["I"])

    store = [*_store(tmp_path), *BASE]
    ran = cli.invoke(app, ["run", "--suite", "linear", "--methods", "stmem", "--tasks", "super", "--leads", "12,2", "--quiet", *store])
    assert ran.exit_code == 0, ran.output
    from bench.config import load_config
    from bench.run.store import ResultStore

    aggs = ResultStore.from_config(load_config(store)).aggregates(["linear"])
    cells = aggs.set_index(aggs["leads"].fillna("12"))
    assert cells.at["2", "checkpoint_hash"] == cells.at["12", "checkpoint_hash"]
    assert cells.at["2", "input_contract"] != cells.at["12", "input_contract"]
    assert "only leads I,II encoded (a native lead subset)" in cells.at["2", "input"]
    table = cli.invoke(app, ["table", "leads", *store])
    assert table.exit_code == 0 and "stmem (native)" in table.output and "stmem: 2 − 12" in table.output, table.output
    more = cli.invoke(app, ["run", "--suite", "linear", "--methods", "stmem", "--tasks", "super", "--seeds", "0,1", "--quiet", *store])
    assert more.exit_code == 0, more.output
    table = cli.invoke(app, ["table", "leads", *store])  # 12 leads now over two seeds, the 2-lead set at seed 0 only
    assert table.exit_code == 0 and "S = 1 (seed 0)" in table.output and "mean over" not in table.output, table.output
    from bench.publish.tables import auroc_estimate

    assert f"| {100 * auroc_estimate(cells.loc['12']):.1f} [" in table.output  # seed 0's 12-lead cell, as the paired test reads it


def test_evaluation_lead_sets_zero_the_other_leads_key_every_unit_and_table_apart(tmp_path):
    """--leads 12,I: the heads see lead I only (the others zeros), pretraining still reads the full record (same
    checkpoint), the cells are named by their set, `bench table leads` pairs each with 12 leads; other suites refuse it."""
    import numpy as np

    from bench.data.base import RawECG
    from bench.data.leads import STANDARD_LEADS, lead_set
    from bench.data.preprocess import PreprocessConfig, preprocess

    assert lead_set("4") == ("I", "II", "III", "V2") and lead_set("avl") == ("aVL",)
    with pytest.raises(Exception, match="neither a named set"):
        lead_set("7")
    raw = RawECG("r", np.ones((12, 5000), np.float32), 500.0, STANDARD_LEADS)
    x = preprocess(raw, PreprocessConfig(keep_leads=("I", "II")))
    assert np.all(np.abs(x[:2]).mean(1) > 0.9) and np.all(x[2:] == 0)
    assert PreprocessConfig(keep_leads=("I", "II")).key() != PreprocessConfig().key()
    assert _keys(tmp_path, "linear", "random", ["preprocess.lead_set=12"]) == _keys(tmp_path, "linear", "random", [])

    store = [*_store(tmp_path), *BASE]
    ran = cli.invoke(app, ["run", "--suite", "linear", "--methods", "merit_mse,signal_stats", "--tasks", "super", "--leads", "12,I",
                           "--quiet", *store])
    assert ran.exit_code == 0, ran.output
    assert "linear (lead set I): 2 units (2 run" in ran.output
    from bench.config import load_config
    from bench.run.store import ResultStore

    aggs = ResultStore.from_config(load_config(store)).aggregates(["linear"])
    merit = aggs[aggs["method"] == "merit_mse"].set_index(aggs[aggs["method"] == "merit_mse"]["leads"].fillna("12"))
    assert set(merit.index) == {"12", "I"} and merit.at["I", "checkpoint_hash"] == merit.at["12", "checkpoint_hash"]
    assert merit.at["I", "agg_key"].endswith("|leads=I")
    assert merit.at["I", "task_version"].startswith("demo_ptbxl/super@unversioned-")  # the demo is generated: no version
    table = cli.invoke(app, ["table", "leads", *store])
    assert table.exit_code == 0, table.output
    assert "by evaluation lead set" in table.output and "merit_mse: I − 12" in table.output and "signal_stats: I − 12" in table.output
    summary = cli.invoke(app, ["table", "summary", *store])  # the 12-lead cells only, ranked per category
    assert summary.exit_code == 0, summary.output
    assert "summary on demo_ptbxl, diagnosis: mean rank over the 1 task(s) super" in summary.output
    assert summary.output.count("| merit_mse") == 1 and "mean rank [95% CI]" in summary.output
    refused = cli.invoke(app, ["run", "--suite", "zero_shot", "--methods", "merit", "--tasks", "super", "--leads", "2", *store])
    assert refused.exit_code != 0 and "does not name a lead set in its cells" in refused.output
    bad = cli.invoke(app, ["run", "--suite", "linear", "--methods", "random", "--leads", "12,V7", *store])
    assert bad.exit_code != 0 and "lead set 'V7' is neither" in bad.output
