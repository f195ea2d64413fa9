"""Baseline adapters: official parameter counts, official-key checkpoints (strict loading), and equality
with a functional reference forward written directly on the official keys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.encoders import create_encoder
from bench.encoders.checkpoint import CheckpointError

OFFICIAL = {"stmem": 85.15e6, "merl": 5.47e6, "d_beta": 62.02e6, "ecg_fm": 90.37e6}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_parameter_counts(name):
    enc = create_encoder(name, preset="official", **({"text": {"kind": "none"}} if name in ("merl", "d_beta") else {}))
    assert abs(enc.spec.n_params - OFFICIAL[name]) / OFFICIAL[name] < 0.005, enc.spec.n_params


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


def stmem_official(w=64, depth=2, mlp=128, patch=75, n=30):
    shapes = {"pos_embedding": (1, n + 2, w), "sep_embedding": (w,), **{f"lead_embeddings.{i}": (w,) for i in range(12)},
              "to_patch_embedding.1.weight": (patch,), "to_patch_embedding.1.bias": (patch,),
              "to_patch_embedding.2.weight": (w, patch), "to_patch_embedding.2.bias": (w,),
              "to_patch_embedding.3.weight": (w,), "to_patch_embedding.3.bias": (w,), "norm.weight": (w,), "norm.bias": (w,)}
    for i in range(depth):
        shapes.update(_vit_block_shapes("", i, w, mlp))
    return _rand(shapes)


def stmem_ref(s, crop, heads, depth):
    b, leads, _ = crop.shape
    w = s["norm.weight"].shape[0]
    p = crop.reshape(b, leads, -1, 75)
    p = F.layer_norm(p, (75,), s["to_patch_embedding.1.weight"], s["to_patch_embedding.1.bias"])
    p = F.linear(p, s["to_patch_embedding.2.weight"], s["to_patch_embedding.2.bias"])
    p = F.layer_norm(p, (w,), s["to_patch_embedding.3.weight"], s["to_patch_embedding.3.bias"])
    pos = s["pos_embedding"][0]
    seqs = []
    for lead in range(leads):
        tok = torch.cat([(s["sep_embedding"] + pos[0])[None].expand(b, 1, w), p[:, lead] + pos[1:-1],
                         (s["sep_embedding"] + pos[-1])[None].expand(b, 1, w)], 1) + s[f"lead_embeddings.{lead}"]
        seqs.append(tok)
    x = torch.cat(seqs, 1)
    for i in range(depth):
        x = _vit_block_ref(s, f"block{i}", x, heads)
    x = x.reshape(b, leads, -1, w)[:, :, 1:-1].mean(dim=(1, 2))
    return F.layer_norm(x, (w,), s["norm.weight"], s["norm.bias"])


def test_stmem_official_keys_load_and_match_reference(tmp_path):
    state = stmem_official()
    torch.save({"epoch": 800, "model": state}, tmp_path / "encoder.pth")
    enc = create_encoder("stmem", preset="tiny", width=64, depth=2, heads=4, mlp=128).eval()
    enc.load_checkpoint(tmp_path / "encoder.pth")  # strict: no missing / unexpected keys
    x = torch.randn(2, 12, 2500)
    with torch.no_grad():
        ours = enc.encode_ecg(x)
        ref = torch.stack([stmem_ref(state, x[..., s:s + 2250], 4, 2) for s in (0, 125, 250)]).mean(0)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    torch.save({"model": {f"encoder.{k}": v for k, v in state.items()}}, tmp_path / "full.pth")  # full-model file
    enc.load_checkpoint(tmp_path / "full.pth")


def merl_official(w=48, depth=2, mlp=96, patch=50, n=100):
    shapes = {"to_patch_embedding.weight": (w, 12, patch), "pos_embedding": (1, n, w), "norm.weight": (w,), "norm.bias": (w,)}
    for i in range(depth):
        shapes.update(_vit_block_shapes("", i, w, mlp))
    return _rand(shapes, seed=1)


def test_merl_encoder_and_final_total_files(tmp_path):
    state = merl_official()
    torch.save(state, tmp_path / "merl_encoder.pth")
    enc = create_encoder("merl", preset="tiny", width=48, depth=2, heads=3, mlp=96, fs=500.0, n_samples=5000,
                         text={"kind": "none"}).eval()
    enc.load_checkpoint(tmp_path / "merl_encoder.pth", strict=False)  # bare encoder: heads keep their init
    x = torch.rand(2, 12, 5000)
    with torch.no_grad():
        ours = enc.encode_ecg(x)
        h = F.conv1d(x, state["to_patch_embedding.weight"], stride=50).transpose(1, 2) + state["pos_embedding"]
        for i in range(2):
            h = _vit_block_ref(state, f"block{i}", h, 3)
        ref = F.layer_norm(h.mean(1), (48,), state["norm.weight"], state["norm.bias"])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    total = {f"ecg_encoder.{k}": v for k, v in state.items()}
    total.update({"linear1.weight": torch.randn(32, 48), "linear2.weight": torch.randn(32, 48),
                  "lm_model.embeddings.word_embeddings.weight": torch.randn(10, 8)})
    torch.save(total, tmp_path / "final_total.pth")
    enc.load_checkpoint(tmp_path / "final_total.pth")  # strict; lm_model (MedCPT) comes from its own files


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
    with torch.no_grad():
        ours = enc.encode_ecg(x)
        ref = torch.stack([w2v_ref(state, "", x[..., i * 500:(i + 1) * 500], 4, 2, 8, 2).mean(1) for i in range(2)]).mean(0)
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
        torch.testing.assert_close(enc2.encode_ecg(x), ours)


def test_d_beta_official_keys_and_cls_pooling(tmp_path):
    state = w2v_official("ecg_encoder.")
    state.update({"class_embedding": torch.rand(64), "multi_modal_ecg_proj.weight": torch.randn(64, 64) / 8,
                  "multi_modal_ecg_proj.bias": torch.zeros(64), "unimodal_ecg_pooler.dense.weight": torch.randn(64, 64) / 8,
                  "unimodal_ecg_pooler.dense.bias": torch.zeros(64), "language_encoder.shared.weight": torch.randn(10, 8),
                  "mlm_head.bias": torch.zeros(10), "itm_head.fc.weight": torch.randn(2, 128)})
    torch.save({"model": state}, tmp_path / "dbeta.pt")
    enc = create_encoder("d_beta", preset="tiny", text={"kind": "none"}, **SMALL_W2V).eval()
    enc.load_checkpoint(tmp_path / "dbeta.pt", strict=False)  # its own MIM decoder is not in the official file
    not_loaded = [k for k in enc.checkpoint_state() if not k.startswith("mim_") and k not in state]
    assert not_loaded == [], "every encoder weight must come from the official file"
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        h = w2v_ref(state, "ecg_encoder.", x, 4, 2, 8, 2, cls=state["class_embedding"])
        h = F.linear(h, state["multi_modal_ecg_proj.weight"], state["multi_modal_ecg_proj.bias"])
        ref = torch.tanh(F.linear(h[:, 0], state["unimodal_ecg_pooler.dense.weight"], state["unimodal_ecg_pooler.dense.bias"]))
        torch.testing.assert_close(enc.encode_ecg(x), ref, atol=1e-4, rtol=1e-4)


def test_wrong_file_lists_offending_keys(tmp_path):
    state = stmem_official()
    state["block0.attn.fn.to_qkv.weight"] = torch.zeros(5, 5)
    state["head.fc.weight"] = torch.zeros(3, 64)
    del state["norm.bias"]
    torch.save({"model": state}, tmp_path / "bad.pth")
    enc = create_encoder("stmem", preset="tiny", width=64, depth=2, heads=4, mlp=128)
    with pytest.raises(CheckpointError) as err:
        enc.load_checkpoint(tmp_path / "bad.pth")
    msg = str(err.value)
    assert "bad.pth" in msg and "encoder.blocks.0.attn.to_qkv.weight (checkpoint (5, 5), model (192, 64))" in msg
    assert "missing keys: encoder.norm.bias" in msg


def test_zero_shot_capability_in_listing():
    assert create_encoder("merl", preset="tiny").spec.has_text_tower
    assert create_encoder("d_beta", preset="tiny").spec.has_text_tower
    assert not create_encoder("merl", preset="tiny", text={"kind": "none"}).spec.has_text_tower
    assert not create_encoder("stmem", preset="tiny").spec.has_text_tower
    assert not create_encoder("ecg_fm", preset="tiny").spec.has_text_tower
