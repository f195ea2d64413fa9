"""MERL (Liu et al., ICML 2024; cheliu-computation/MERL-ICML2024) behind the Encoder interface.

ECG encoder ``vit_tiny``: Conv1d(12 -> 192, kernel = stride = 50, no bias) over all leads, learnable
positions (1, 100, 192) for 10 s at 500 Hz, 12 pre-LN blocks (3 heads x 64, MLP 768), mean over
tokens then LayerNorm (5.47M parameters). Text tower MedCPT-Query-Encoder (frozen); projections
ECG Linear(w->256)-BN-ReLU-Linear(256)-BN, text Linear(768->256)-GELU-Linear(256), L2-normalised.
Objective: CMA (symmetric InfoNCE, T = 0.07) + UMA (the same loss between two dropout-0.1 views of
the ECG embedding through ``linear1`` / ``linear2``). Preprocessing: min-max of the whole record to
[0, 1], no filtering (NaN/Inf handled by the shared pipeline).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.keys import VIT_BLOCK_RULES, rename, strip_prefix, unwrap
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.losses import info_nce
from bench.encoders.randomness import StepRandom
from bench.encoders.vit import Block
from merit.text import build_text_tower

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(width=192, depth=12, heads=3, mlp=768, patch=50, fs=500.0, n_samples=5000, proj_dim=256,
                     text={"kind": "medcpt", "frozen": True}),
    "cpu_small": dict(width=96, depth=4, heads=3, mlp=384, patch=10, fs=100.0, n_samples=1000, proj_dim=128,
                      text={"kind": "minilm", "frozen": True}),
    "tiny": dict(width=32, depth=1, heads=2, mlp=64, patch=50, fs=100.0, n_samples=1000, proj_dim=32,
                 text={"kind": "hashing", "frozen": False, "dim": 32}),
}
DEFAULTS = dict(temperature=0.07, uma_dropout=0.1)


class ConvPatchViT(nn.Module):
    def __init__(self, n_leads: int, n_samples: int, patch: int, width: int, depth: int, heads: int, mlp: int):
        super().__init__()
        self.to_patch_embedding = nn.Conv1d(n_leads, width, kernel_size=patch, stride=patch, bias=False)
        self.pos_embedding = nn.Parameter(torch.randn(1, n_samples // patch, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        h = self.to_patch_embedding(x).transpose(1, 2) + self.pos_embedding
        for blk in self.blocks:
            h = blk(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.tokens(x).mean(1))


class MERL(Encoder):
    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        self.preset, self.config = preset, resolve_preset("MERL", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        self.ecg_encoder = ConvPatchViT(12, c["n_samples"], c["patch"], c["width"], c["depth"], c["heads"], c["mlp"])
        p = c["proj_dim"]
        self.linear1 = nn.Linear(c["width"], p, bias=False)
        self.linear2 = nn.Linear(c["width"], p, bias=False)
        self.text_tower = build_text_tower(**c["text"])
        self.proj_e = self.proj_t = None
        if self.text_tower is not None:
            self.proj_e = nn.Sequential(nn.Linear(c["width"], p), nn.BatchNorm1d(p), nn.ReLU(inplace=True),
                                        nn.Linear(p, p), nn.BatchNorm1d(p))
            self.proj_t = nn.Sequential(nn.Linear(self.text_tower.dim, p), nn.GELU(), nn.Linear(p, p))

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("merl", c["width"], c["fs"], c["n_samples"], has_text_tower=self.text_tower is not None,
                           normalisation="min-max of the whole record to [0, 1]",
                           n_params=sum(q.numel() for q in self.ecg_encoder.parameters()), extra={"preset": self.preset})

    def normalise(self, x: torch.Tensor, units: str = "mV") -> torch.Tensor:
        lo = x.amin(dim=(1, 2), keepdim=True)
        hi = x.amax(dim=(1, 2), keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-8)

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        emb, z = self.encode_pair(x)
        if aligned and z is None:
            raise NotImplementedError("this MERL has no text tower (encoder.text.kind=none)")
        return z if aligned else emb

    def encode_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb = self.ecg_encoder(x)
        if self.proj_e is None:
            return emb, None
        return emb, F.normalize(self.proj_e(emb), dim=-1)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.ecg_encoder.norm(self.ecg_encoder.tokens(x))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        if self.text_tower is None:
            return super().encode_text(texts)
        return F.normalize(self.proj_t(self.text_tower(texts)), dim=-1)

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        if self.text_tower is None:
            raise ValueError("MERL pretraining aligns ECGs with reports: it needs a text tower (encoder.text.kind)")
        emb = self.ecg_encoder(x)
        t = self.config["temperature"]
        cma = info_nce(self.proj_e(emb), self.proj_t(self.text_tower(texts)), t)
        drop = self.config["uma_dropout"]
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        uma = info_nce(self.linear1(rng.dropout(emb, drop, self.training)), self.linear2(rng.dropout(emb, drop, self.training)), t)
        return {"cma": cma, "uma": uma, "loss": cma + uma}

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        state = unwrap(state)
        if any(k.startswith("ecg_encoder.") for k in state) and not any(k.startswith("ecg_encoder.blocks.") for k in state):
            enc = {k[len("ecg_encoder."):]: v for k, v in state.items() if k.startswith("ecg_encoder.")}
            rest = {k: v for k, v in state.items() if not k.startswith(("ecg_encoder.", "lm_model."))}  # lm_model: MedCPT, own files
            return {**rename(enc, VIT_BLOCK_RULES, prefix="ecg_encoder.", ignore=("head.",)), **rest}
        if "to_patch_embedding.weight" in state:  # bare *_encoder.pth
            return rename(strip_prefix(state, "module."), VIT_BLOCK_RULES, prefix="ecg_encoder.", ignore=("head.",))
        return dict(state)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        frozen = self.text_tower is not None and self.text_tower.frozen
        return {k: v for k, v in self.state_dict().items() if not (frozen and k.startswith("text_tower."))}


def build_merl(**config: Any) -> MERL:
    return MERL(**config)
