"""The declared types and ranges of the config groups: every value a user can set is checked here, where it enters
(``bench.config.load_config``), so an impossible value (``modes.finetune.epochs=-1``, ``modes.attentive.lr=abc``) is one
line naming the key and the fix before anything runs.

Rules are pydantic models, one per group; keys they do not name pass through (the spelling of keys is checked by
``bench.config.normalise_overrides``; encoder options by each encoder's factory).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PositiveInt = Annotated[int, Field(strict=False, ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class _Group(BaseModel):
    model_config = ConfigDict(extra="allow")


class Preprocess(_Group):
    target_fs: PositiveFloat
    seconds: PositiveFloat
    nan_window: NonNegativeInt
    zero_fill_leads: bool
    lead_set: Union[str, int] = "12"


class Pretrain(_Group):
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)]
    seed: NonNegativeInt
    checkpoint_every: PositiveInt
    amp: bool


class Loader(_Group):
    workers: Optional[NonNegativeInt] = None
    prefetch_factor: PositiveInt


class Embed(_Group):
    batch_size: PositiveInt
    amp: bool


class Run(_Group):
    fractions: list[Fraction]
    seeds: list[NonNegativeInt]
    n_boot: PositiveInt
    bootstrap_seed: NonNegativeInt


class Linear(_Group):
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    standardize: bool
    val_fraction: Literal["full", "match"]


class ModeSettings(_Group):
    """One evaluation mode's training settings (``modes.common`` and each mode's block, which may set any of them)."""

    optimizer: Optional[Literal["adam", "adamw"]] = None
    lr: Optional[PositiveFloat] = None
    weight_decay: Optional[NonNegativeFloat] = None
    batch_size: Optional[PositiveInt] = None
    epochs: Optional[PositiveInt] = None
    select_on: Optional[Literal["val_auroc"]] = None
    patience: Optional[PositiveInt] = None
    attn_heads: Optional[PositiveInt] = None
    attn_queries: Optional[PositiveInt] = None
    head: Optional[Literal["linear", "mlp"]] = None
    lr_factors: Optional[Annotated[list[PositiveFloat], Field(min_length=3, max_length=3)]] = None


#: config path -> the model its mapping must satisfy
GROUPS: dict[str, type[BaseModel]] = {
    "preprocess": Preprocess, "pretrain": Pretrain, "loader": Loader, "embed": Embed, "run": Run, "linear": Linear,
    "modes.common": ModeSettings, "modes.attentive": ModeSettings, "modes.finetune": ModeSettings,
    "modes.scratch": ModeSettings,
}


def _at(container: dict, dotted: str) -> Any:
    node: Any = container
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def check(container: dict) -> None:
    """Raise ``ValueError`` naming the first key whose value breaks its group's rule."""
    for group, model in GROUPS.items():
        values = _at(container, group)
        if values is None:
            continue
        try:
            model.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join([group, *(str(p) for p in error["loc"])])
            raise ValueError(f"config {key}={_at(container, key)!r}: {error['msg'].lower()} (fix: set {key} to a valid value; "
                             f"the defaults and their meaning are in configs/)") from None
