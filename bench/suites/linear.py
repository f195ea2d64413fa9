"""Linear probing: one linear layer on frozen embeddings, many heads trained at once.

Defaults follow the MERIT paper (AdamW, lr 1e-3, batch 64, 100 epochs, BCE). The heads of one
(method, dataset, task, protocol) group -- all folds and label fractions -- train together as a
batched linear layer: every head draws its own shuffled minibatches from its own training records,
and a head whose epoch has no batch left takes no optimiser step, so each head follows exactly the
trajectory it would follow alone (tested). The epoch with the lowest validation loss is kept.
Features are standardised with each head's training mean/std (``standardize``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass
class HeadConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    standardize: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    @classmethod
    def from_mapping(cls, cfg) -> "HeadConfig":
        from bench.config import ConfigError, dataclass_from_mapping

        return dataclass_from_mapping(cls, cfg, "linear config", lambda w, m: ConfigError(f"{w}: {m}"), betas=tuple)

    def as_params(self) -> dict:
        return {f"head.{k}": v for k, v in asdict(self).items()}


@dataclass
class TrainedHeads:
    weight: torch.Tensor  # [H, D, C]
    bias: torch.Tensor  # [H, C]
    mean: torch.Tensor  # [H, D]
    std: torch.Tensor  # [H, D]
    best_epoch: list[int]

    def predict(self, x: np.ndarray, head: int) -> np.ndarray:
        xt = torch.as_tensor(x, dtype=torch.float32)
        z = (xt - self.mean[head]) / self.std[head]
        return torch.sigmoid(z @ self.weight[head] + self.bias[head]).numpy()


def train_heads(x: np.ndarray, y: np.ndarray, heads: list[tuple[np.ndarray, np.ndarray]], cfg: HeadConfig,
                seed: int = 0, head_seeds: list[int] | None = None) -> TrainedHeads:
    """Train one linear head per (train rows, val rows) pair on features ``x`` [N, D], labels ``y`` [N, C].

    Head h's initialisation and shuffles come from its own seed ``(seed, head_seeds[h])``, so its result
    does not depend on which other heads train beside it.
    """
    X = torch.tensor(np.asarray(x, dtype=np.float32))
    Y = torch.tensor(np.asarray(y, dtype=np.float32))
    H, (N, D), C = len(heads), X.shape, Y.shape[1]
    head_seeds = list(range(H)) if head_seeds is None else list(head_seeds)
    mean, std = torch.zeros(H, D), torch.ones(H, D)
    if cfg.standardize:
        for h, (tr, _) in enumerate(heads):
            mean[h] = X[tr].mean(0)
            std[h] = X[tr].std(0, unbiased=False).clamp_min(1e-6)
    bound = 1 / math.sqrt(D)  # nn.Linear's default init
    W, b = torch.empty(H, D, C), torch.empty(H, C)
    rngs = []
    for h in range(H):
        g = torch.Generator().manual_seed(seed * 1_000_003 + head_seeds[h])
        W[h] = (torch.rand(D, C, generator=g) * 2 - 1) * bound
        b[h] = (torch.rand(C, generator=g) * 2 - 1) * bound
        rngs.append(np.random.default_rng([seed, head_seeds[h]]))
    m_w, v_w, m_b, v_b = torch.zeros_like(W), torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(b)
    t = torch.zeros(H)
    b1, b2 = cfg.betas
    best_loss = torch.full((H,), float("inf"))
    best_W, best_b, best_epoch = W.clone(), b.clone(), [0] * H
    n_train = np.array([len(tr) for tr, _ in heads])
    bs = cfg.batch_size
    steps = int(math.ceil(n_train.max() / bs))
    val_rows = [torch.as_tensor(va) for _, va in heads]
    for epoch in range(cfg.epochs):
        perms = np.zeros((H, steps * bs), dtype=np.int64)
        valid = np.zeros((H, steps * bs), dtype=bool)
        for h, (tr, _) in enumerate(heads):
            perms[h, :len(tr)] = rngs[h].permutation(tr)
            valid[h, :len(tr)] = True
        perms_t, valid_t = torch.as_tensor(perms), torch.as_tensor(valid)
        for s in range(steps):
            a = torch.as_tensor(np.flatnonzero(n_train > s * bs))
            rows = perms_t[a, s * bs:(s + 1) * bs]  # [A, bs]
            mask = valid_t[a, s * bs:(s + 1) * bs].float()
            xb = (X[rows] - mean[a, None]) / std[a, None]  # [A, bs, D]
            p = torch.sigmoid(torch.bmm(xb, W[a]) + b[a, None])
            g = (p - Y[rows]) * mask[..., None] / (mask.sum(1)[:, None, None] * C)  # d(mean BCE)/d(logits)
            gw, gb = torch.bmm(xb.transpose(1, 2), g), g.sum(1)
            t[a] += 1
            W[a] *= 1 - cfg.lr * cfg.weight_decay
            b[a] *= 1 - cfg.lr * cfg.weight_decay
            for param, grad, m, v in ((W, gw, m_w, v_w), (b, gb, m_b, v_b)):
                m[a] = b1 * m[a] + (1 - b1) * grad
                v[a] = b2 * v[a] + (1 - b2) * grad ** 2
                shape = (-1,) + (1,) * (grad.ndim - 1)
                mhat = m[a] / (1 - b1 ** t[a]).view(shape)
                vhat = v[a] / (1 - b2 ** t[a]).view(shape)
                param[a] -= cfg.lr * mhat / (vhat.sqrt() + cfg.eps)
        for h in range(H):
            z = (X[val_rows[h]] - mean[h]) / std[h]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ W[h] + b[h], Y[val_rows[h]]).item()
            if loss < best_loss[h]:
                best_loss[h], best_W[h], best_b[h], best_epoch[h] = loss, W[h], b[h], epoch + 1
    return TrainedHeads(best_W, best_b, mean, std, best_epoch)
