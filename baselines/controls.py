"""Controls that give every table a floor: a pretrained encoder that does not beat them shows at once.

``signal_stats``: per-lead summary statistics of the raw prepared signal (no learning at all).
(The other control, ``random``, is the MERIT architecture with untrained weights: merit/model.py.)
"""

from __future__ import annotations

import torch

from bench.encoders.base import Encoder, EncoderSpec

STATS = ("mean", "std", "min", "max", "p05", "p25", "p50", "p75", "p95", "mean_abs_diff", "zero_cross_rate", "skew")


class SignalStats(Encoder):
    requires_pretraining = False

    def __init__(self, fs: float = 100.0, n_samples: int = 1000, **_: object):
        super().__init__()
        self.fs, self.n_samples = fs, n_samples

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec("signal_stats", 12 * len(STATS), self.fs, self.n_samples, normalisation="none (raw prepared signal)",
                           n_params=0, extra={"stats": list(STATS)})

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("signal_stats has no aligned ECG-text space")
        q = torch.quantile(x, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=x.dtype, device=x.device), dim=-1)
        mean, std = x.mean(-1), x.std(-1)
        centred = x - mean[..., None]
        skew = (centred ** 3).mean(-1) / std.clamp_min(1e-6) ** 3
        zc = ((centred[..., 1:] * centred[..., :-1]) < 0).float().mean(-1)
        feats = [mean, std, x.amin(-1), x.amax(-1), *q, (x[..., 1:] - x[..., :-1]).abs().mean(-1), zc, skew]
        return torch.stack(feats, dim=-1).flatten(1)


def build_signal_stats(**config: object) -> SignalStats:
    return SignalStats()
