"""Loss terms shared by the methods: InfoNCE (MERIT Eq. 3, MERL), masked MSE (MERIT Eq. 6, ST-MEM), MERIT's IB proxy (Eq. 9).

Under ``torchrun`` every term equals its value on the whole global batch: contrastive terms gather
the other processes' embeddings (with gradients) so negatives span the global batch, and masked means
divide by the global count. DistributedDataParallel then averages gradients into exactly the
one-process gradient.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_batch(z: torch.Tensor) -> torch.Tensor:
    """[b, ...] on each process -> [world * b, ...] in rank order, differentiable; identity alone."""
    if _world() == 1:
        return z
    with warnings.catch_warnings():  # deprecated in favour of the private torch.distributed._functional_collectives
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(dist_fn.all_gather(z), dim=0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1, over the global batch.

    Each process returns sum_local * world / count_global, so averaging over processes (what DDP does
    to gradients) gives sum_global / count_global.
    """
    total = (values * mask).sum()
    count = mask.sum().detach()
    world = _world()
    if world > 1:
        count = count.clone()
        dist.all_reduce(count)
        return total * world / count.clamp_min(1)
    return total / count.clamp_min(1)


def info_nce(z_e: torch.Tensor, z_t: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of N pairs: mean of the ECG->text and text->ECG cross-entropies
    of cosine similarities divided by the temperature (Eq. 3)."""
    z_e, z_t = F.normalize(gather_batch(z_e), dim=-1), F.normalize(gather_batch(z_t), dim=-1)
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
    return masked_mean(((pred - target) ** 2).mean(-1), mask)
