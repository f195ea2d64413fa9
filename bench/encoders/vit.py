"""ST-MEM-style 1-D ViT for 12-lead ECGs: the backbone MERIT ("TinyViT") and the ST-MEM adapter share.

Each lead is cut into non-overlapping patches embedded by one shared patch embedding
(LayerNorm -> Linear -> LayerNorm); tokens get fixed 1-D sin/cos positions and a learnable embedding
per lead; a learnable SEP token stands at both ends of every lead (positions 0 and P+1, whose sin/cos
rows are zero); pre-LayerNorm transformer blocks follow. The global embedding is the mean over the
non-SEP tokens, then LayerNorm.
"""

from __future__ import annotations

from typing import Sequence

import math

import torch
import torch.nn.functional as F
from torch import nn


def sincos_positions(n: int, dim: int, zero_ends: bool = True) -> torch.Tensor:
    """Fixed [n, dim] 1-D sin/cos table; rows 0 and n-1 zeroed for the SEP tokens."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim // 2, dtype=torch.float64) / (dim // 2))
    table = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1).float()
    if zero_ends:
        table[0] = 0
        table[-1] = 0
    return table


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.to_out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(y.transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)); x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Linear(mlp, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ECGViT(nn.Module):
    def __init__(self, n_leads: int = 12, n_samples: int = 1000, patch: int = 50, width: int = 192,
                 depth: int = 12, heads: int = 3, mlp: int = 768):
        super().__init__()
        if n_samples % patch:
            raise ValueError(f"n_samples {n_samples} is not a multiple of patch {patch}")
        self.n_leads, self.patch, self.n_patches, self.width = n_leads, patch, n_samples // patch, width
        self.patch_embed = nn.Sequential(nn.LayerNorm(patch), nn.Linear(patch, width), nn.LayerNorm(width))
        self.register_buffer("pos", sincos_positions(self.n_patches + 2, width), persistent=False)
        self.sep = nn.Parameter(torch.zeros(width))
        self.lead_embed = nn.Parameter(torch.randn(n_leads, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, S] -> [B, L, P, patch]."""
        b, l, s = x.shape
        return x.reshape(b, l, self.n_patches, self.patch)

    def forward_tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None, leads: Sequence[int] | None = None) -> torch.Tensor:
        """Encode visible patches: ``keep`` [B, L, k] patch indices per lead (None = all); ``leads``: which of the
        ``n_leads`` lead embeddings the L leads of ``x`` take (None: all, in order; a native lead subset).

        Returns [B, L, k + 2, W] block outputs, SEP tokens at positions 0 and -1 of every lead.
        """
        tokens = self.patch_embed(self.patchify(x)) + self.pos[1:-1]  # [B, L, P, W]
        if keep is not None:
            tokens = torch.gather(tokens, 2, keep[..., None].expand(-1, -1, -1, self.width))
        b, l, k, w = tokens.shape
        sep = self.sep.expand(b, l, 1, w)
        lead_embed = self.lead_embed if leads is None else self.lead_embed[list(leads)]
        seq = torch.cat([sep + self.pos[0], tokens, sep + self.pos[-1]], dim=2) + lead_embed[None, :, None]
        h = seq.reshape(b, l * (k + 2), w)
        for blk in self.blocks:
            h = blk(h)
        return h.reshape(b, l, k + 2, w)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean over non-SEP tokens, then LayerNorm: [B, L, k+2, W] -> [B, W]."""
        return self.norm(tokens[:, :, 1:-1].mean(dim=(1, 2)))

    def forward(self, x: torch.Tensor, leads: Sequence[int] | None = None) -> torch.Tensor:
        return self.pool(self.forward_tokens(x, leads=leads))


def random_keep(noise: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatio-temporal masking from uniform ``noise`` [B, L, P]: each lead masked independently at ``ratio``.

    Returns (keep [B, L, k] sorted visible indices, mask [B, L, P] with 1 = masked).
    """
    n_patches = noise.shape[-1]
    k = max(1, int(round(n_patches * (1 - ratio))))
    keep = noise.argsort(dim=-1)[..., :k].sort(dim=-1).values
    mask = torch.ones_like(noise)
    mask.scatter_(-1, keep, 0.0)
    return keep, mask


class MaskedDecoder(nn.Module):
    """Light transformer decoder: re-inserts a learned mask token and reconstructs every patch, per lead."""

    def __init__(self, enc_width: int, n_leads: int, n_patches: int, patch: int, width: int = 256,
                 depth: int = 4, heads: int = 4, mlp: int | None = None):
        super().__init__()
        self.n_patches, self.width = n_patches, width
        self.embed = nn.Linear(enc_width, width)
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("pos", sincos_positions(n_patches + 2, width)[1:-1], persistent=False)
        self.lead_embed = nn.Parameter(torch.randn(n_leads, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp or 4 * width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch)

    def forward(self, visible: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """visible [B, L, k, W_enc] (SEP removed), keep [B, L, k] -> predicted patches [B, L, P, patch]."""
        b, l, k, _ = visible.shape
        full = self.mask_token.expand(b, l, self.n_patches, self.width).clone()
        full.scatter_(2, keep[..., None].expand(-1, -1, -1, self.width), self.embed(visible))
        h = (full + self.pos + self.lead_embed[None, :, None]).reshape(b * l, self.n_patches, self.width)
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.norm(h)).reshape(b, l, self.n_patches, -1)
