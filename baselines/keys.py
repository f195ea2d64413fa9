"""Renaming official checkpoint keys to ours (regex rules), shared by the adapters.

Each adapter lists (official pattern, our replacement) rules plus the official prefixes it
deliberately ignores (pretraining-only heads, a text tower loaded from its own files); any other key
that maps nowhere is reported by the strict loader as unexpected.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import torch


# ST-MEM and MERL name their pre-LN blocks block{i}.attn.norm / attn.fn.* / ff.norm / ff.fn.net.{0,3}.
VIT_BLOCK_RULES = [
    (r"^block(\d+)\.attn\.norm\.", r"blocks.\1.norm1."),
    (r"^block(\d+)\.attn\.fn\.to_qkv\.", r"blocks.\1.attn.to_qkv."),
    (r"^block(\d+)\.attn\.fn\.to_out\.0\.", r"blocks.\1.attn.to_out."),
    (r"^block(\d+)\.ff\.norm\.", r"blocks.\1.norm2."),
    (r"^block(\d+)\.ff\.fn\.net\.0\.", r"blocks.\1.mlp.0."),
    (r"^block(\d+)\.ff\.fn\.net\.3\.", r"blocks.\1.mlp.2."),
]

# torch's parametrized weight norm stores g / v as original0 / original1.
WEIGHT_NORM_RULES = [
    (r"\.parametrizations\.weight\.original0$", ".weight_g"),
    (r"\.parametrizations\.weight\.original1$", ".weight_v"),
]


def rename(state: Mapping[str, torch.Tensor], rules: Iterable[tuple[str, str]], prefix: str = "",
           ignore: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Apply the first matching rule to each key, add ``prefix``; drop keys starting with ``ignore``."""
    rules = [(re.compile(p), r) for p, r in rules]
    ignore = tuple(ignore)
    out = {}
    for key, value in state.items():
        if ignore and key.startswith(ignore):
            continue
        new = key
        for pattern, repl in rules:
            if pattern.search(new):
                new = pattern.sub(repl, new)
                break
        out[prefix + new] = value
    return out


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` when every key carries it (full-model files wrap the encoder)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)
