"""Golden conformance: released-file forms written by the upstream repositories' own code load strictly
through `bench embed`'s code path and give upstream's outputs (fixtures: scripts/golden/regenerate.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.encoders.embed import embed_signals
from bench.encoders.checkpoint import CheckpointError
from bench.encoders.loading import load_encoder

GOLDEN = Path(__file__).parent / "golden"
_SPEC = importlib.util.spec_from_file_location("golden_synthetic", Path(__file__).parents[1] / "scripts" / "golden" / "synthetic.py")
SYNTHETIC = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(SYNTHETIC)  # the records the fixtures were computed on (shared with the regeneration script)
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "case.json").is_file())
TOLERANCE = 1e-5  # max |ours - upstream| / max |upstream|


def _case(name: str) -> tuple[dict, dict]:
    case = json.loads((GOLDEN / name / "case.json").read_text())
    text = case["options"].get("text")
    if text and "path" in text:
        case["options"]["text"] = {**text, "path": str(GOLDEN / text["path"])}
    records = SYNTHETIC.signals(fs=case.get("signals_fs", 500), seconds=case.get("seconds", 10))
    if "gain" in case:  # the case's records went through WFDB files at this resolution (upstream's readers read them)
        records = (np.round(records * case["gain"]) / case["gain"]).astype(np.float32)
    assert SYNTHETIC.signals_sha256(records) == case["signals_sha256"], "the synthetic records differ from the fixture's"
    if case.get("read_as") == "wfdb":  # upstream filtered the float64 values a WFDB reader returns: digital / gain
        records = np.round(records * case["gain"]).astype(np.float64) / case["gain"]
    with np.load(GOLDEN / name / "expected.npz") as z:
        return case, {"signals": records, **{k: z[k] for k in z.files}}


def _rel(ours: np.ndarray, upstream: np.ndarray) -> float:
    return float(np.abs(ours - upstream).max() / np.abs(upstream).max())


def test_every_upstream_repository_has_fixtures():
    assert {"stmem", "merl_vit", "merl_resnet18", "dbeta", "ecgfounder", "ecgjepa", "hubert_ecg", "melp", "xresnet1d101", "ecgfm_ked", "s4",
            "ecg_cpc", "heartlang", "clef"} <= set(CASES)
    # records longer than 10 s, through each upstream's own reader (whole-record scaling, crop-then-resample, CPSC2018 window)
    assert {"hubert_ecg_15s", "ecgjepa_15s", "melp_cpsc_15s", "merl_vit_cpsc_15s", "merl_resnet18_cpsc_15s", "clef_15s", "s4_15s", "ecg_cpc_15s",
            "ecgfounder_15s", "stmem_15s", "ecgfm_ked_15s", "heartlang_cpsc_15s", "xresnet1d101_15s"} <= set(CASES)
    # raw 500 Hz records of 10 s through an upstream's own resampling script (ecg_ptbxl_benchmarking's convert_ICBEB.py)
    assert {"xresnet1d101_10s_500hz"} <= set(CASES)
    # an upstream's own script for one dataset (HeartLang's CPSC2018 and Chapman preprocessing)
    assert {"heartlang_csn"} <= set(CASES)
    # a lead subset encoded natively, as upstream does it (HeartLang's QRSTokenizer used_channels)
    assert {"heartlang_leads_3"} <= set(CASES)


@pytest.mark.parametrize("name", [c for c in CASES if "upstream_official_params" in json.loads((GOLDEN / c / "case.json").read_text())])
def test_official_preset_has_upstreams_parameter_count(name):
    from bench.encoders import create_encoder

    case, _ = _case(name)
    no_text = {"text": {"kind": "none"}} if "text" in case["options"] else {}  # the count is of the ECG side
    counts = case["upstream_official_params"]  # one official preset's count, or {preset: count} (CLEF's three sizes)
    for preset, count in (counts if isinstance(counts, dict) else {"official": counts}).items():
        with torch.device("meta"):  # built without memory: CLEF-Large has 296M parameters
            assert create_encoder(case["method"], preset=preset, **no_text).n_params() == count, preset


@pytest.mark.parametrize("name", CASES)
def test_released_files_give_upstream_outputs(name):
    case, expected = _case(name)
    for file in case["files"]:
        handle = load_encoder(case["method"], case["options"], GOLDEN / name / file)
        if case.get("leads"):  # a native lead subset, as upstream encodes one (HeartLang's used_channels)
            handle.encoder.take_leads(case["leads"])
        out = embed_signals(handle, expected["signals"], case["fs"], texts=case.get("prompts"), dataset=case.get("dataset"))
        assert _rel(out["embedding"], expected["embedding"]) <= TOLERANCE, (file, _rel(out["embedding"], expected["embedding"]))
        for key in ("aligned", "text"):
            if key in expected:
                assert _rel(out[key], expected[key]) <= TOLERANCE, (file, key, _rel(out[key], expected[key]))


@pytest.mark.parametrize("name", [c for c in CASES if json.loads((GOLDEN / c / "case.json").read_text()).get("encoder_only_files")])
def test_encoder_only_files_embed_but_refuse_zero_shot(name):
    case, expected = _case(name)
    for file in case["encoder_only_files"]:
        with pytest.raises(CheckpointError, match="ECG encoder only.*zero-shot"):
            load_encoder(case["method"], case["options"], GOLDEN / name / file)
        handle = load_encoder(case["method"], {**case["options"], "text": {"kind": "none"}}, GOLDEN / name / file)
        out = embed_signals(handle, expected["signals"], case["fs"], dataset=case.get("dataset"))
        assert "aligned" not in out and _rel(out["embedding"], expected["embedding"]) <= TOLERANCE


@pytest.mark.parametrize("name", CASES)
def test_whole_model_files_load_without_a_text_tower(name):
    case, expected = _case(name)
    if "text" not in case["options"]:
        pytest.skip("no text tower")
    handle = load_encoder(case["method"], {**case["options"], "text": {"kind": "none"}}, GOLDEN / name / case["files"][0])
    out = embed_signals(handle, expected["signals"], case["fs"], dataset=case.get("dataset"))
    assert _rel(out["embedding"], expected["embedding"]) <= TOLERANCE


def test_a_checkpoint_of_another_architecture_is_refused_naming_keys():
    case, _ = _case("stmem")
    with pytest.raises(CheckpointError, match=r"merl_vit_tiny_final_total\.pth: checkpoint does not fit STMEM"):
        load_encoder("stmem", case["options"], GOLDEN / "merl_vit" / "merl_vit_tiny_final_total.pth")


def test_bench_embed_command_writes_upstream_outputs(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    case, expected = _case("merl_vit")
    np.save(tmp_path / "x.npy", expected["signals"])
    (tmp_path / "t.txt").write_text("\n".join(case["prompts"]) + "\n")
    o = case["options"]
    args = ["embed", "--method", "merl", "--ckpt", str(GOLDEN / "merl_vit" / case["files"][0]), "--signals", str(tmp_path / "x.npy"),
            "--fs", "500", "--texts", str(tmp_path / "t.txt"), "--out", str(tmp_path / "out" / "e.npz"),
            f"encoder.preset={o['preset']}", f"+encoder.proj_dim={o['proj_dim']}", f"+encoder.width={o['width']}",
            f"+encoder.depth={o['depth']}", f"+encoder.heads={o['heads']}", f"+encoder.mlp={o['mlp']}",
            "+encoder.text={" + ",".join(f"{k}:'{v}'" if isinstance(v, str) else f"{k}:{str(v).lower()}"
                                          for k, v in o["text"].items()) + "}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "out" / "e.npz") as z:
        for key in ("embedding", "aligned", "text"):
            assert _rel(z[key], expected[key]) <= TOLERANCE, key
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.npz"]  # nothing half-written beside it
    bad = CliRunner().invoke(app, ["embed", "--method", "stmem", "--signals", str(tmp_path / "t.txt"), "--fs", "500",
                                   "--out", str(tmp_path / "bad.npz")])
    assert bad.exit_code == 2 and "t.txt" in bad.output and "fix:" in bad.output and not (tmp_path / "bad.npz").exists()


def test_contamination_rule_follows_the_model_card(tmp_path):
    from bench.encoders.loading import LeakageError

    case, _ = _case("merl_vit")
    handle = load_encoder("merl", case["options"], GOLDEN / "merl_vit" / case["files"][0])
    assert handle.corpora == ("mimic_iv_ecg",)
    handle.check_leakage("ptbxl_1819", "ptbxl", ["1"])  # PTB-XL is not in MIMIC-IV-ECG
    with pytest.raises(LeakageError, match=r"contamination: mimic_iv_ecg is inside .*mimic_iv_ecg.*--allow-contamination"):
        handle.check_leakage("mimic_iv_ecg", "mimic_iv_ecg", ["1"])
    allowed = load_encoder("merl", case["options"], GOLDEN / "merl_vit" / case["files"][0], allow_contamination=True)
    allowed.check_leakage("mimic_iv_ecg", "mimic_iv_ecg", ["1"])
    assert allowed.contaminated("mimic_iv_ecg") == ["mimic_iv_ecg"] and allowed.contaminated("ptbxl") == []


def test_fine_tuned_ecg_fm_declares_physionet_2021(tmp_path):
    from bench.encoders import create_encoder
    from bench.encoders.loading import LeakageError

    enc = create_encoder("ecg_fm", preset="official")
    tuned = {f"encoder.w2v_model.{k[len('backbone.'):]}": v for k, v in enc.state_dict().items() if k.startswith("backbone.")}
    tuned.update({"proj.weight": np.zeros((5, 768), np.float32), "proj.bias": np.zeros(5, np.float32)})
    import torch

    torch.save({"cfg": {}, "model": {k: torch.as_tensor(v) for k, v in tuned.items()}}, tmp_path / "physionet_finetuned.pt")
    handle = load_encoder("ecg_fm", {"preset": "official"}, tmp_path / "physionet_finetuned.pt")
    assert set(handle.corpora) == {"mimic_iv_ecg", "physionet2021"}
    for identity in ("ptbxl", "cpsc2018", "csn"):
        with pytest.raises(LeakageError, match="contamination"):
            handle.check_leakage(identity, identity, ["1"])


def test_encoders_show_prints_the_card():
    from typer.testing import CliRunner

    from bench.cli import app

    result = CliRunner().invoke(app, ["encoders", "show", "merl", "encoder.preset=official_resnet18", "+encoder.text={kind: none}"])
    assert result.exit_code == 0, result.output
    for text in ("cheliu-computation/MERL-ICML2024@38799b7", "mimic_iv_ecg", "_final_total.pth", "leads I,II,III,aVR,aVF,aVL",
                 "parameters: 3848832"):
        assert text in result.output, text


@pytest.mark.parametrize("name", ["melp_cpsc_15s", "merl_vit_cpsc_15s", "merl_resnet18_cpsc_15s"])
def test_cpsc_window_rule_holds_for_a_folder_of_cpsc_records_through_bench_embed(tmp_path, name):
    """15 s CPSC2018 records in a plain folder (`bench embed --wfdb`): recognised as CPSC2018 by their names, so MELP's and
    MERL's CPSC2018 rule (the first 2,500 samples, zero-padded) applies as in the dataset path and upstream's loader."""
    import pandas as pd
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.data.leads import STANDARD_LEADS
    from bench.data.wfdb_io import write_wfdb

    case, expected = _case(name)
    folder = tmp_path / "cpsc"
    for i, record in enumerate(expected["signals"]):
        write_wfdb(folder / f"A{i + 1:04d}", record, 500, STANDARD_LEADS, gain=case["gain"], mat=True,
                   comments=["Age: 60", "Sex: Female", "Dx: 426783006"])
    o = dict(case["options"])
    text = o.pop("text")
    args = ["embed", "--method", case["method"], "--ckpt", str((GOLDEN / name / case["files"][0]).resolve()), "--wfdb",
            str(folder), "--out", str(tmp_path / "e.parquet"), f"paths.cache={tmp_path}/cache",
            *[f"{'' if k == 'preset' else '+'}encoder.{k}={v}" for k, v in o.items()],
            "+encoder.text={" + ",".join(f"{k}:{v}" for k, v in text.items()) + "}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "e.parquet").set_index("record_id").loc[[f"A{i + 1:04d}" for i in range(len(expected["signals"]))]]
    assert _rel(np.stack(table["embedding"].to_numpy()), expected["embedding"]) <= TOLERANCE


def test_15s_wfdb_records_through_bench_embed_give_upstreams_outputs(tmp_path):
    """CLEF's 15 s case from WFDB files in a folder (`bench embed --wfdb`): the first 10 s of lead II, filtered in float64
    as upstream filters what wfdb returns (a float32 copy of the record moves the ba-form 0.67 Hz band-pass by 5e-4)."""
    import pandas as pd
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.data.leads import STANDARD_LEADS
    from bench.data.wfdb_io import write_wfdb

    case, expected = _case("clef_15s")
    for i, record in enumerate(expected["signals"]):
        write_wfdb(tmp_path / "records" / f"L{i:04d}", record.astype(np.float32), 500, STANDARD_LEADS, gain=case["gain"])
    overrides = [f"{'' if k == 'preset' else '+'}encoder.{k}={json.dumps(v).replace(' ', '')}" for k, v in case["options"].items()]
    result = CliRunner().invoke(app, ["embed", "--method", "clef", "--ckpt", str(GOLDEN / "clef" / "clef_tiny.ckpt"), "--wfdb",
                                      str(tmp_path / "records"), "--out", str(tmp_path / "e.parquet"), f"paths.cache={tmp_path}/cache",
                                      *overrides])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "e.parquet").set_index("record_id").loc[[f"L{i:04d}" for i in range(len(expected["signals"]))]]
    assert _rel(np.stack(table["embedding"].to_numpy()), expected["embedding"]) <= TOLERANCE


@pytest.mark.parametrize("method", ["s4", "ecg_cpc", "ecgfounder", "stmem", "xresnet1d101"])
def test_whole_record_windows_enter_the_key_and_skip_the_padding(method):
    """S4 and ECG-CPC read every 2.5 s window of a record's first 60 s (the reality check's test-time chunks), xresnet1d101
    2.5 s windows every 1.25 s over it (ecg_ptbxl_benchmarking's test-time chunks), ECGFounder
    the whole record at its own length (dataset.py): the padding past a record's end is never encoded, so a 10 s record
    embeds the same in a 10 s or a 60 s array; PTB-XL's records keep 10 s arrays; the rule is part of the contract's key
    and the preprocessing key."""
    from bench.data.preprocess import PreprocessConfig
    from bench.encoders import create_encoder

    whole, first = (create_encoder(method, preset="tiny", **extra).contract for extra in ({}, {"record_seconds": None}))
    assert whole.key() != first.key()
    keys = {PreprocessConfig.from_mapping(whole.preprocess_mapping({}, d)).key() for d in ("ptbxl", "cpsc2018")}
    assert len(keys) == 2 and whole.prepared_seconds("ptbxl") == 10 and whole.prepared_seconds("cpsc2018") == 60
    assert whole.preprocess_mapping({}, "cpsc2018", pretraining=True)["seconds"] == whole.seconds
    handle = load_encoder(method, {"preset": "tiny"})
    x = SYNTHETIC.signals(seconds=10)
    padded, plain = (embed_signals(handle, x, 500, dataset=d)["embedding"] for d in ("cpsc2018", "ptbxl"))
    np.testing.assert_allclose(padded, plain, rtol=1e-5, atol=1e-6)
