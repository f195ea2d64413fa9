"""One small interface every method implements, so suites never special-case a method.

An encoder declares its input contract (sampling rate, length, leads) in ``spec``; the harness
prepares arrays to that contract through the shared pipeline, then the encoder applies its own
normalisation (``normalise``) and returns a global embedding (``encode_ecg``), token features for
the text-generation suite (``encode_tokens``) and, when it has a text tower, text embeddings in the
space it aligned ECGs to (``encode_text`` with ``encode_ecg(..., aligned=True)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from bench.data.leads import STANDARD_LEADS
from bench.encoders.checkpoint import load_state_dict_checked, read_checkpoint


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    embed_dim: int
    fs: float
    n_samples: int
    leads: tuple[str, ...] = STANDARD_LEADS
    has_text_tower: bool = False
    normalisation: str = ""
    n_params: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.n_samples / self.fs

    def as_row(self) -> dict[str, Any]:
        d = asdict(self)
        d["leads"] = len(self.leads)
        d.pop("extra")
        return d


class Encoder(nn.Module, ABC):
    """Base class of every encoder (MERIT, its ablations, baselines, controls, plugins)."""

    #: registry name; filled by the factory
    name: str = ""
    #: False for controls that are evaluated untrained (random init, hand-made features)
    requires_pretraining: bool = True

    @property
    @abstractmethod
    def spec(self) -> EncoderSpec:
        """Metadata and input contract."""

    def normalise(self, x: torch.Tensor, units: str = "mV") -> torch.Tensor:
        """The encoder's own preprocessing on [B, leads, samples] at ``spec.fs``; default: none."""
        return x

    @abstractmethod
    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        """[B, leads, samples] (already normalised) -> [B, D]; ``aligned`` -> the shared ECG-text space."""

    def encode_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(global embedding, aligned embedding or None) in one call; override to share the forward pass."""
        return self.encode_ecg(x), (self.encode_ecg(x, aligned=True) if self.spec.has_text_tower else None)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, leads, samples] -> [B, T, D] token features (default: the global embedding as one token)."""
        return self.encode_ecg(x).unsqueeze(1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> [B, D'] in the aligned space; only for encoders with a text tower."""
        raise NotImplementedError(f"encoder '{self.name}' has no text tower (not zero-shot capable)")

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # Checkpoints -----------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """State saved in / loaded from bench checkpoints (subclasses may drop frozen towers)."""
        return self.state_dict()

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Map a foreign (official) checkpoint's keys to ours; default: identity."""
        return dict(state)

    def load_checkpoint(self, path: str | Path, strict: bool = True) -> dict[str, Any]:
        """Load weights from ``path``; errors name the file and list offending keys."""
        blob = read_checkpoint(path)
        state = blob.get("model", blob) if isinstance(blob, dict) else blob
        load_state_dict_checked(self, self.remap_state_dict(state), source=str(path), strict=strict,
                                expected=self.checkpoint_state().keys())
        return blob if isinstance(blob, dict) else {}


def resolve_preset(method: str, presets: Mapping[str, Mapping[str, Any]], preset: str, overrides: Mapping[str, Any],
                   defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Preset values (timm-style presets as data) with overrides; unknown presets or options are refused."""
    if preset not in presets:
        raise ValueError(f"unknown {method} preset '{preset}'; choose from {sorted(presets)}")
    valid = set(defaults or {}) | {k for p in presets.values() for k in p}
    unknown = set(overrides) - valid
    if unknown:
        raise ValueError(f"unknown {method} option(s) {sorted(unknown)}; valid: {sorted(valid)}")
    return {**(defaults or {}), **presets[preset], **overrides}
