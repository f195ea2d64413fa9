"""Baseline adapters: official parameter counts, and ECG-FM's fairseq files against a functional reference
forward written on the official keys. ST-MEM, MERL and D-BETA files are checked against outputs of their
upstream code in tests/test_golden.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.encoders import create_encoder
from bench.encoders.checkpoint import CheckpointError

OFFICIAL = {"stmem": 85.15e6, "merl": 5.47e6, "d_beta": 62.02e6, "ecg_fm": 90.37e6}
# counted on the upstream class: MERL utils/resnet1d.ResNet18() less its unused 10-class ``linear``
EXACT = {("merl", "official_resnet18"): 3_848_832}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_parameter_counts(name):
    enc = create_encoder(name, preset="official", **({"text": {"kind": "none"}} if name in ("merl", "d_beta") else {}))
    assert abs(enc.spec.n_params - OFFICIAL[name]) / OFFICIAL[name] < 0.005, enc.spec.n_params


@pytest.mark.parametrize("name,preset", list(EXACT))
def test_exact_parameter_counts(name, preset):
    assert create_encoder(name, preset=preset, text={"kind": "none"}).spec.n_params == EXACT[(name, preset)]


def _rand(shapes: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g) * (0.5 if len(s) == 1 else 1 / math.sqrt(s[-1])) for k, s in shapes.items()}


def _vit_block_shapes(prefix: str, i: int, w: int, mlp: int) -> dict:
    b = f"{prefix}block{i}"
    return {f"{b}.attn.norm.weight": (w,), f"{b}.attn.norm.bias": (w,), f"{b}.attn.fn.to_qkv.weight": (3 * w, w),
            f"{b}.attn.fn.to_qkv.bias": (3 * w,), f"{b}.attn.fn.to_out.0.weight": (w, w), f"{b}.attn.fn.to_out.0.bias": (w,),
            f"{b}.ff.norm.weight": (w,), f"{b}.ff.norm.bias": (w,), f"{b}.ff.fn.net.0.weight": (mlp, w),
            f"{b}.ff.fn.net.0.bias": (mlp,), f"{b}.ff.fn.net.3.weight": (w, mlp), f"{b}.ff.fn.net.3.bias": (w,)}


def _vit_block_ref(s: dict, b: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    h = F.layer_norm(x, x.shape[-1:], s[f"{b}.attn.norm.weight"], s[f"{b}.attn.norm.bias"])
    q, k, v = F.linear(h, s[f"{b}.attn.fn.to_qkv.weight"], s[f"{b}.attn.fn.to_qkv.bias"]).chunk(3, dim=-1)
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)
    att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(q.shape[-1] // heads), dim=-1) @ split(v)
    x = x + F.linear(att.transpose(1, 2).reshape(x.shape), s[f"{b}.attn.fn.to_out.0.weight"], s[f"{b}.attn.fn.to_out.0.bias"])
    h = F.layer_norm(x, x.shape[-1:], s[f"{b}.ff.norm.weight"], s[f"{b}.ff.norm.bias"])
    h = F.linear(F.gelu(F.linear(h, s[f"{b}.ff.fn.net.0.weight"], s[f"{b}.ff.fn.net.0.bias"])), s[f"{b}.ff.fn.net.3.weight"], s[f"{b}.ff.fn.net.3.bias"])
    return x + h


def w2v_official(prefix, w=64, depth=2, ffn=128, c=32, k=8, groups=2):
    shapes = {f"{prefix}feature_extractor.conv_layers.0.0.weight": (c, 12, 2), f"{prefix}feature_extractor.conv_layers.0.2.weight": (c,),
              f"{prefix}feature_extractor.conv_layers.0.2.bias": (c,), f"{prefix}layer_norm.weight": (c,), f"{prefix}layer_norm.bias": (c,),
              f"{prefix}post_extract_proj.weight": (w, c), f"{prefix}post_extract_proj.bias": (w,),
              f"{prefix}conv_pos.pos_conv.0.weight_v": (w, w // groups, k), f"{prefix}conv_pos.pos_conv.0.weight_g": (1, 1, k),
              f"{prefix}conv_pos.pos_conv.0.bias": (w,), f"{prefix}encoder.layer_norm.weight": (w,), f"{prefix}encoder.layer_norm.bias": (w,)}
    for i in range(1, 4):
        shapes[f"{prefix}feature_extractor.conv_layers.{i}.0.weight"] = (c, c, 2)
    for i in range(depth):
        L = f"{prefix}encoder.layers.{i}"
        for proj in ("q", "k", "v", "out"):
            shapes[f"{L}.self_attn.{proj}_proj.weight"], shapes[f"{L}.self_attn.{proj}_proj.bias"] = (w, w), (w,)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            shapes[f"{L}.{ln}.weight"], shapes[f"{L}.{ln}.bias"] = (w,), (w,)
        shapes.update({f"{L}.fc1.weight": (ffn, w), f"{L}.fc1.bias": (ffn,), f"{L}.fc2.weight": (w, ffn), f"{L}.fc2.bias": (w,)})
    return _rand(shapes, seed=2)


def w2v_ref(s, p, x, heads, depth, k, groups, cls=None):
    h = x
    for i in range(4):
        h = F.conv1d(h, s[f"{p}feature_extractor.conv_layers.{i}.0.weight"], stride=2)
        if i == 0:
            h = F.group_norm(h, h.shape[1], s[f"{p}feature_extractor.conv_layers.0.2.weight"], s[f"{p}feature_extractor.conv_layers.0.2.bias"])
        h = F.gelu(h)
    h = h.transpose(1, 2)
    h = F.layer_norm(h, h.shape[-1:], s[f"{p}layer_norm.weight"], s[f"{p}layer_norm.bias"])
    h = F.linear(h, s[f"{p}post_extract_proj.weight"], s[f"{p}post_extract_proj.bias"])
    v, g = s[f"{p}conv_pos.pos_conv.0.weight_v"], s[f"{p}conv_pos.pos_conv.0.weight_g"]
    weight = g * v / v.norm(dim=(0, 1), keepdim=True)
    pos = F.conv1d(h.transpose(1, 2), weight, s[f"{p}conv_pos.pos_conv.0.bias"], padding=k // 2, groups=groups)[:, :, :-1]
    h = h + F.gelu(pos).transpose(1, 2)
    if cls is not None:
        h = torch.cat([cls.expand(h.shape[0], 1, -1), h], 1)
    h = F.layer_norm(h, h.shape[-1:], s[f"{p}encoder.layer_norm.weight"], s[f"{p}encoder.layer_norm.bias"])
    for i in range(depth):
        L = f"{p}encoder.layers.{i}"
        q, kk, vv = (F.linear(h, s[f"{L}.self_attn.{n}_proj.weight"], s[f"{L}.self_attn.{n}_proj.bias"]) for n in "qkv")
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)
        att = torch.softmax(split(q) @ split(kk).transpose(-1, -2) / math.sqrt(q.shape[-1] // heads), -1) @ split(vv)
        a = F.linear(att.transpose(1, 2).reshape(h.shape), s[f"{L}.self_attn.out_proj.weight"], s[f"{L}.self_attn.out_proj.bias"])
        h = F.layer_norm(h + a, h.shape[-1:], s[f"{L}.self_attn_layer_norm.weight"], s[f"{L}.self_attn_layer_norm.bias"])
        f = F.linear(F.gelu(F.linear(h, s[f"{L}.fc1.weight"], s[f"{L}.fc1.bias"])), s[f"{L}.fc2.weight"], s[f"{L}.fc2.bias"])
        h = F.layer_norm(h + f, h.shape[-1:], s[f"{L}.final_layer_norm.weight"], s[f"{L}.final_layer_norm.bias"])
    return h


SMALL_W2V = dict(conv_dim=32, width=64, depth=2, heads=4, ffn=128, conv_pos=8, conv_pos_groups=2)


def test_ecg_fm_pretrained_and_finetuned_files(tmp_path):
    state = w2v_official("")
    state.update({"mask_emb": torch.rand(64), "quantizer.vars": torch.randn(1, 640, 128), "project_q.weight": torch.randn(256, 128),
                  "final_proj.weight": torch.randn(256, 64)})
    torch.save({"cfg": {}, "model": state}, tmp_path / "pretrained.pt")
    enc = create_encoder("ecg_fm", preset="tiny", **SMALL_W2V).eval()
    enc.load_checkpoint(tmp_path / "pretrained.pt")
    x = torch.randn(2, 12, 1000)
    xn = torch.as_tensor(enc.contract.filter_and_scale(x.numpy()))  # per-lead z-score of the record, then two 5 s halves
    with torch.no_grad():
        ours, _ = enc.embed(x)
        ref = torch.stack([w2v_ref(state, "", xn[..., i * 500:(i + 1) * 500], 4, 2, 8, 2).mean(1) for i in range(2)]).mean(0)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    # torch's parametrized weight norm names, inside a fine-tuned file (encoder.* + classifier proj.*)
    alt = {k.replace("weight_g", "parametrizations.weight.original0").replace("weight_v", "parametrizations.weight.original1"): v
           for k, v in state.items()}
    tuned = {f"encoder.{k}": v for k, v in alt.items()}
    tuned.update({"proj.weight": torch.randn(5, 64), "proj.bias": torch.zeros(5)})
    torch.save({"model": tuned}, tmp_path / "finetuned.pt")
    enc2 = create_encoder("ecg_fm", preset="tiny", **SMALL_W2V).eval()
    enc2.load_checkpoint(tmp_path / "finetuned.pt")
    with torch.no_grad():
        torch.testing.assert_close(enc2.embed(x)[0], ours)


def test_wrong_file_lists_offending_keys(tmp_path):
    golden = Path(__file__).parent / "golden" / "stmem"
    state = torch.load(golden / "encoder.pth", weights_only=False)["model"]
    state["block0.attn.fn.to_qkv.weight"] = torch.zeros(5, 5)
    state["cls_token"] = torch.zeros(1, 128)
    del state["norm.bias"]
    torch.save({"model": state}, tmp_path / "bad.pth")
    enc = create_encoder("stmem", **json.loads((golden / "case.json").read_text())["options"])
    with pytest.raises(CheckpointError) as err:
        enc.load_checkpoint(tmp_path / "bad.pth")
    msg = str(err.value)
    assert "bad.pth" in msg and "encoder.blocks.0.attn.to_qkv.weight (checkpoint (5, 5), model (384, 128))" in msg
    assert "missing keys: encoder.norm.bias" in msg and "unexpected keys: encoder.cls_token" in msg
    full = torch.load(golden / "checkpoint-0.pth", weights_only=False)["model"]
    full["projector.weight"] = torch.zeros(2)  # a key the full pretraining file never has
    torch.save({"model": full}, tmp_path / "full.pth")
    with pytest.raises(CheckpointError, match="unexpected keys: encoder.projector.weight"):
        enc.load_checkpoint(tmp_path / "full.pth")


def test_zero_shot_capability_in_listing():
    assert create_encoder("merl", preset="tiny").spec.has_text_tower
    assert create_encoder("d_beta", preset="tiny").spec.has_text_tower
    assert not create_encoder("merl", preset="tiny", text={"kind": "none"}).spec.has_text_tower
    assert not create_encoder("stmem", preset="tiny").spec.has_text_tower
    assert not create_encoder("ecg_fm", preset="tiny").spec.has_text_tower


def test_ecgjepa_latent_prediction_moves_the_ema_target_and_ignores_masked_context():
    from bench.encoders.randomness import StepRandom

    torch.manual_seed(0)
    enc = create_encoder("ecgjepa", preset="tiny").train()
    rng = StepRandom(3, 7, range(2))
    masked = enc._time_mask(StepRandom(3, 7, range(2)))
    assert 0 < masked.sum() < masked.numel()
    x = torch.randn(2, 8, enc.spec.n_samples)
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.5)
    enc.pretraining_losses(x, rng=rng)["loss"].backward()
    assert all(p.grad is None for p in enc.target_encoder.parameters())
    opt.step()
    before = [t.detach().clone() for t in enc.target_encoder.parameters()]
    enc.pretraining_losses(x, rng=StepRandom(3, 8, range(2)))
    m = enc.config["ema"]
    for b, t, o in zip(before, enc.target_encoder.parameters(), enc.encoder.parameters()):
        assert torch.allclose(t, m * b + (1 - m) * o, atol=1e-6)
    # the context encoder never sees the masked patches: changing them leaves its tokens unchanged
    patch = enc.config["patch"]
    y = x.clone().reshape(2, 8, -1, patch)
    y[:, :, masked] = 100.0
    with torch.no_grad():
        assert torch.equal(enc.encoder(x, ~masked), enc.encoder(y.reshape(x.shape), ~masked))


def test_hubert_ecg_masked_cluster_prediction_fits_targets_once_and_scores_masked_frames_only():
    from bench.encoders.randomness import StepRandom

    torch.manual_seed(0)
    enc = create_encoder("hubert_ecg", preset="tiny").train()
    x = torch.randn(4, 12, enc.spec.n_samples)
    first = enc.pretraining_losses(x, rng=StepRandom(1, 0, range(4)))["loss"]
    centroids = enc.centroids.clone()
    assert torch.isfinite(first) and enc.feature_std.gt(0).all()
    enc.pretraining_losses(torch.randn_like(x) * 5, rng=StepRandom(1, 1, range(4)))
    assert torch.equal(centroids, enc.centroids)  # clustered once, like upstream's offline k-means
    state = {k: v for k, v in enc.state_dict().items()}
    fresh = create_encoder("hubert_ecg", preset="tiny")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.centroids, centroids)  # the targets travel with the checkpoint
    with pytest.raises(ValueError, match="unknown HuBERT-ECG option"):
        create_encoder("hubert_ecg", preset="tiny", vocab=3)


def test_released_pt_with_an_uninstalled_config_class_is_read_as_its_card_allows():
    from bench.encoders.cards import checkpoint_objects
    from bench.encoders.checkpoint import ForeignObject, UnsafeCheckpoint, read_checkpoint

    path = Path(__file__).parent / "golden" / "hubert_ecg" / "hubert_ecg_small.pt"
    with pytest.raises(UnsafeCheckpoint, match=r"hubert_ecg_small\.pt: refused: .*hubert_ecg\.HuBERTECGConfig"):
        read_checkpoint(path)  # no allow-list: the pickled config class is refused
    blob = read_checkpoint(path, checkpoint_objects("hubert_ecg"), owner="hubert_ecg")
    assert isinstance(blob["model_config"], ForeignObject) and blob["model_config"].hidden_size == 32
    assert blob["pretraining_vocab_sizes"] == [12] and "encoder.layer_norm.weight" in blob["model_state_dict"]


def test_melp_beat_alignment_prefers_matching_sentences():
    from baselines.melp import beat_alignment, report_sentences

    assert report_sentences("sinus rhythm. normal ecg. ") == ["sinus rhythm", "normal ecg"]
    torch.manual_seed(0)
    queries = torch.randn(3, 4, 8)
    matched = [queries[i, :2] + 0.01 * torch.randn(2, 8) for i in range(3)]  # each report's sentences = its ECG's beats
    shuffled = [matched[1], matched[2], matched[0]]
    t = (4.0, 5.0, 10.0)
    assert beat_alignment(queries, matched, t) < beat_alignment(queries, shuffled, t)
    enc = create_encoder("melp", preset="tiny").train()
    losses = enc.pretraining_losses(torch.randn(3, 12, enc.spec.n_samples), ["a. b", "c", "d. e. f"])
    assert set(losses) == {"rhythm", "beat", "loss"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert enc.proj_contrast.grad is not None and enc.sent_proj.weight.grad is not None


def test_ecg_cpc_loss_scores_the_step_ahead_against_negatives_from_the_same_record():
    """CPCLoss's known answers: predictions equal to the encodings `steps` ahead (one-hot, scaled) give loss ~0 and
    accuracy 1; predictions of zero give log(1 + negatives) per step; negatives never hit the positive."""
    from baselines.ecg_cpc import cpc_loss
    from bench.encoders.randomness import StepRandom

    b, t, steps, k = 3, 12, 2, 5
    encoded = torch.eye(t).expand(b, t, t) * 30.0
    predicted = torch.zeros(b, t, t)
    predicted[:, : t - steps] = torch.eye(t)[steps:] * 30.0  # step i predicts one-hot(i + steps)
    loss, acc = cpc_loss(predicted, encoded, steps, k, StepRandom(0, 0, range(b)))
    assert acc.item() == 1.0 and loss.item() < 1e-6
    loss0, _ = cpc_loss(torch.zeros(b, t, t), encoded, steps, k, StepRandom(0, 0, range(b)))
    assert loss0.item() == pytest.approx((t - steps) * math.log(1 + k), rel=1e-5)
    with pytest.raises(ValueError, match="more than 12 steps"):
        cpc_loss(predicted, encoded, 12, k, StepRandom(0, 0, range(b)))


def _pretraining_losses(enc, x: torch.Tensor, steps: int) -> list[float]:
    """The objective over a few Adam steps on one batch (a working objective goes down)."""
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = enc.pretraining_losses(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_ecg_cpc_pretraining_lowers_its_loss():
    torch.manual_seed(0)
    losses = _pretraining_losses(create_encoder("ecg_cpc", preset="tiny"), torch.randn(8, 12, 2400).cumsum(-1) * 0.05, 15)
    assert losses[-1] < 0.8 * losses[0], losses


def test_heartlang_sentence_is_qrs_tokenizers_words_lead_by_lead():
    """QRSTokenizer's layout on a record with known beats: 12 leads x beats words in lead order, each word centred on its
    QRS (sample 48 = the record at the beat), lead index + 1 and 1 s block + 1, zero padding to 256."""
    import importlib.util

    import numpy as np
    from wfdb import processing

    from baselines.heartlang import qrs_sentence

    spec = importlib.util.spec_from_file_location("synthetic", Path(__file__).parents[1] / "scripts" / "golden" / "synthetic.py")
    synthetic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synthetic)
    record = synthetic.signals(fs=100)[0].astype(np.float64)
    beats = processing.xqrs_detect(sig=record[0], fs=100, verbose=False)
    words, chans, times = qrs_sentence(record, 100, 256, 96, 100)
    n = len(beats)
    assert n >= 8 and words.shape == (256, 96)
    assert chans.tolist() == [lead + 1 for lead in range(12) for _ in range(n)] + [0] * (256 - 12 * n)
    assert times.tolist() == [int(b) // 100 + 1 for _ in range(12) for b in beats] + [0] * (256 - 12 * n)
    for lead in (0, 7):
        for i in range(1, n - 1):
            assert words[lead * n + i, 48] == record[lead, beats[i]]
    assert not words[12 * n:].any()


def test_heartlang_masked_sentence_pretraining_lowers_its_loss():
    torch.manual_seed(0)
    enc = create_encoder("heartlang", preset="tiny")
    t = torch.arange(1000) / 100.0
    beat = torch.exp(-(((t * 1.2) % 1.0 - 0.3) / 0.02) ** 2)
    x = (beat[None, None] * torch.linspace(0.5, 1.5, 12)[None, :, None]).repeat(4, 1, 1) + 0.01 * torch.randn(4, 12, 1000)
    losses = _pretraining_losses(enc, x, 12)
    assert bool(enc.word_std.any()) and losses[-1] < 0.8 * losses[0], losses


def test_heartlang_input_scale_scales_the_words_and_changes_the_embedding_key():
    from bench.encoders.embeddings import embedding_key
    from bench.encoders.loading import load_encoder

    plain = load_encoder("heartlang", {"preset": "tiny"})
    scaled = load_encoder("heartlang", {"preset": "tiny", "input_scale": [0.1, 0.2]})
    assert embedding_key(plain, "p") != embedding_key(scaled, "p")
    t = torch.arange(1000) / 100.0
    x = (torch.exp(-(((t * 1.2) % 1.0 - 0.3) / 0.02) ** 2)[None, None] * torch.ones(1, 12, 1)) + 0.5
    words, chans, _ = plain.encoder.sentences(x)
    words_scaled, chans_scaled, _ = scaled.encoder.sentences(x)
    assert torch.equal(chans, chans_scaled)
    signal = words != 0  # the samples taken from the record (words are zero-padded around them)
    assert signal.sum() > 1000 and torch.equal(signal, words_scaled != 0)
    assert torch.allclose(words_scaled[signal], (words[signal] - 0.1) / 0.2, atol=1e-5)


def test_ecgfounders_single_lead_model_reads_lead_i_with_upstreams_parameter_count(tmp_path):
    """The released 1_lead_ECGFounder.pth as a preset: Net1D with one input channel (30,807,750 parameters, as upstream's
    finetune_model.ft_1lead_ECGFounder builds it), lead I of any 12-lead record; its file form loads strictly."""
    import numpy as np

    from bench.encoders import create_encoder
    from bench.encoders.embed import embed_signals
    from bench.encoders.loading import load_encoder

    enc = create_encoder("ecgfounder", preset="official_1lead")
    assert enc.n_params() == 30_807_750 and enc.spec.leads == ("I",) and enc.contract.leads == ("I",)
    small = create_encoder("ecgfounder", preset="tiny", in_channels=1, leads=["I"])
    torch.save({"state_dict": small.state_dict()}, tmp_path / "1_lead_ECGFounder.pth")
    handle = load_encoder("ecgfounder", {"preset": "tiny", "in_channels": 1, "leads": ["I"]}, tmp_path / "1_lead_ECGFounder.pth")
    t = np.arange(5000) / 500
    x = np.stack([np.stack([np.sin(2 * np.pi * (1 + j) * t) for j in range(12)])] * 2).astype(np.float32)
    y = x.copy()
    y[:, 1:] = 0  # only lead I matters
    a, b = (embed_signals(handle, r, 500)["embedding"] for r in (x, y))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="as many leads as encoder.in_channels"):
        create_encoder("ecgfounder", preset="tiny", in_channels=1)


def test_clef_contrastive_pretraining_lowers_its_loss():
    torch.manual_seed(0)
    t = torch.arange(5000) / 500.0
    beats = torch.stack([torch.exp(-(((t * hr) % 1.0 - 0.3) / 0.02) ** 2) for hr in (0.9, 1.2, 1.6, 2.1)])
    x = (beats + 0.05 * torch.randn(4, 5000))[:, None]
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
    losses = _pretraining_losses(create_encoder("clef", preset="tiny"), x, 30)
    assert losses[-1] < 0.8 * losses[0], losses


def test_clef_reads_its_lightning_file_keeping_only_the_backbone(tmp_path):
    """A released CLEF file names the Net1D ``backbone.*`` beside optimizer and callback states; MoCo/BYOL variants add
    momentum encoders, which are not the embedding path; any other key is refused naming it."""
    from bench.encoders.checkpoint import CheckpointError

    enc = create_encoder("clef", preset="tiny")
    state = {f"backbone.{k}": v for k, v in enc.state_dict().items()}
    momentum = {f"backbone_k.{k}": v + 1 for k, v in enc.state_dict().items()}
    torch.save({"state_dict": {**state, **momentum, "queue": torch.zeros(16, 8)}, "optimizer_states": [], "epoch": 3,
                "callbacks": {"EarlyStopping{'monitor': 'train_loss', 'mode': 'min'}": {"wait_count": 0}}}, tmp_path / "clef.ckpt")
    other = create_encoder("clef", preset="tiny")
    other.load_checkpoint(tmp_path / "clef.ckpt")
    assert all(torch.equal(other.state_dict()[k], v) for k, v in enc.state_dict().items())
    torch.save({"state_dict": {**state, "head.weight": torch.zeros(2, 16)}}, tmp_path / "extra.ckpt")
    with pytest.raises(CheckpointError, match="head.weight"):
        other.load_checkpoint(tmp_path / "extra.ckpt")
