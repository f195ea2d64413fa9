"""An encoder ready for evaluation: weights, their hash, and the pretraining pool (for the leakage rule)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from bench.encoders.base import Encoder
from bench.encoders.checkpoint import file_hash, read_checkpoint
from bench.encoders.registry import create_encoder


class LeakageError(ValueError):
    """A test record is in the pretraining pool of the encoder that would score it."""


@dataclass
class EncoderHandle:
    method: str
    encoder: Encoder
    checkpoint: Path | None
    checkpoint_hash: str
    pool_dataset: str | None = None
    pool_identity: str | None = None
    pool_ids: frozenset[str] = field(default_factory=frozenset)
    pool_folds: list[int] | None = None

    def check_leakage(self, dataset: str, identity: str, test_ids: Sequence[str]) -> None:
        """Refuse to score ``test_ids`` of ``dataset`` if any is in this encoder's pretraining pool."""
        if self.pool_identity is None or self.pool_identity != identity:
            return
        overlap = sorted(set(map(str, test_ids)) & self.pool_ids)
        if overlap:
            raise LeakageError(
                f"leakage: {len(overlap)} test record(s) of {dataset} (e.g. {overlap[:5]}) are in the pretraining pool of "
                f"{self.method} ({self.checkpoint}, pool {self.pool_dataset} folds {self.pool_folds}) "
                f"(fix: pretrain on a pool without the test folds, e.g. pretrain_pool.folds for this protocol)")


def load_encoder(method: str, options: dict[str, Any], checkpoint: str | Path | None = None, seed: int = 0,
                 identity_of: dict[str, str] | None = None) -> EncoderHandle:
    """Build ``method`` (seeded init) and load ``checkpoint`` if given; untrained encoders hash as ``init-seedN``."""
    torch.manual_seed(seed)
    encoder = create_encoder(method, **options).eval()
    if checkpoint is None:
        return EncoderHandle(method, encoder, None, f"init-seed{seed}")
    checkpoint = Path(checkpoint)
    blob = encoder.load_checkpoint(checkpoint)
    pool = blob.get("pretrain_pool") or {}
    dataset = pool.get("dataset")
    identity = (identity_of or {}).get(dataset, dataset) if dataset else None
    return EncoderHandle(method, encoder.eval(), checkpoint, file_hash(checkpoint), dataset, identity,
                         frozenset(map(str, blob.get("pretrain_record_ids", []))), pool.get("folds"))


def checkpoint_pool(path: str | Path) -> dict[str, Any]:
    return (read_checkpoint(path) or {}).get("pretrain_pool", {})
