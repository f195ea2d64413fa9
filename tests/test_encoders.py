"""Conformance checks run over every registered encoder (built-ins and plugins), plus checkpoint errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.data.leads import STANDARD_LEADS
from bench.encoders import Encoder, create_encoder, encoder_names
from bench.encoders.checkpoint import CheckpointError

SMALL = {"preset": "tiny"}


def _build(name: str) -> Encoder:
    try:
        return create_encoder(name, **SMALL)
    except TypeError:
        return create_encoder(name)


@pytest.fixture(scope="module", params=encoder_names())
def encoder(request) -> Encoder:
    torch.manual_seed(0)
    return _build(request.param).eval()


def _batch(enc: Encoder, b: int = 3) -> torch.Tensor:
    """One view per record as the shared pipeline hands it to the encoder (contract applied)."""
    s = enc.spec
    x = torch.randn(b, len(s.leads), s.n_samples, generator=torch.Generator().manual_seed(1))
    return torch.as_tensor(enc.contract.views(x.numpy())[:, 0])


def test_embed_averages_the_contract_views(encoder):
    x = torch.randn(2, len(encoder.spec.leads), encoder.spec.n_samples, generator=torch.Generator().manual_seed(2))
    views = torch.as_tensor(encoder.contract.views(x.numpy()))
    with torch.no_grad():
        emb, _ = encoder.embed(x)
        expected = torch.stack([encoder.encode_ecg(views[:, v]) for v in range(views.shape[1])]).mean(0)
    torch.testing.assert_close(emb, expected)


def test_metadata_is_complete(encoder):
    s = encoder.spec
    assert s.name and s.embed_dim > 0 and s.fs > 0 and s.n_samples > 0
    assert s.leads and set(s.leads) <= set(STANDARD_LEADS) and s.leads == s.contract.leads  # 12, or a declared subset
    assert s.n_params >= 0 and isinstance(s.has_text_tower, bool)


def test_output_shape_dtype_and_batch_invariance(encoder):
    x = _batch(encoder, 3)
    with torch.no_grad():
        full = encoder.encode_ecg(x)
        single = torch.cat([encoder.encode_ecg(x[i:i + 1]) for i in range(3)])
    assert full.shape == (3, encoder.spec.embed_dim) and full.dtype == torch.float32
    torch.testing.assert_close(full, single, atol=1e-5, rtol=1e-4)


def test_eval_mode_is_deterministic(encoder):
    x = _batch(encoder)
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_ecg(x), encoder.encode_ecg(x), atol=0, rtol=0)
        tokens = encoder.encode_tokens(x)
    assert tokens.ndim == 3 and tokens.shape[0] == 3


def test_token_features_serve_the_attentive_probe(encoder):
    """Token features [B, T, D]: finite, batch-invariant, and what an attentive head can train on."""
    from bench.suites.modes import AttentiveHead

    x = _batch(encoder, 3)
    with torch.no_grad():
        tokens = encoder.encode_tokens(x)
        one = encoder.encode_tokens(x[:1])
    assert tokens.ndim == 3 and tokens.shape[0] == 3 and tokens.shape[1] >= 1 and torch.isfinite(tokens).all()
    torch.testing.assert_close(tokens[:1], one, atol=1e-5, rtol=1e-4)
    assert AttentiveHead(tokens.shape[-1], 4)(tokens.float()).shape == (3, 4)


def test_layer_groups_cover_the_embedding_path_once(encoder):
    """Discriminative learning rates need the trainable parameters of the embedding path, each in one group, ordered
    from input to output; an encoder with nothing to train has none."""
    groups = encoder.layer_groups()
    trainable_params = [p for p in encoder.parameters() if p.requires_grad]
    if not trainable_params:
        assert groups == []
        return
    flat = [p for g in groups for p in g]
    assert groups and all(groups) and len({id(p) for p in flat}) == len(flat)
    x = _batch(encoder, 2)
    encoder.encode_ecg(x).float().square().sum().backward()
    used = {id(p) for p in encoder.parameters() if p.grad is not None}
    encoder.zero_grad(set_to_none=True)
    assert {id(p) for p in flat} == used  # exactly the parameters the embedding reads
    order = {id(p): i for i, p in enumerate(encoder.parameters())}
    assert [order[id(p)] for p in flat] == sorted(order[id(p)] for p in flat)


def test_encode_pair_matches_separate_calls(encoder):
    x = _batch(encoder)
    with torch.no_grad():
        emb, aligned = encoder.encode_pair(x)
        torch.testing.assert_close(emb, encoder.encode_ecg(x))
        if encoder.spec.has_text_tower:
            torch.testing.assert_close(aligned, encoder.encode_ecg(x, aligned=True))
        else:
            assert aligned is None


def test_text_tower_matches_metadata(encoder):
    if encoder.spec.has_text_tower:
        with torch.no_grad():
            t = encoder.encode_text(["atrial fibrillation", "sinus rhythm", "normal ECG"])
            e = encoder.encode_ecg(_batch(encoder), aligned=True)
        assert t.shape[0] == 3 and t.shape[1] == e.shape[1]
    else:
        with pytest.raises(NotImplementedError, match="no text tower"):
            encoder.encode_text(["x"])


def test_checkpoint_roundtrip_gives_identical_embeddings(encoder, tmp_path):
    path = tmp_path / "enc.pt"
    torch.save({"model": encoder.checkpoint_state()}, path)
    torch.manual_seed(123)
    fresh = _build(encoder.spec.name if encoder.spec.name in encoder_names() else encoder.name).eval()
    fresh.load_checkpoint(path)
    x = _batch(encoder)
    with torch.no_grad():
        torch.testing.assert_close(fresh.encode_ecg(x), encoder.encode_ecg(x), atol=0, rtol=0)


def test_checkpoint_errors_name_file_and_keys(tmp_path):
    enc = create_encoder("merit_mse", preset="tiny")
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint file not found"):
        enc.load_checkpoint(tmp_path / "nope.pt")
    state = enc.checkpoint_state()
    state["bogus.weight"] = torch.zeros(1)
    del state["encoder.norm.bias"]
    state["encoder.lead_embed"] = torch.zeros(5, 32)
    torch.save({"model": state}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        enc.load_checkpoint(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "bad.pt" in msg and "encoder.lead_embed (checkpoint (5, 32), model (12, 32))" in msg
    assert "missing keys: encoder.norm.bias" in msg and "unexpected keys: bogus.weight" in msg
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint: truncated, damaged or not a torch"):
        enc.load_checkpoint(tmp_path / "junk.pt")


def test_registry_lists_merit_variants_and_the_installed_plugin():
    names = encoder_names()
    assert {"merit", "merit_mse", "merit_cma", "merit_ib", "random"} <= set(names)
    assert "toy_mean" in names, "the test plugin (tests/plugins/bench_toy_encoder) registers via entry points only"
    result = CliRunner().invoke(app, ["encoders", "list", "encoder.preset=tiny"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line.split()[0] for line in result.output.splitlines()[2:] if len(line.split()) > 1}
    for name in ("merit", "merit_mse", "merit_cma", "merit_ib", "toy_mean"):
        assert name in rows, name
    # grouped by kind: self-supervised, ECG-text, supervised architectures, controls
    assert rows["merit_mse"] == "self-supervised" and rows["merit"] == "ECG-text" and rows["random"] == "control"
    assert rows["xresnet1d101"] == "supervised" and rows["ecgfounder"] == "supervised" and rows["ecgfm_ked"] == "ECG-text" and rows["s4"] == "supervised"
    assert rows["ecg_cpc"] == "self-supervised" and rows["heartlang"] == "self-supervised"
    assert rows["toy_mean"] == "as-built"  # a plugin without an objective: evaluated as built, never pretrained
    kinds = [k for k in rows.values()]
    assert kinds == sorted(kinds, key=["self-supervised", "ECG-text", "supervised", "as-built", "control"].index)
    mse_row = next(line for line in result.output.splitlines() if " merit_mse " in line)
    assert " no " in mse_row  # no text tower -> not zero-shot capable


def test_unknown_encoder_lists_available():
    with pytest.raises(KeyError, match="Unknown encoder 'merrit'. Available: .*merit"):
        create_encoder("merrit")


def test_contract_fields_that_change_inputs_change_its_key_and_defaults_keep_old_keys():
    from bench.data.contract import InputContract

    base = InputContract(100.0, 1000)
    assert "decimate" not in base.as_dict()  # a field added later is keyed only when set: published keys hold
    variants = [dict(decimate=5), dict(filters=(("fir_bandpass", [0.05, 47.0], 150),)), dict(scale="minmax_lead_pm1"),
                dict(filters=(("fir_bandpass", [0.05, 40.0], 150),)), dict(view_layout="ncrop", view_samples=500),
                dict(dataset_steps=[("cpsc2018", {"keep_seconds": 5.0, "scale": "minmax_record_pm3"})]),
                dict(dataset_steps=[("cpsc2018", {"scale": "minmax_record_pm3"})]),
                dict(dataset_steps=[("csn", {"scale": "minmax_record_pm3", "filters": [["bandpass", [0.67, 40.0], 5]]})])]
    keys = {InputContract(100.0, 1000, **v).key() for v in variants}
    assert base.key() not in keys and len(keys) == len(variants)
    assert "dataset_steps" not in base.as_dict()
    with pytest.raises(ValueError, match="dataset_steps of 'csn'"):
        InputContract(100.0, 1000, dataset_steps=[("csn", {"scale": "minmax_everything"})])
    x = np.random.default_rng(0).normal(size=(2, 12, 1000))
    views = InputContract(100.0, 1000, view_layout="ncrop", view_samples=500, decimate=5, per_view=False).views(x)
    assert views.shape == (2, 1, 1, 1200)  # first 5 s, 12 leads concatenated, decimated by 5


def test_dataset_steps_reach_only_their_datasets_prepared_arrays():
    """HeartLang's CPSC2018 script keeps 2,500 samples at 500 Hz, pads zeros and scales to [-3, 3] before its FFT
    resampler: another dataset's preparation (and its key) is untouched."""
    from bench.data.base import RawECG
    from bench.data.contract import InputContract
    from bench.data.preprocess import PreprocessConfig, preprocess

    contract = InputContract(100.0, 1000, resample="fft", dataset_steps=[("cpsc2018", {"keep_seconds": 5.0, "scale": "minmax_record_pm3"})])
    cpsc, other = (PreprocessConfig.from_mapping(contract.preprocess_mapping({}, d)) for d in ("cpsc2018", "ptbxl"))
    assert other == PreprocessConfig.from_mapping(InputContract(100.0, 1000, resample="fft").preprocess_mapping({}, "ptbxl"))
    assert cpsc.key() != other.key()
    t = np.arange(7500) / 500.0  # 15 s at 500 Hz, slow waves of different amplitudes and offsets per lead
    signal = np.stack([(1 + lead) * np.sin(2 * np.pi * (1 + lead / 10) * t) + 0.5 for lead in range(12)])
    ecg = RawECG("r0", signal, 500.0, STANDARD_LEADS)
    x = preprocess(ecg, cpsc)
    assert x.shape == (12, 1000) and np.isclose(x.min(), -3, atol=0.5) and np.isclose(x.max(), 3, atol=0.5)
    assert np.abs(x[:, 520:980]).max() < np.abs(x[:, :480]).max()  # the padded half is the scaled zero level, not the record
    assert not np.allclose(x, preprocess(ecg, other))


def test_released_presets_are_listed_with_upstreams_parameter_counts(tmp_path):
    """`bench encoders list --released`: one row per preset a released file loads into, counted exactly (on torch's meta
    device): CLEF's three sizes as the golden case recorded them from upstream's create_net1d_by_size, and ECGFounder's
    single-lead model (finetune_model.ft_1lead_ECGFounder: 30,807,750)."""
    import json
    from pathlib import Path

    counts = json.loads((Path(__file__).parent / "golden" / "clef" / "case.json").read_text())["upstream_official_params"]
    result = CliRunner().invoke(app, ["encoders", "list", "--released", f"paths.cache={tmp_path}"])
    assert result.exit_code == 0, result.output
    rows = {tuple(line.split()[:2]): line.split() for line in result.output.splitlines()[2:]}
    for preset, count in counts.items():
        assert rows[("clef", preset)][3] == f"{count:,}" and rows[("clef", preset)][-2] == "II", rows[("clef", preset)]
    assert rows[("ecgfounder", "official_1lead")][3] == "30,807,750" and rows[("ecgfounder", "official_1lead")][-2] == "I"
    assert rows[("ecgfounder", "official")][3] == "30,819,014"
