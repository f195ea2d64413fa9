"""Model cards (configs/cards/<encoder>.yaml): source, paper, licence, file forms, and the corpora a
released checkpoint was trained on, which the contamination rule reads (configs/cards/corpora.yaml)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CARDS = Path(__file__).resolve().parents[2] / "configs" / "cards"


@lru_cache(maxsize=None)
def load_card(name: str) -> dict[str, Any]:
    """The card of encoder ``name``; a plugin without one gets a card that says so."""
    path = CARDS / f"{name}.yaml"
    if not path.is_file():
        return {"name": name, "title": name, "source": "unknown (no model card: configs/cards/<name>.yaml)", "presets": {}}
    return yaml.safe_load(path.read_text()) or {}


@lru_cache(maxsize=None)
def corpora_table() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((CARDS / "corpora.yaml").read_text()) or {}


def card_kind(name: str) -> str:
    """The card's ``kind``: ``control`` for a floor every table shows (random weights, signal statistics), ``supervised``
    for an architecture trained on labels (ECGFounder, xresnet1d101), ``ECG-text`` for a method aligned with text whatever
    the preset builds (ECGFM-KED), ``method`` otherwise (self-supervised or ECG-text, told apart by the text tower)."""
    return str(load_card(name).get("kind", "method"))


def declared_corpora(name: str, preset: str, file_form: str | None = None) -> tuple[str, ...]:
    """Corpora the released weights of ``name``/``preset`` (in ``file_form``) were trained on."""
    entry = (load_card(name).get("presets") or {}).get(preset) or {}
    by_form = entry.get("corpora_by_form") or {}
    corpora = by_form.get(file_form) if file_form in by_form else entry.get("corpora", [])
    unknown = [c for c in corpora if c not in corpora_table()]
    if unknown:
        raise ValueError(f"configs/cards/{name}.yaml: unknown corpora {unknown}; declare them in configs/cards/corpora.yaml")
    return tuple(corpora)


def checkpoint_objects(name: str) -> tuple[str, ...]:
    """The non-tensor objects ``name``'s released files may pickle (card ``checkpoint_objects``: object or group names
    of ``bench.encoders.checkpoint.SAFE_OBJECTS``); none for an encoder without a card."""
    return tuple(load_card(name).get("checkpoint_objects") or ()) if name else ()


def corpora_containing(identity: str, corpora: tuple[str, ...]) -> list[str]:
    """The corpora among ``corpora`` that hold records of the dataset identity ``identity``."""
    table = corpora_table()
    return [c for c in corpora if identity in (table[c].get("contains") or [])]
