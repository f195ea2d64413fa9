"""Loss terms shared by the methods: InfoNCE (MERIT Eq. 3, MERL), masked MSE (MERIT Eq. 6, ST-MEM), MERIT's IB proxy (Eq. 9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(z_e: torch.Tensor, z_t: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of N pairs: mean of the ECG->text and text->ECG cross-entropies
    of cosine similarities divided by the temperature (Eq. 3)."""
    z_e, z_t = F.normalize(z_e, dim=-1), F.normalize(z_t, dim=-1)
    logits = z_e @ z_t.T / temperature
    target = torch.arange(len(z_e), device=z_e.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def ib_term(z_e: torch.Tensor, z_t: torch.Tensor, beta: float) -> torch.Tensor:
    """The information-bottleneck proxy beta * (1 - cos(z_e, z_t)), averaged over pairs (Eq. 9)."""
    return beta * (1 - F.cosine_similarity(z_e, z_t, dim=-1)).mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, normalise_target: bool = False) -> torch.Tensor:
    """Squared error on masked patches only (Eq. 6; Gaussian decoder with fixed variance).

    pred/target [B, L, P, patch], mask [B, L, P] with 1 = masked. ``normalise_target`` standardises
    each target patch (ST-MEM's per-patch normalised targets).
    """
    if normalise_target:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True, unbiased=False)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1)
