"""The wav2vec2-style ECG backbone that D-BETA and ECG-FM (fairseq-signals) share.

Convolutional feature extractor (Conv1d layers, GroupNorm on the first, GELU) -> LayerNorm ->
Linear to the model width -> plus a convolutional positional encoding (grouped Conv1d with weight
norm over the kernel dimension, "same" padding, GELU) -> LayerNorm -> post-LN transformer layers
(q/k/v/out projections, fc1/fc2 with GELU). Module names follow the official layout, so official
state dicts need only prefix handling.
"""

from __future__ import annotations

import math

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from baselines.keys import WEIGHT_NORM_RULES, rename

# fairseq-signals wav2vec 2.0 keys that only pretraining or a classifier reads (quantiser, targets, heads, mask token)
FAIRSEQ_PRETRAINING_KEYS = ("quantizer.", "project_q.", "final_proj.", "proj.", "project_inp.", "target_glu.",
                            "layer_norm_target.", "mask_emb")


def backbone_from_fairseq(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A fairseq-signals Wav2Vec2(CMSC)Model state as W2VBackbone keys under ``prefix`` (pretraining keys dropped)."""
    return rename(state, WEIGHT_NORM_RULES, prefix=prefix, ignore=FAIRSEQ_PRETRAINING_KEYS)


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d whose weight is g * v / ||v||, the norm taken over all dims but the kernel (dim=2)."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        v = torch.randn(channels, channels // groups, kernel) * math.sqrt(4.0 / (kernel * channels))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)
        return F.conv1d(x, w, self.bias, padding=self.kernel // 2, groups=self.groups)


class SamePad(nn.Module):
    def __init__(self, kernel: int):
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :-self.remove] if self.remove else x


class ConvPositionalEncoding(nn.Module):
    def __init__(self, width: int, kernel: int, groups: int):
        super().__init__()
        self.pos_conv = nn.Sequential(WeightNormConv1d(width, kernel, groups), SamePad(kernel), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, T, D]
        return self.pos_conv(x.transpose(1, 2)).transpose(1, 2)


class FeatureExtractor(nn.Module):
    def __init__(self, in_leads: int, layers: list[tuple[int, int, int]]):
        super().__init__()
        self.conv_layers = nn.ModuleList()
        c_in = in_leads
        for i, (dim, k, stride) in enumerate(layers):
            parts = [nn.Conv1d(c_in, dim, k, stride=stride, bias=False), nn.Identity()]
            if i == 0:
                parts.append(nn.GroupNorm(dim, dim, affine=True))
            parts.append(nn.GELU())
            self.conv_layers.append(nn.Sequential(*parts))
            c_in = dim
        self.stride = math.prod(s for _, _, s in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, leads, S] -> [B, C, T]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        split = lambda t: t.view(b, n, self.heads, w // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(y.transpose(1, 2).reshape(b, n, w))


class PostLNLayer(nn.Module):
    """x = LN(x + Attn(x)); x = LN(x + fc2(GELU(fc1(x)))) (dropout 0.1 in training, as the originals)."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = SelfAttention(width, heads)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, ffn), nn.Linear(ffn, width)
        self.final_layer_norm = nn.LayerNorm(width)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        x = self.self_attn_layer_norm(x + F.dropout(self.self_attn(x), p))
        h = F.dropout(F.gelu(self.fc1(x)), p)
        return self.final_layer_norm(x + F.dropout(self.fc2(h), p))


class TransformerStack(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, ffn: int):
        super().__init__()
        self.layers = nn.ModuleList(PostLNLayer(width, heads, ffn) for _ in range(depth))
        self.layer_norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x)  # post-LN stacks normalise the input once, before the layers
        for layer in self.layers:
            x = layer(x)
        return x


class W2VBackbone(nn.Module):
    def __init__(self, in_leads: int = 12, conv_layers: list[tuple[int, int, int]] | None = None, width: int = 768,
                 depth: int = 12, heads: int = 12, ffn: int = 3072, conv_pos: int = 128, conv_pos_groups: int = 16):
        super().__init__()
        conv_layers = conv_layers or [(256, 2, 2)] * 4
        self.feature_extractor = FeatureExtractor(in_leads, conv_layers)
        c = conv_layers[-1][0]
        self.layer_norm = nn.LayerNorm(c)
        self.post_extract_proj = nn.Linear(c, width) if c != width else None
        self.conv_pos = ConvPositionalEncoding(width, conv_pos, conv_pos_groups)
        self.encoder = TransformerStack(width, depth, heads, ffn)
        self.width = width

    @classmethod
    def from_preset(cls, c: dict[str, Any]) -> "W2VBackbone":
        """The 12-lead backbone a preset names (four stride-2 convolutions of ``conv_dim``), as ECG-FM, D-BETA and
        MELP configure it."""
        return cls(12, [(c["conv_dim"], 2, 2)] * 4, c["width"], c["depth"], c["heads"], c["ffn"], c["conv_pos"],
                   c["conv_pos_groups"])

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        """Conv features, normalised and projected: [B, leads, S] -> [B, T, D] (before positions)."""
        f = self.layer_norm(self.feature_extractor(x).transpose(1, 2))
        return self.post_extract_proj(f) if self.post_extract_proj is not None else f

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        f = self.local_features(x)
        return f + self.conv_pos(f)
