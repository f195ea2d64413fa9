"""CLEF (Shu et al., arXiv:2512.02180, 2025; Nokia-Bell-Labs/ecg-foundation-model): a single-lead ECG foundation model,
re-implemented from its facts (clef/baselines/models/CLEF.py, clef/lightning/lightning_contrastive.py,
clef/data/contrastive_dataloader.py, configs/exp/exp_pretrain.yaml).

The backbone is ECGFounder's Net1D (``create_net1d_by_size``: the same blocks, ``use_bn=False, use_do=False``) with
``dense = nn.Identity()``, so the embedding is the last stage's output averaged over time; small, medium and large
differ only in widths, depths, bottleneck ratio and group width. Pretraining (``ContrastiveModel``, SimCLR) reads one
channel of a MIMIC-IV-ECG record at a time: its first ``input_len`` = 5,000 samples at 500 Hz, a Butterworth-5
0.67-40 Hz band-pass run as ``filtfilt(b, a)``, a positive augmentation, then a z-score of that lead with population
std + 1e-8. The released files are what ``script/pretrain.py``'s ``Trainer.save_checkpoint`` writes: a Lightning
checkpoint whose ``state_dict`` names the backbone ``backbone.*``, no hyper-parameters, AdamW and
CosineAnnealingWarmRestarts states. The downstream single-lead datasets (Chapman, LVEF) read lead II: the default here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from baselines.ecgfounder import ECGFounder
from bench.data.contract import InputContract
from bench.encoders.randomness import StepRandom

_SMALL = dict(base_filters=32, ratio=0.5, filters=[32, 64, 64, 128, 128, 256], blocks=[1, 1, 2, 2, 2, 2], groups_width=8)
PRESETS: dict[str, dict[str, Any]] = {  # CLEF.py create_net1d_by_size size_configs; kernel 16, stride 2 for all
    "official_small": _SMALL,  # clef_small.ckpt, 448K parameters
    "official_medium": dict(base_filters=64, ratio=1.0, filters=[64, 160, 160, 400, 400, 1024, 1024], blocks=[2, 2, 2, 3, 3, 4, 4],
                            groups_width=16),  # clef_medium.ckpt, 30.7M
    "official_large": dict(base_filters=128, ratio=1.5, filters=[128, 256, 256, 512, 512, 1024, 1024, 2048, 2048],
                           blocks=[2, 3, 3, 4, 4, 5, 5, 6, 6], groups_width=32),  # clef_largel.ckpt, 296M
    "cpu_small": _SMALL,  # the released small design, pretrained here with the objective below
    "tiny": dict(base_filters=8, ratio=0.5, filters=[8, 16, 16], blocks=[1, 1, 1], groups_width=4, kernel=8),
}
DEFAULTS = dict(in_channels=1, leads=["II"], kernel=16, stride=2, use_bn=False, n_classes=0, fs=500.0, n_samples=5000,
                band=[0.67, 40.0], band_order=5, temperature=0.07, mask_p=0.2, text=None)
#: modules of ContrastiveModel that only its MoCo / BYOL variants hold (a released SimCLR file has none of them)
PRETRAINING_ONLY = ("backbone_k.", "backbone_target.", "predictor.", "queue", "queue_ptr")


class CLEF(ECGFounder):
    requires_pretraining = True  # cpu_small and the other presets pretrain here without a file
    presets, defaults, title, spec_name = PRESETS, DEFAULTS, "CLEF", "clef"

    def input_contract(self, c: dict[str, Any]) -> InputContract:
        return InputContract(c["fs"], c["n_samples"], leads=tuple(c["leads"]),
                             filters=(("bandpass", list(c["band"]), c["band_order"]),), filter_form="ba",
                             scale="zscore_lead_pop_eps8", window_steps=True,
                             notes="CLEF contrastive_dataloader.py: the first input_len samples, bandpass_filter(0.67, 40, "
                                   "fs=500, order 5), Normalize z-score")

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        """SimCLR's InfoNCE over two augmented views of each record's lead (ContrastiveModel._info_nce_loss at the
        configured temperature). Upstream draws each view's augmentation from MIT-BIH noise-stress recordings and
        weights negatives by a SCORE2 risk from MIMIC metadata; neither exists here, so a view is the lead with one of
        {nothing, Gaussian noise, baseline wander} and, with probability ``mask_p``, 10-30 % of it zeroed."""
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        views = torch.cat([self._augment(x, rng), self._augment(x, rng)])
        z = F.normalize(self.encode_ecg(views), dim=1)
        n = x.shape[0]
        sim = z @ z.T / self.config["temperature"]
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=x.device), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(x.device)
        loss = F.cross_entropy(sim, target)
        return {"info_nce": loss, "loss": loss}

    def _augment(self, x: torch.Tensor, rng: StepRandom) -> torch.Tensor:
        """One positive view of [B, leads, L] (every draw from the sample's own stream), z-scored again."""
        b, leads, length = x.shape
        draw = rng.rand(6)
        u = rng.rand(2, leads, length).clamp_min(1e-12)
        noise = 0.1 * torch.sqrt(-2 * torch.log(u[:, 0])) * torch.cos(2 * torch.pi * u[:, 1])
        t = torch.arange(length, device=x.device) / self.config["fs"]
        wander = 0.3 * torch.sin(2 * torch.pi * ((0.1 + 0.4 * draw[:, 1, None, None]) * t + draw[:, 2, None, None]))
        kind = (draw[:, 0] * 3).long()[:, None, None]
        out = x + torch.where(kind == 1, noise, 0.0) + torch.where(kind == 2, wander, 0.0)
        span = (length * (0.1 + 0.2 * draw[:, 3])).long()
        start = ((length - span) * draw[:, 4]).long()
        idx = torch.arange(length, device=x.device)[None]
        masked = (idx >= start[:, None]) & (idx < (start + span)[:, None]) & (draw[:, 5:6] < self.config["mask_p"])
        out = out.masked_fill(masked[:, None], 0.0)
        return (out - out.mean(-1, keepdim=True)) / (out.std(-1, unbiased=False, keepdim=True) + 1e-8)

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """A released CLEF file names the Net1D under ``backbone.`` (ContrastiveModel); bench's own files name it bare."""
        if not any(k.startswith("backbone.") for k in state):
            return dict(state)
        return {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()
                if not k.startswith(PRETRAINING_ONLY)}

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass a CLEF Lightning checkpoint (clef_small.ckpt / clef_medium.ckpt / clef_largel.ckpt from Zenodo record "
                "17572734) with encoder.preset=official_small / official_medium / official_large")


def build_clef(**config: Any) -> CLEF:
    return CLEF(**config)
