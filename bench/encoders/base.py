"""One small interface every method implements, so suites never special-case a method.

An encoder declares its input contract (``spec.contract``: lead order, sampling rate, window, views,
filters, scaling; ``bench.data.contract``); the harness prepares arrays to that contract and turns them
into model inputs through one shared implementation (``embed``), and the encoder returns a global
embedding per view (``encode_ecg``), token features for the text-generation suite (``encode_tokens``)
and, when it has a text tower, text embeddings in the space it aligned ECGs to (``encode_text`` with
``encode_ecg(..., aligned=True)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from bench.data.contract import InputContract
from bench.data.leads import STANDARD_LEADS
from bench.encoders.checkpoint import load_state_dict_checked, read_checkpoint, unwrap


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
    contract: InputContract | None = None

    def __post_init__(self) -> None:
        if self.contract is None:
            object.__setattr__(self, "contract", InputContract(self.fs, self.n_samples, tuple(self.leads)))
        if not self.normalisation:
            object.__setattr__(self, "normalisation", self.contract.describe())

    @property
    def seconds(self) -> float:
        return self.n_samples / self.fs

    def as_row(self) -> dict[str, Any]:
        d = asdict(self)
        d["leads"] = len(self.leads)
        d.pop("extra")
        d.pop("contract")
        d["input"] = self.contract.describe()
        return d


class Encoder(nn.Module, ABC):
    """Base class of every encoder (MERIT, its ablations, baselines, controls, plugins)."""

    #: registry name; filled by the factory
    name: str = ""
    #: whether the harness pretrains it when no checkpoint is given: True (it has a self-supervised objective, e.g.
    #: MERIT), False (evaluated as built: controls, supervised architectures, random-weight plugins), or None, the
    #: default: True exactly when the class defines ``pretraining_losses`` (see ``needs_pretraining``)
    requires_pretraining: bool | None = None

    @property
    @abstractmethod
    def spec(self) -> EncoderSpec:
        """Metadata and input contract."""

    @property
    def contract(self) -> InputContract:
        return self.spec.contract

    def take_leads(self, leads: Sequence[str]) -> None:
        """From now on encode only ``leads`` (an evaluation lead subset), for an encoder whose contract takes subsets
        natively (``lead_subset: native``; its ``spec`` returns ``self._contract``)."""
        from dataclasses import replace

        if self.contract.lead_subset != "native":
            raise ValueError(f"{self.name or type(self).__name__} takes a lead subset as zeros (lead_subset 'zero'), not natively")
        self._contract = replace(self.contract, present_leads=tuple(leads))

    def normalise(self, x: torch.Tensor, units: str = "mV") -> torch.Tensor:
        """The contract's filters and scaling on whole records [B, leads, samples] (pretraining input); a contract whose
        steps run on the whole record has them done already in the prepared arrays."""
        c = self.contract
        if (not c.filters and c.scale == "none") or c.steps_prepared:
            return x
        return torch.as_tensor(c.filter_and_scale(x.detach().cpu().numpy()), device=x.device)

    def embed(self, x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prepared records [B, leads, S] -> (embedding, aligned embedding or None), through the contract.

        Each view (crop or segment) is encoded and the views' embeddings are averaged, as the
        upstream evaluation paths do.
        """
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return self.embed_views(torch.as_tensor(self.contract.views(arr)))

    def embed_views(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``contract.views`` output [B, V, leads, view samples] -> (embedding, aligned or None), views averaged
        (the encoding pass computes the views in its loader processes and calls this)."""
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        if self.contract.record_seconds and self.contract.view_layout == "whole":  # each record at its own length
            return self._embed_own_lengths(views, device)
        if self.contract.record_seconds:  # windows past a record's end are neither encoded nor averaged
            return self._embed_present_views(views, device)
        views = views.to(device, non_blocking=True)
        outs = [self.encode_pair(views[:, v]) for v in range(views.shape[1])]
        emb = torch.stack([o[0] for o in outs]).mean(0)
        aligned = None if outs[0][1] is None else torch.stack([o[1] for o in outs]).mean(0)
        return emb, aligned

    def _embed_own_lengths(self, views: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One whole view per record, encoded up to the record's last non-zero sample (records of one length batched)."""
        lengths = torch.as_tensor(self.contract.record_lengths(views[:, 0].detach().cpu().numpy()))
        outs: list[list[torch.Tensor | None]] = [[None] * len(views), [None] * len(views)]
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero().squeeze(1)
            for i, out in enumerate(self.encode_pair(views[rows, 0, :, :length].to(device, non_blocking=True))):
                for j, r in enumerate(rows.tolist()):
                    outs[i][r] = None if out is None else out[j]
        return torch.stack(outs[0]), None if outs[1][0] is None else torch.stack(outs[1])

    def _embed_present_views(self, views: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        present = torch.as_tensor(self.contract.present_views(views.detach().cpu().numpy()))
        sums: list[torch.Tensor | None] = [None, None]
        for v in range(views.shape[1]):
            rows = present[:, v].nonzero().squeeze(1)
            if len(rows):
                for i, out in enumerate(self.encode_pair(views[rows, v].to(device, non_blocking=True))):
                    if out is not None:
                        sums[i] = (torch.zeros(len(views), out.shape[1], dtype=out.dtype, device=device) if sums[i] is None
                                   else sums[i]).index_add(0, rows.to(device), out)
        counts = present.sum(1, keepdim=True).to(device)
        return sums[0] / counts, None if sums[1] is None else sums[1] / counts

    @abstractmethod
    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        """One view [B, leads, view samples] (already through the contract) -> [B, D]; ``aligned`` -> the
        shared ECG-text space."""

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

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The trainable parameters of the embedding path (what ``encode_ecg`` reads), ordered from input to output
        and grouped, for discriminative learning rates in fine-tuning (the lower half of the groups learns slowest).

        Default: the parameters that receive a gradient from ``encode_ecg`` on a dry batch, in registration order,
        as two halves; an adapter may give finer groups (its blocks). Empty for an encoder with nothing to train."""
        if not any(p.requires_grad for p in self.parameters()):
            return []
        was_training = self.training
        self.eval()
        c = self.contract
        view = torch.zeros(2, len(c.leads), c.view_length)
        if c.decimate > 1:
            view = torch.zeros(2, 1, len(c.leads) * c.view_length // c.decimate)
        device = next(self.parameters()).device
        with torch.enable_grad():
            self.encode_ecg(view.to(device)).float().square().sum().backward()
        used = [p for p in self.parameters() if p.grad is not None]
        for p in self.parameters():
            p.grad = None
        self.train(was_training)
        half = len(used) // 2
        return [g for g in (used[:half], used[half:]) if g]

    # Checkpoints -----------------------------------------------------------------------------
    #: prefixes of modules only pretraining uses (decoders, auxiliary heads): a released file may lack them
    pretraining_only: tuple[str, ...] = ()

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """State saved in / loaded from bench checkpoints (subclasses may drop frozen towers)."""
        return self.state_dict()

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Map a foreign (official) checkpoint's keys to ours; default: identity."""
        return dict(state)

    def missing_hint(self, missing: list[str]) -> str:
        """What a file lacking ``missing`` keys cannot do, and the fix (adapters name the missing part)."""
        return ""

    def shape_hint(self, mismatched: dict[str, tuple]) -> str:
        """The option that builds a file's shapes (``mismatched``: key -> (file shape, model shape)), when an
        upstream writes files of another size than its model class (adapters name the option)."""
        return ""

    def required_keys(self, state: Mapping[str, Any]) -> set[str]:
        """Keys a file must hold: everything the embedding and (with a text tower) zero-shot path read.

        Pretraining-only modules are optional; a frozen text tower comes from its own files unless the
        checkpoint carries its weights (released MERL / D-BETA files do), then all of them are required.
        """
        needed = {k for k in self.checkpoint_state() if not k.startswith(self.pretraining_only)}
        if any(k.startswith("text_tower.") for k in state):
            needed |= {k for k in self.state_dict() if k.startswith("text_tower.")}
        return needed

    def load_checkpoint(self, path: str | Path, trust_code: bool = False) -> dict[str, Any]:
        """Load weights from ``path`` strictly; errors name the file, the offending keys and the fix.

        The file is read without running code from it: besides tensors it may hold only the objects this
        encoder's model card allows (``checkpoint_objects``), unless the user passed ``trust_code``."""
        from bench.encoders.cards import checkpoint_objects

        blob = read_checkpoint(path, checkpoint_objects(self.name), trust_code=trust_code, owner=self.name)
        state = self.remap_state_dict(unwrap(blob))
        load_state_dict_checked(self, state, source=str(path), expected=self.required_keys(state),
                                hint=self.missing_hint, shape_hint=self.shape_hint)
        if hasattr(getattr(self, "text_tower", None), "clear_cache"):
            self.text_tower.clear_cache()
        return blob if isinstance(blob, dict) else {}


def resolve_preset(method: str, presets: Mapping[str, Mapping[str, Any]], preset: str, overrides: Mapping[str, Any],
                   defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Preset values (timm-style presets as data) with overrides; unknown presets or options are refused."""
    from bench.config import ConfigError  # a subclass of ValueError: one clear line on the command line

    if preset not in presets:
        raise ConfigError(f"unknown {method} preset '{preset}'; choose from {sorted(presets)}")
    valid = set(defaults or {}) | {k for p in presets.values() for k in p}
    unknown = set(overrides) - valid
    if unknown:
        raise ConfigError(f"unknown {method} option(s) {sorted(unknown)}; valid: {sorted(valid)}")
    resolved = {**(defaults or {}), **presets[preset]}
    for key, value in overrides.items():
        resolved[key] = merge_text(method, preset, resolved.get(key), value) if key == "text" else value
    return resolved


def merge_text(method: str, preset: str, preset_text: Mapping[str, Any] | None, override: Mapping[str, Any] | None):
    """``encoder.text.*`` merged into the preset's text block (``encoder.text.path=/w/MedCPT`` keeps MERL's kind,
    pooling and lower-casing). A tower of another kind than the preset's would embed text differently from the
    weights' own tower, so it is refused unless asked for with ``encoder.text.force_kind=true``; ``kind=none``
    (no text tower, e.g. to embed with an ECG-encoder-only file) is always allowed."""
    if override is None or preset_text is None:
        return None if override is None else {k: v for k, v in override.items() if k != "force_kind"}
    override = dict(override)
    force = bool(override.pop("force_kind", False))
    kind, own = override.get("kind"), preset_text.get("kind")
    if kind is not None and kind != own and kind != "none" and not force:
        from bench.config import ConfigError

        raise ConfigError(f"{method} preset {preset!r} embeds text with a {own!r} tower; encoder.text.kind={kind} would build "
                         f"a different text path (fix: give the {own} tower's folder with encoder.text.path=..., or pass "
                         f"encoder.text.force_kind=true to use a {kind} tower anyway)")
    return {**preset_text, **override} if kind in (None, own) else override


def has_objective(encoder: "Encoder") -> bool:
    """The encoder defines a self-supervised objective (``pretraining_losses(x, texts, rng) -> dict of losses``)."""
    return callable(getattr(encoder, "pretraining_losses", None))


def needs_pretraining(encoder: "Encoder") -> bool:
    """Whether a run without a checkpoint pretrains ``encoder`` first: its own ``requires_pretraining`` where it says,
    else whether it has an objective (a plugin without one is evaluated as built, never sent to pretraining)."""
    flag = getattr(encoder, "requires_pretraining", None)
    return has_objective(encoder) if flag is None else bool(flag) and has_objective(encoder)
