"""MERIT and its ablations as one model whose objective is selected by config.

- ``merit``     = L_CMA + L_MSE (no trade-off weight, paper Eq. 7)
- ``merit_mse`` = masked reconstruction only
- ``merit_cma`` = symmetric InfoNCE only
- ``merit_ib``  = InfoNCE + beta * (1 - cos(z_e, z_t)) (Eq. 9)
- ``random``    = the same encoder architecture, untrained (a control)

Both branches share one ECG encoder pass over the visible patches (spatio-temporal masking): the
decoder reconstructs the masked patches; the visible tokens' mean (after LayerNorm) goes through a
projection head and is aligned with the projected report embedding. Terms an objective does not use
are not computed, so their modules get no gradient.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from bench.data.contract import InputContract
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.losses import ib_term, info_nce, masked_mse
from merit.text import build_text_tower
from bench.encoders.randomness import StepRandom
from bench.encoders.vit import ECGViT, MaskedDecoder, random_keep

OBJECTIVES = {
    "merit": ("mse", "cma"),
    "merit_mse": ("mse",),
    "merit_cma": ("cma",),
    "merit_ib": ("cma", "ib"),
    "random": (),
}

# Presets are data (timm style). Input: 12 leads, 100 Hz, 10 s (the paper resamples everything to 100 Hz).
PRESETS: dict[str, dict[str, Any]] = {
    # ViT-tiny as in the paper; decoder as ST-MEM (256 wide, 4 blocks, 4 heads)
    "paper": dict(patch=50, width=192, depth=12, heads=3, mlp=768, dec_width=256, dec_depth=4, dec_heads=4,
                  proj_dim=256, text={"kind": "medcpt", "frozen": True}),
    # trains in minutes on a 2-core CPU
    "cpu_small": dict(patch=50, width=96, depth=4, heads=3, mlp=384, dec_width=96, dec_depth=2, dec_heads=3,
                      proj_dim=128, text={"kind": "minilm", "frozen": True}),
    # for unit tests: seconds, offline, trainable hashing text tower
    "tiny": dict(patch=100, width=32, depth=2, heads=2, mlp=64, dec_width=32, dec_depth=1, dec_heads=2,
                 proj_dim=32, text={"kind": "hashing", "frozen": False, "dim": 32}),
}
DEFAULTS = dict(n_leads=12, fs=100.0, n_samples=1000, mask_ratio=0.75, normalise_target=False,
                temperature=0.07, learn_temperature=False, beta=1.0)


class MERIT(Encoder):
    def __init__(self, objective: str = "merit", preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown MERIT objective '{objective}'; choose from {sorted(OBJECTIVES)}")
        cfg = resolve_preset("MERIT", PRESETS, preset, overrides, DEFAULTS)
        self.objective, self.preset, self.config = objective, preset, cfg
        self.terms = OBJECTIVES[objective]
        self.name = objective
        self.requires_pretraining = bool(self.terms)
        self.encoder = ECGViT(cfg["n_leads"], cfg["n_samples"], cfg["patch"], cfg["width"], cfg["depth"], cfg["heads"], cfg["mlp"])
        self.decoder = (MaskedDecoder(cfg["width"], cfg["n_leads"], self.encoder.n_patches, cfg["patch"], cfg["dec_width"],
                                      cfg["dec_depth"], cfg["dec_heads"]) if "mse" in self.terms else None)
        self.text_tower = self.ecg_proj = self.text_proj = None
        if "cma" in self.terms:
            self.text_tower = build_text_tower(**cfg["text"])
            if self.text_tower is None:
                raise ValueError(f"objective '{objective}' aligns ECGs with text: it needs a text tower (encoder.text.kind)")
            self.ecg_proj = nn.Sequential(nn.Linear(cfg["width"], cfg["proj_dim"]), nn.GELU(), nn.Linear(cfg["proj_dim"], cfg["proj_dim"]))
            self.text_proj = nn.Sequential(nn.Linear(self.text_tower.dim, cfg["proj_dim"]), nn.GELU(), nn.Linear(cfg["proj_dim"], cfg["proj_dim"]))
        log_t = torch.tensor(math.log(cfg["temperature"]))
        if cfg["learn_temperature"]:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec(self.name or self.objective, c["width"], c["fs"], c["n_samples"], has_text_tower="cma" in self.terms,
                           n_params=sum(p.numel() for p in self.encoder.parameters()),
                           extra={"preset": self.preset, "objective": self.objective},
                           contract=InputContract(c["fs"], c["n_samples"], scale="zscore_lead_eps"))

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        pooled = self.encoder(x)
        if not aligned:
            return pooled
        if self.ecg_proj is None:
            raise NotImplementedError(f"encoder '{self.name}' has no aligned ECG-text space")
        return self.ecg_proj(pooled)

    def encode_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = self.encoder(x)
        return pooled, (self.ecg_proj(pooled) if self.ecg_proj is not None else None)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.forward_tokens(x)[:, :, 1:-1]
        return self.encoder.norm(tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        if self.text_tower is None:
            return super().encode_text(texts)
        return self.text_proj(self.text_tower(texts))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        """One step's loss terms on a normalised batch; ``loss`` is their plain sum."""
        if not self.terms:
            raise RuntimeError("the 'random' control is not trained")
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        keep, mask = random_keep(rng.rand(self.encoder.n_leads, self.encoder.n_patches), self.config["mask_ratio"])
        tokens = self.encoder.forward_tokens(x, keep)
        out: dict[str, torch.Tensor] = {}
        if "mse" in self.terms:
            pred = self.decoder(self.encoder.norm(tokens[:, :, 1:-1]), keep)
            out["mse"] = masked_mse(pred, self.encoder.patchify(x), mask, self.config["normalise_target"])
        if "cma" in self.terms:
            if texts is None:
                raise ValueError(f"objective '{self.objective}' needs the report texts of the batch")
            z_e = self.ecg_proj(self.encoder.pool(tokens))
            z_t = self.encode_text(texts)
            out["cma"] = info_nce(z_e, z_t, self.temperature)
            if "ib" in self.terms:
                out["ib"] = ib_term(z_e, z_t, self.config["beta"])
        out["loss"] = sum(out.values())
        return out

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """Everything but a frozen pretrained text tower (it is rebuilt from its own files)."""
        frozen = self.text_tower is not None and self.text_tower.frozen
        return {k: v for k, v in self.state_dict().items() if not (frozen and k.startswith("text_tower."))}


def _factory(objective: str):
    def build(**config: Any) -> MERIT:
        return MERIT(objective=objective, **config)

    build.__name__ = f"build_{objective}"
    build.__doc__ = f"MERIT encoder trained with the '{objective}' objective."
    return build


build_merit = _factory("merit")
build_merit_mse = _factory("merit_mse")
build_merit_cma = _factory("merit_cma")
build_merit_ib = _factory("merit_ib")
build_random = _factory("random")
