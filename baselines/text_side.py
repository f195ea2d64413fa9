"""The text side shared by adapters whose zero-shot path is a text tower followed by ``proj_t`` (MERL, MELP)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


class ProjectedTextSide:
    """Mixed into an ``Encoder`` that sets ``text_tower`` (or None) and ``proj_t``."""

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        if self.text_tower is None:
            return super().encode_text(texts)
        return F.normalize(self.proj_t(self.text_tower(texts)), dim=-1)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """Without a frozen tower's weights: those come from its own folder, not from bench checkpoints."""
        frozen = self.text_tower is not None and self.text_tower.frozen
        return {k: v for k, v in self.state_dict().items() if not (frozen and k.startswith("text_tower."))}
