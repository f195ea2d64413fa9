"""A third-party encoder: per-lead means and standard deviations through one linear layer."""

import torch
from torch import nn

from bench.encoders import Encoder, EncoderSpec


class ToyMean(Encoder):
    def __init__(self, dim: int = 16, **_: object):
        super().__init__()
        self.proj = nn.Linear(24, dim)
        self.dim = dim

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec("toy_mean", self.dim, 100.0, 1000, normalisation="none", n_params=self.n_params())

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        return self.proj(torch.cat([x.mean(-1), x.std(-1)], dim=-1))


def build_toy_mean(**config):
    return ToyMean(**config)
