"""ECG-JEPA (Kim, 2024; sehunfromdaegu/ECG_JEPA) behind the Encoder interface, re-implemented from its facts
(ecg_jepa.py, models.py, pos_encoding.py, ecg_data.py, pretrain_ECG_JEPA.py). Not the different model of
kweimann/ECG-JEPA: that one is not adapted here and must not share this name.

Encoder (``MaskTransformer``): each lead's signal is cut into ``p`` patches of ``t`` samples, embedded by one
linear layer ``W_P``; a fixed 2-D sin/cos table over (patch, lead) is added before *every* block; pre-LN blocks
without qkv bias whose attention is restricted by the cross-attention mask (a token sees the tokens of its own
lead and the tokens at its own time patch); a final LayerNorm. The representation is the mean over all tokens
(``MaskTransformer.representation``).

Input contract of its evaluation path (ecg_data.waves_ptbxl, linear_eval.py): 500 Hz records of 10 s resampled
to 2,500 samples (250 Hz) with ``scipy.signal.resample``, the eight leads I, II, V1-V6, no scaling.

Pretraining (``ecg_jepa.forward``): a time-patch mask shared by the batch and by every lead (multi-block: four
blocks each covering 17.5-22.5 % of the patches); the target encoder (an EMA of the context encoder, momentum
0.996 -> 1 in upstream, fixed ``ema`` here) encodes the whole record, its outputs layer-normed; the context
encoder sees the visible patches only; a narrower predictor, fed the context plus mask tokens at the masked
positions, regresses the targets at the masked patches with a smooth-L1 loss. The released file is
``{'encoder': context-encoder state, 'epoch'}``.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.contract import InputContract
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.randomness import StepRandom

JEPA_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
PRESETS: dict[str, dict[str, Any]] = {
    # models.load_encoder / pretrain_ECG_JEPA.py
    # ecg_data.get_ecg_data: the first 5,000 samples at 500 Hz, then downsample_waves (FFT) to 2,500
    "official": dict(width=768, depth=12, heads=16, pred_width=384, pred_depth=6, pred_heads=12, patches=50, patch=50,
                     fs=250.0, n_samples=2500, crop_fs=500.0),
    # 0.2 s patches at 100 Hz, a quarter of the width: the CPU benchmark's budget
    "cpu_small": dict(width=128, depth=4, heads=4, pred_width=64, pred_depth=2, pred_heads=4, patches=50, patch=20,
                      fs=100.0, n_samples=1000),
    "tiny": dict(width=32, depth=1, heads=2, pred_width=16, pred_depth=1, pred_heads=2, patches=10, patch=20, fs=100.0,
                 n_samples=200),
}
DEFAULTS = dict(mlp_ratio=4.0, mask_scale=[0.175, 0.225], mask_blocks=4, ema=0.996, text=None, crop_fs=None)


def sincos_2d(dim: int, rows: int, cols: int) -> torch.Tensor:
    """pos_encoding.get_2d_sincos_pos_embed(dim, rows, cols): [rows * cols, dim], the first half encoding the
    column (patch) index, the second half the row (lead) index."""
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=float) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    col, row = np.meshgrid(np.arange(cols, dtype=float), np.arange(rows, dtype=float))
    return torch.from_numpy(np.concatenate([one_d(dim // 2, col), one_d(dim // 2, row)], axis=1)).float()


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), allowed)
        return x + self.mlp(self.norm2(x))


class Blocks(nn.Module):
    """Blocks that each add the positions to their input (Encoder_Block / Predictor_Block)."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor, pos: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos, allowed)
        return x


class MaskTransformer(nn.Module):
    def __init__(self, leads: int, patches: int, patch: int, width: int, depth: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.c, self.p, self.t = leads, patches, patch
        self.W_P = nn.Linear(patch, width)
        self.pos_embed = nn.Parameter(sincos_2d(width, leads, patches), requires_grad=False)
        self.encoder_blocks = Blocks(width, depth, heads, mlp_ratio)
        self.norm = nn.LayerNorm(width)
        lead = torch.arange(leads).repeat_interleave(patches)
        when = torch.arange(patches).repeat(leads)
        self.register_buffer("allowed", (lead[:, None] == lead[None]) | (when[:, None] == when[None]), persistent=False)

    def forward(self, x: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """[B, leads, samples] -> tokens [B, leads * patches', width] (``visible``: [p] bool, patches kept)."""
        b = x.shape[0]
        tokens = self.W_P(x.reshape(b, self.c * self.p, self.t))
        pos, allowed = self.pos_embed[None], self.allowed
        if visible is not None:
            keep = visible.repeat(self.c)
            tokens, pos, allowed = tokens[:, keep], pos[:, keep], allowed[keep][:, keep]
        return self.norm(self.encoder_blocks(tokens, pos, allowed))


class Predictor(nn.Module):
    def __init__(self, leads: int, patches: int, width: int, pred_width: int, depth: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.c, self.p = leads, patches
        self.predictor_embed = nn.Linear(width, pred_width)
        self.mask_token = nn.Parameter(torch.randn(1, 1, pred_width) * 0.02)
        self.pos_embed = nn.Parameter(sincos_2d(pred_width, 1, patches), requires_grad=False)
        self.predictor_blocks = Blocks(pred_width, depth, heads, mlp_ratio)
        self.predictor_norm = nn.LayerNorm(pred_width)
        self.predictor_proj = nn.Linear(pred_width, width)

    def forward(self, context: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Context tokens [B, leads * visible, width] -> predictions at the masked patches [B, leads * masked, width]."""
        b, n_masked = context.shape[0], int(masked.sum())
        x = self.predictor_embed(context).reshape(b * self.c, -1, self.predictor_embed.out_features)
        x = torch.cat([x, self.mask_token.expand(x.shape[0], n_masked, -1)], dim=1)
        order = torch.cat([(~masked).nonzero()[:, 0], masked.nonzero()[:, 0]])
        x = self.predictor_proj(self.predictor_norm(self.predictor_blocks(x, self.pos_embed[order][None])))
        return x[:, -n_masked:].reshape(b, -1, x.shape[-1])


class ECGJEPA(Encoder):
    pretraining_only = ("target_encoder.", "predictor.")

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        overrides.pop("text", None)  # no text tower
        self.preset, self.config = preset, resolve_preset("ECG-JEPA", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        if c["patches"] * c["patch"] != c["n_samples"]:
            raise ValueError(f"ECG-JEPA: patches x patch ({c['patches']} x {c['patch']}) must equal n_samples {c['n_samples']}")
        leads = len(JEPA_LEADS)
        self.encoder = MaskTransformer(leads, c["patches"], c["patch"], c["width"], c["depth"], c["heads"], c["mlp_ratio"])
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = Predictor(leads, c["patches"], c["width"], c["pred_width"], c["pred_depth"], c["pred_heads"], c["mlp_ratio"])
        self._contract = InputContract(c["fs"], c["n_samples"], leads=JEPA_LEADS, resample="fft", crop_fs=c["crop_fs"],
                                       notes="ECG-JEPA ecg_data: the first 10 s at 500 Hz, scipy.signal.resample to 2,500 "
                                             "samples, leads I, II, V1-V6, raw millivolts")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("ecgjepa", c["width"], c["fs"], c["n_samples"], leads=JEPA_LEADS, n_params=self.n_params(),
                           extra={"preset": self.preset},
                           contract=self._contract)

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("ECG-JEPA has no text tower")
        return self.encoder(x).mean(1)  # MaskTransformer.representation

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def n_params(self) -> int:
        """The released encoder's parameters (the EMA target and the predictor are pretraining machinery)."""
        return sum(p.numel() for p in self.encoder.parameters())

    def _time_mask(self, rng: StepRandom) -> torch.Tensor:
        """Multi-block mask over time patches, one draw per global batch (ecg_jepa._make_block_mask)."""
        c, p = self.config, self.config["patches"]
        lo, hi = c["mask_scale"]
        masked = torch.zeros(p, dtype=torch.bool)
        for _ in range(c["mask_blocks"]):
            n = int(p * (lo + (hi - lo) * rng.batch_randint(0, 1 << 20) / (1 << 20)))
            start = rng.batch_randint(0, p - n)
            masked[start:start + n] = True
        return masked

    @torch.no_grad()
    def _update_target(self) -> None:
        m = self.config["ema"]
        for online, target in zip(self.encoder.parameters(), self.target_encoder.parameters()):
            target.mul_(m).add_(online.detach(), alpha=1 - m)

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        """Latent prediction of the masked patches (the EMA target follows the weights of the previous step)."""
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        if self.training:
            self._update_target()
        masked = self._time_mask(rng).to(x.device)
        b, c, p = x.shape[0], len(JEPA_LEADS), self.config["patches"]
        with torch.no_grad():
            h = self.target_encoder(x)
            h = F.layer_norm(h, h.shape[-1:]).reshape(b, c, p, -1)[:, :, masked].reshape(b, -1, h.shape[-1])
        z = self.predictor(self.encoder(x, ~masked), masked)
        loss = F.smooth_l1_loss(z, h)
        return {"latent_prediction": loss, "loss": loss}

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(state.get("encoder"), Mapping):  # the released {'encoder': state, 'epoch'}
            state = state["encoder"]
        if any(k.startswith("encoder.") for k in state):
            return dict(state)
        return {"encoder." + k: v for k, v in state.items()}

    def missing_hint(self, missing: list[str]) -> str:
        return "pass an ECG-JEPA file ({'encoder': MaskTransformer state, 'epoch'}) with encoder.preset=official"


def build_ecgjepa(**config: Any) -> ECGJEPA:
    return ECGJEPA(**config)
