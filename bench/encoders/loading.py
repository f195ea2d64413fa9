"""An encoder ready for evaluation: weights, their hash, and the pretraining pool (for the leakage rule)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from bench.encoders.base import Encoder
from bench.encoders.cards import corpora_containing, declared_corpora
from bench.encoders.checkpoint import file_hash, unwrap, weights_hash
from bench.encoders.registry import create_encoder
from bench.errors import LeakageError  # noqa: F401  (raised here; defined where the CLI can catch it cheaply)


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
    corpora: tuple[str, ...] = ()
    allow_contamination: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    #: what text the encoder was aligned to in pretraining (PRETRAIN_TEXT_TAGS): the row tag ``pretrain_text``
    pretrain_text: str = "none"
    #: sha256 of a released file's bytes (what its model card names); empty for bench's own checkpoints
    file_sha256: str = ""
    #: the user passed --trust-checkpoint-code: the file was unpickled with its code allowed to run
    trusted_code: bool = False
    #: where the user named the file, when that is portable (``hf:ORG/REPO/FILE@REV``, ``url:...``): the row's checkpoint
    source: str = ""
    #: what training the weights got here: ``untrained``, ``released`` (a file bench did not write), or bench's own
    #: pretraining settings (``pretrain_budget``); tables never set rows of two budgets in one column
    budget: str = "untrained"

    def contaminated(self, identity: str) -> list[str]:
        """The declared training corpora of this (released) checkpoint that contain ``identity``'s records."""
        return corpora_containing(identity, self.corpora)

    def check_leakage(self, dataset: str, identity: str, test_ids: Sequence[str]) -> None:
        """Refuse to score ``test_ids`` of ``dataset`` if any is in this encoder's pretraining pool, or if the
        dataset is inside the checkpoint's declared corpora (unless contamination is allowed)."""
        inside = self.contaminated(identity)
        if inside and not self.allow_contamination:
            raise LeakageError(
                f"contamination: {dataset} is inside the declared training corpora {inside} of {self.method} "
                f"({self.checkpoint}; configs/cards/{self.method}.yaml) (fix: evaluate on another dataset, or pass "
                f"--allow-contamination and every row is tagged contaminated=yes)")
        if self.pool_identity is None or self.pool_identity != identity:
            return
        overlap = sorted(set(map(str, test_ids)) & self.pool_ids)
        if overlap:
            raise LeakageError(
                f"leakage: {len(overlap)} test record(s) of {dataset} (e.g. {overlap[:5]}) are in the pretraining pool of "
                f"{self.method} ({self.checkpoint}, pool {self.pool_dataset} folds {self.pool_folds}) "
                f"(fix: pretrain on a pool without the test folds, e.g. pretrain_pool.folds for this protocol)")


def load_encoder(method: str, options: dict[str, Any], checkpoint: str | Path | None = None, seed: int = 0,
                 identity_of: dict[str, str] | None = None, allow_contamination: bool = False,
                 trust_code: bool = False) -> EncoderHandle:
    """Build ``method`` (seeded init) and load ``checkpoint`` if given; an untrained encoder's hash covers its
    method, options (preset included) and seed, so two untrained controls never share one.

    The checkpoint hash is of the weights (``weights_hash``), so the same weights written by two processes or
    two commits name the same units. A file bench did not write (no pretraining pool in it) is a released
    checkpoint: the corpora its model card declares for the preset and file form apply to the contamination
    rule, and its file sha256 is kept beside the weights hash. ``trust_code``: the user's opt-in to unpickle a
    file that holds objects outside the model card's allow-list (recorded in the handle).
    """
    torch.manual_seed(seed)
    encoder = create_encoder(method, **options).eval()
    if checkpoint is None:
        init = hashlib.sha256(json.dumps([method, options, seed], sort_keys=True, default=str).encode()).hexdigest()[:12]
        return EncoderHandle(method, encoder, None, f"init-{init}", options=dict(options), budget="untrained")
    checkpoint = Path(checkpoint)
    blob = encoder.load_checkpoint(checkpoint, trust_code=trust_code)
    pool = blob.get("pretrain_pool") or {}
    dataset = pool.get("dataset")
    identity = (identity_of or {}).get(dataset, dataset) if dataset else None
    corpora = () if pool else declared_corpora(method, str(options.get("preset", "")), getattr(encoder, "file_form", None))
    return EncoderHandle(method, encoder.eval(), checkpoint, weights_hash(unwrap(blob)), dataset, identity,
                         frozenset(map(str, blob.get("pretrain_record_ids", []))), pool.get("folds"), corpora,
                         allow_contamination, dict(options), pretrain_text_tag(pool, encoder.spec.has_text_tower),
                         "" if pool else file_hash(checkpoint, 64), trust_code,
                         budget=pretrain_budget((blob.get("config") or {}).get("pretrain") or {}, pool) if pool else "released")


def pretrain_budget(settings: dict[str, Any], pool: dict[str, Any]) -> str:
    """A bench checkpoint's pretraining budget in words (epochs, batch, lr, pool size): the row tag ``pretrain_budget``.
    The seed is not part of it: the seeds of one budget are one table column."""
    if not settings:
        return "unrecorded"
    return (f"{settings.get('epochs')} epochs x {pool.get('n')} records, batch {settings.get('batch_size')}, "
            f"lr {settings.get('lr'):g}")


# bench's pretraining text columns -> the row tag; "labels" rows are marked in tables and refused by zero-shot
PRETRAIN_TEXT_TAGS = {"report": "report", "label_text": "labels", "none": "none"}


def pretrain_text_tag(pool: dict[str, Any], has_text_tower: bool) -> str:
    """``report`` / ``labels`` / ``none`` for bench's checkpoints; ``released`` for a released file (its model
    card says what it read); ``unrecorded`` for a bench checkpoint with a text tower from before the text
    was recorded (then bench's default was the label descriptions)."""
    if not pool:
        return "released" if has_text_tower else "none"
    if "text" in pool:
        return PRETRAIN_TEXT_TAGS[pool["text"]]
    return "unrecorded" if has_text_tower else "none"

