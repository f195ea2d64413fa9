"""Offline k-means targets for masked-prediction pretraining (HuBERT-ECG's clustering step, HeartLang's stand-in for its
VQ-HBR codebook): z-score the feature vectors, cluster them once, keep mean, scale and centroids as buffers."""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def fit_codebook(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, centroids: torch.Tensor) -> None:
    """Fill ``mean``, ``std`` ([F]) and ``centroids`` ([K, F]) from ``features`` [..., F]; with fewer distinct vectors
    than K the spare centroids sit far away, so no code is ever assigned to them."""
    from sklearn.cluster import KMeans

    flat = features.reshape(-1, features.shape[-1]).double()
    m, s = flat.mean(0), flat.std(0).clamp_min(1e-6)
    mean.copy_(m)
    std.copy_(s)
    z = ((flat - m) / s).cpu().numpy()
    k = min(centroids.shape[0], len(np.unique(z.round(6), axis=0)))
    centroids.zero_().add_(1e6)
    centroids[:k] = torch.as_tensor(KMeans(k, n_init=1, random_state=0).fit(z).cluster_centers_).to(centroids)


def assign_codes(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """[..., F] -> [...] index of the nearest centroid of the z-scored vector."""
    return torch.cdist(((features - mean) / std).float(), centroids.float()).argmin(-1)
