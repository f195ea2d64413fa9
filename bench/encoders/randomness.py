"""Random draws of one pretraining step, keyed by sample rather than by position in a batch.

A method's ``pretraining_losses(x, texts, rng)`` draws its masks and crops from ``rng``. Sample i's
draws depend only on (seed, step, sample_ids[i]) and batch-wide draws only on (seed, step), so the
shards of a global batch spread over ``torchrun`` processes draw exactly what one process would draw
for the whole batch. That is what makes a 2-process loss curve equal a 1-process one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


class StepRandom:
    def __init__(self, seed: int, step: int, sample_ids: Sequence[int], device: torch.device | str = "cpu"):
        self.seed, self.step = int(seed), int(step)
        self.sample_ids = [int(s) for s in sample_ids]
        self.device = torch.device(device)
        self._per_sample: list[torch.Generator] | None = None
        self._batch = torch.Generator().manual_seed(self._key(-1))

    @classmethod
    def ensure(cls, rng: "StepRandom | None", batch_size: int, device: torch.device | str = "cpu") -> "StepRandom":
        """``rng``, or seed-0 draws for a batch of ``batch_size`` (direct calls outside the training loop)."""
        return rng if rng is not None else cls(0, 0, range(batch_size), device)

    def _key(self, sample: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.step, sample + 1]).generate_state(1, np.uint64)[0] >> 1)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) of shape [B, *shape]; row i from sample i's own stream."""
        if self._per_sample is None:
            self._per_sample = [torch.Generator().manual_seed(self._key(s)) for s in self.sample_ids]
        rows = [torch.rand(*shape, generator=g) for g in self._per_sample]
        return torch.stack(rows).to(self.device) if rows else torch.empty(0, *shape, device=self.device)

    def batch_randint(self, low: int, high: int) -> int:
        """One integer in [low, high) shared by the whole global batch (e.g. a common crop offset)."""
        return int(torch.randint(low, high, (1,), generator=self._batch))

    def dropout(self, x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
        """Inverted dropout on [B, ...] whose mask comes from each sample's stream."""
        if not training or p == 0:
            return x
        keep = (self.rand(*x.shape[1:]) >= p).to(x.dtype)
        return x * keep / (1 - p)
