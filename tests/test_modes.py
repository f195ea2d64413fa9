"""Evaluation modes beside the linear probe: attentive probe, fine-tuning and training from scratch, their keys, their
resumption, and the table that compares the methods' rankings across modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.run.runner import Runner

cli = CliRunner()


def _store(root) -> list[str]:
    return [f"paths.cache={root}/cache", f"tracking.uri=sqlite:///{root}/m.db", f"tracking.artifacts={root}/artifacts",
            "encoder.preset=tiny", "pretrain.epochs=1", "pretrain.batch_size=32", "linear.epochs=3", "run.n_boot=50",
            "data.demo.n_records=120", "modes.common.epochs=2"]


@pytest.fixture(scope="module")
def mode_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("modes")
    result = cli.invoke(app, ["run", "--suite", "linear", "--methods", "merit_mse,random,signal_stats", "--tasks", "super",
                              "--modes", "linear,attentive,finetune,scratch", *_store(root)])
    assert result.exit_code == 0, result.output
    assert "not applicable: signal_stats (nothing to train in finetune), signal_stats (nothing to train in scratch)" in result.output
    return root


def _keys(root, mode: str, extra=()) -> dict[str, str]:
    runner = Runner([*_store(root), *extra], progress=False)
    from bench.suites.base import Request, get_suite

    suite = get_suite("linear")
    out = {}
    for group in suite.groups(runner, Request(["merit_mse"], tasks=["super"], modes=[mode])):
        from bench.suites.base import unit_key

        for u in group.units:
            out[str(u.tags["fold"])] = unit_key(suite, u.material)
    return out


def test_every_mode_runs_and_the_modes_table_compares_rankings(mode_root):
    from bench.config import load_config
    from bench.run.store import ResultStore

    aggs = ResultStore.from_config(load_config(_store(mode_root))).aggregates(["linear"])
    got = {(r.method, r.mode) for r in aggs.itertuples() if r.applicable == "yes"}
    assert got == {(m, mode) for m in ("merit_mse", "random") for mode in ("linear", "attentive", "finetune", "scratch")} | \
        {("signal_stats", "linear"), ("signal_stats", "attentive")}
    table = cli.invoke(app, ["table", "modes", "--with-reference", *_store(mode_root)])
    assert table.exit_code == 0, table.output
    for text in ("demo_ptbxl/super: macro AUROC (%) [95% CI] by evaluation mode", "merit_mse: finetune − scratch",
                 "merit_mse: attentive − linear", "linear vs attentive", "Spearman ρ"):
        assert text in table.output, text
    linear = cli.invoke(app, ["table", "linear", *_store(mode_root)]).output
    assert "attentive" not in linear and linear.count("| merit_mse") == 1  # the paper's layout shows the linear probe only


def test_mode_and_its_settings_are_in_the_key_and_linear_keys_hold(mode_root):
    linear, attentive, finetune, scratch = (_keys(mode_root, m) for m in ("linear", "attentive", "finetune", "scratch"))
    assert len({*linear.values(), *attentive.values(), *finetune.values(), *scratch.values()}) == 4
    runner = Runner(_store(mode_root), progress=False)
    from bench.suites.base import Request, get_suite, unit_key

    before = {str(u.tags["fold"]): unit_key(get_suite("linear"), u.material)  # a run that never heard of modes
              for g in get_suite("linear").groups(runner, Request(["merit_mse"], tasks=["super"])) for u in g.units}
    assert before == linear
    assert _keys(mode_root, "finetune", ["modes.common.epochs=3"]) != finetune
    assert _keys(mode_root, "finetune", ["modes.finetune.lr_factors=[1.0,0.5,0.25]"]) != finetune
    assert _keys(mode_root, "attentive", ["modes.attentive.attn_heads=4"]) != attentive
    assert _keys(mode_root, "linear", ["modes.common.epochs=3"]) == linear  # the linear probe reads its own settings
    # one mode's own budget (what the publication sets) is a key change of that mode only; a misspelt one is refused
    assert _keys(mode_root, "finetune", ["modes.finetune.epochs=1"]) != finetune
    assert _keys(mode_root, "scratch", ["modes.finetune.epochs=1"]) == scratch
    refused = cli.invoke(app, ["run", "--suite", "linear", "--methods", "merit_mse", "--modes", "scratch", *_store(mode_root),
                               "modes.scratch.epoch=1"])
    assert refused.exit_code != 0 and "modes.scratch: unknown key(s) ['epoch']" in refused.output


def test_the_subgroup_audit_reads_a_modes_predictions(mode_root):
    from bench.config import load_config
    from bench.run.store import ResultStore

    run = cli.invoke(app, ["run", "--suite", "subgroup", "--methods", "merit_mse,signal_stats", "--tasks", "super",
                           "--modes", "linear,finetune", *_store(mode_root), "subgroup.min_records=5", "subgroup.min_positives=2"])
    assert run.exit_code == 0, run.output
    assert "not applicable: signal_stats (nothing to train in finetune)" in run.output
    store = ResultStore.from_config(load_config(_store(mode_root)))
    audits = store.aggregates(["subgroup"])
    audits = audits[audits["applicable"] != "no"]
    assert sorted(zip(audits["method"], audits["mode"])) == [("merit_mse", "finetune"), ("merit_mse", "linear"),
                                                            ("signal_stats", "linear")]
    linear = store.aggregates(["linear"])
    for mode in ("linear", "finetune"):  # each audit read exactly the units of its own mode's cell
        cell = linear[(linear["method"] == "merit_mse") & (linear["mode"] == mode) & (linear["seed"].astype(str) == "0")]
        audit = audits[(audits["method"] == "merit_mse") & (audits["mode"] == mode)]
        assert len(cell) == 1 and list(audit["linear_unit_set"]) == list(cell["unit_set"])
    table = cli.invoke(app, ["table", "subgroup", *_store(mode_root)])
    assert "(finetune, fixed, 100% labels)" in table.output and "(linear, fixed, 100% labels)" in table.output
    refused = cli.invoke(app, ["run", "--suite", "zero_shot", "--methods", "merit", "--modes", "finetune", *_store(mode_root)])
    assert refused.exit_code == 2 and "reads the linear probe only" in refused.output


def test_scratch_trains_the_architecture_from_its_initial_weights(mode_root):
    from bench.config import load_config
    from bench.run.store import ResultStore

    store = ResultStore.from_config(load_config(_store(mode_root)))
    units = {r.data.tags["mode"]: r.data.tags for r in store.finished_units("linear", method="merit_mse").values()}
    assert units["scratch"]["checkpoint_hash"].startswith("init-") and units["scratch"]["pretrain_budget"] == "untrained"
    assert not units["finetune"]["checkpoint_hash"].startswith("init-")


def test_a_killed_fine_tuning_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from bench.encoders import create_encoder
    from bench.suites import modes
    from bench.suites.modes import ModeConfig, fit_tuned

    torch.manual_seed(0)
    enc = create_encoder("merit_mse", preset="tiny")
    rng = np.random.default_rng(0)
    views = rng.normal(size=(40, 1, 12, 1000)).astype(np.float32)
    y = (rng.random((40, 3)) < 0.4).astype(np.int8)
    y[0], y[1] = 1, 0
    train, val = np.arange(30), np.arange(30, 40)
    y[30], y[31] = 1, 0
    cfg = ModeConfig("finetune", epochs=3, batch_size=8)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    whole, info = fit_tuned(enc, views, y, train, val, cfg, seed=5, state_dir=tmp_path / "a")
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in before.items())  # the caller's encoder is untouched
    tuned = dict(whole.encoder.named_parameters())
    assert any(not torch.equal(before[k], tuned[k]) for k, _ in enc.named_parameters()
               if any(p is _ for g in enc.layer_groups() for p in g))  # the embedding path was trained
    calls = {"n": 0}
    real = modes.macro_auroc

    def dies_in_epoch_two(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(modes, "macro_auroc", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit_tuned(enc, views, y, train, val, cfg, seed=5, state_dir=tmp_path / "b")
    monkeypatch.setattr(modes, "macro_auroc", real)
    resumed, info_b = fit_tuned(enc, views, y, train, val, cfg, seed=5, state_dir=tmp_path / "b")
    assert info_b == info
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=k)


def test_discriminative_learning_rates_follow_the_layer_groups():
    from bench.encoders import create_encoder
    from bench.suites.modes import ModeConfig, Tuned, param_groups

    model = Tuned(create_encoder("merit_mse", preset="tiny"), 3)
    groups = param_groups(model, ModeConfig("finetune", lr=1e-3, lr_factors=(1.0, 0.1, 0.01)))
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4, 1e-5])
    lower, upper = model.encoder.layer_groups()
    assert groups[1]["params"] == upper and groups[2]["params"] == lower
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.head.parameters()}


def test_a_dataset_name_with_two_record_sets_gives_two_parts_never_one_header(mode_root, tmp_path):
    """The demo regenerated with other parameters is other records under the same name: the modes table keeps them apart
    (each part with its own n and its own tests) instead of printing one set's rows under the other's header."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(mode_root, root)
    other = [o if not o.startswith("data.demo.n_records") else "data.demo.n_records=150" for o in _store(root)]
    result = cli.invoke(app, ["run", "--suite", "linear", "--methods", "signal_stats", "--tasks", "super", "--modes",
                              "linear,attentive", *other])
    assert result.exit_code == 0, result.output
    table = cli.invoke(app, ["table", "modes", "--with-reference", *_store(root)])
    assert table.exit_code == 0, table.output
    heads = [line for line in table.output.splitlines() if "by evaluation mode" in line]
    assert len(heads) == 2 and all("(records: split " in h for h in heads), heads
    assert len({h.split("n=")[-1].split(";")[0] for h in heads}) == 2  # each part says its own n
    assert "--with-reference: the reality check publishes no number for" in table.output or "(theirs)" in table.output


def test_the_epochs_of_a_mode_show_in_a_nested_bar_with_the_validation_auroc(capsys):
    from bench.suites.modes import ModeConfig, _epochs

    cfg = ModeConfig(mode="scratch", epochs=3, batch_size=4)
    scores = iter([0.6, 0.7, 0.65])
    state = _epochs(cfg, 8, 0, lambda rows: None, lambda: next(scores), progress=True)
    assert (state["epoch"], state["best_epoch"], state["best_score"]) == (3, 2, 0.7)
    err = capsys.readouterr().err
    assert "scratch epochs" in err and "val_auroc=0.650" in err and "best=0.700@2" in err
    _epochs(cfg, 8, 0, lambda rows: None, lambda: 0.5)  # no bar unless asked (--quiet, scripts)
    assert capsys.readouterr().err == ""


def test_tuned_predictions_average_only_the_windows_a_record_has():
    """With S4's whole-record windows, a record's padding windows (all zeros) take no part in its fine-tuned prediction:
    the prediction of a record padded to 24 windows equals the mean over its 4 real windows."""
    from bench.encoders import create_encoder
    from bench.suites.modes import Tuned, predict_tuned, views_of

    torch.manual_seed(0)
    encoder = create_encoder("s4", preset="tiny")
    contract = encoder.contract
    prepared = np.zeros((2, 12, 6000), np.float32)
    prepared[:, :, :1000] = np.random.default_rng(0).normal(size=(2, 12, 1000))
    views = views_of(prepared, contract, np.arange(2))
    present = contract.present_views(views)
    assert views.shape[1] == 24 and present.sum(1).tolist() == [4, 4]
    model = Tuned(encoder, 3).eval()
    got = predict_tuned(model, views, np.arange(2), present=present)
    with torch.no_grad():
        want = torch.sigmoid(model(torch.as_tensor(views[:, :4]).reshape(8, 12, 250))).reshape(2, 4, 3).mean(1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(predict_tuned(model, views, np.arange(2)), want, atol=1e-4)
