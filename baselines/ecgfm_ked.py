"""ECGFM-KED (Tian Y. et al., "Foundation model of ECG diagnosis: Diagnostics and explanations of any form and rhythm on
ECG", Cell Reports Medicine 5(12), 101875, 2024; control-spiderman/ECGFM-KED) behind the Encoder interface.

Its ECG encoder is an xresnet1d101 (models/xresnet1d_101.py) whose four stages are 64, 128, 128 and 192 wide (x4: 768
channels out) and which, trained with ``use_ecgNet_Diagnosis: all``, has no classification head: the Sequential's
indices 0-7 (three stem conv layers, a max pool, four stages). bench builds it with baselines/xresnet1d.py's classes.
The embedding is the last stage averaged over time (768), as the reality check's EcgFmKEDWrapper pools it.

Input contract (dataset/ecgDataset.py MimicivDataset, which produced the released MIMIC-IV-ECG weights): the WFDB record
in mV at 500 Hz, ``scipy.signal.resample`` to a fifth of its length (100 Hz, 1,000 samples for 10 s), NaN -> 0, no
filtering and no scaling. The reality check's wrapper docstring says 100 Hz; its run.sh passes 500 Hz, 10 s: the
released weights were trained at 100 Hz, so the contract is 100 Hz.

Released file (main_mimiciv.py): ``{'model': TQN state, 'ecg_model': encoder state, 'text_encoder': Bio_ClinicalBERT
state, 'optimizer', 'lr_scheduler', 'config': dict, 'epoch'}``; the encoder is read from ``ecg_model`` strictly, the
rest is the zero-shot side (a query transformer over label descriptions), which bench does not implement.

``cpu_small`` pretrains with an ECG-report InfoNCE between the pooled ECG features and a frozen sentence encoder (both
projected): KED's uniCL loss with each report its own class. KED's label-query transformer (TQN) and its report
augmentation are not part of this reduced objective (the model card says so).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.keys import strip_prefix
from baselines.text_side import ProjectedTextSide
from baselines.xresnet1d import XResNet1d
from bench.data.contract import InputContract
from bench.encoders.base import EncoderSpec
from bench.encoders.losses import info_nce
from bench.encoders.randomness import StepRandom
from merit.text import build_text_tower

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(layers=[3, 4, 23, 3], widths=[64, 128, 128, 192], stem=[32, 32, 64], text=None),
    "cpu_small": dict(layers=[1, 1, 2, 1], widths=[16, 32, 32, 48], stem=[16, 16, 64], text={"kind": "minilm", "frozen": True}),
    "tiny": dict(layers=[1, 1], widths=[8, 8], stem=[8, 8, 32], text={"kind": "hashing", "frozen": False, "dim": 32}),
}
DEFAULTS = dict(in_channels=12, expansion=4, kernel=5, kernel_stem=5, fs=100.0, n_samples=1000, proj_dim=128, temperature=0.1)
ZERO_SHOT_SIDE = ("model.", "text_encoder.")  # the released file's TQN and Bio_ClinicalBERT: not an ECG encoder's keys


class ECGFMKED(ProjectedTextSide, XResNet1d):
    requires_pretraining = True  # cpu_small: ECG-report alignment on the run's pool; official: the released file
    method, presets, defaults, with_head = "ECGFM-KED", PRESETS, DEFAULTS, False

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__(preset, **overrides)
        c = self.config
        self.text_tower = build_text_tower(**c["text"]) if c["text"] else None
        self.proj_e = self.proj_t = None
        if self.text_tower is not None:
            self.proj_e = nn.Linear(self.out_channels, c["proj_dim"])
            self.proj_t = nn.Linear(self.text_tower.dim, c["proj_dim"])

    def prepare_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return overrides  # a text tower for cpu_small's objective

    def input_contract(self) -> InputContract:
        c = self.config
        return InputContract(c["fs"], c["n_samples"], resample="fft",
                             notes="ECGFM-KED MimicivDataset: scipy.signal.resample 500 -> 100 Hz, NaN -> 0, no scaling")

    pretraining_only = ("proj_e.", "proj_t.")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("ecgfm_ked", self.out_channels, c["fs"], c["n_samples"], has_text_tower=self.text_tower is not None,
                           n_params=sum(p.numel() for p in self.net.parameters()), extra={"preset": self.preset},
                           contract=self._contract)

    def encode_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb = self.features(x).mean(-1)  # EcgFmKEDWrapper: global average pooling over time
        return emb, (F.normalize(self.proj_e(emb), dim=-1) if self.proj_e is not None else None)

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        emb, z = self.encode_pair(x)
        if aligned and z is None:
            raise NotImplementedError("ECGFM-KED's released zero-shot side (TQN over label descriptions) is not implemented; "
                                      "the official preset embeds ECGs only")
        return z if aligned else emb

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        if self.text_tower is None:
            raise ValueError("ECGFM-KED pretraining aligns ECGs with reports: it needs a text tower (encoder.text.kind)")
        emb = self.features(x).mean(-1)
        loss = info_nce(self.proj_e(emb), self.proj_t(self.text_tower(texts)), self.config["temperature"])
        return {"cma": loss, "loss": loss}

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The training file's 'ecg_model' state (checkpoint.unwrap takes it out), a flat dict with ``ecg_model.`` keys
        (what the reality check's wrapper reads), a bare encoder state, or one of bench's own (``net.*``)."""
        if any(k.startswith("ecg_model.") for k in state):
            state = {k[len("ecg_model."):]: v for k, v in state.items() if k.startswith("ecg_model.")}
        state = strip_prefix(state, "module.")
        if any(k.startswith("net.") for k in state):
            return dict(state)
        return {f"net.{k}": v for k, v in state.items() if not k.startswith(ZERO_SHOT_SIDE)}

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass ECGFM-KED's best_valid_all_increase_with_augment_epoch_3.pt (Zenodo 14881564; its 'ecg_model' state) "
                "with encoder.preset=official")


def build_ecgfm_ked(**config: Any) -> ECGFMKED:
    return ECGFMKED(**config)
