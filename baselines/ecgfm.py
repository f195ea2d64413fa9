"""ECG-FM (McKeen et al.; bowang-lab/ECG-FM on fairseq-signals) behind the Encoder interface.

Backbone (baselines/wav2vec.py): the wav2vec2-style conv stem and convolutional positions, 12 post-LN
layers (768, 12 heads, FFN 3072); input 12 x 2500 (5 s at 500 Hz) -> 156 tokens; 90.37M parameters.
Embedding = mean of the encoder outputs over time; a 10 s record is two 5 s segments, averaged.
Preprocessing: leads in the standard order, resampled to 500 Hz (the shared pipeline), z-score per
lead, flat leads -> 0.

Pretraining here (small presets) turns on CMSC (InfoNCE, T = 0.1, between the two adjacent 5 s
segments of a record; the official pairs segments of the same patient), random lead masking
(p = 0.5, as input augmentation) and a simplified masked-prediction term (65% of the tokens replaced
by ``mask_emb``; MSE against the detached local features). The wav2vec2 quantiser, its contrastive
negatives and diversity loss are off.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from baselines.keys import strip_prefix
from bench.data.contract import InputContract
from baselines.wav2vec import W2VBackbone, backbone_from_fairseq
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.losses import info_nce, masked_mean
from bench.encoders.randomness import StepRandom

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(conv_dim=256, width=768, depth=12, heads=12, ffn=3072, conv_pos=128, conv_pos_groups=16, fs=500.0,
                     segment=2500, n_samples=5000),
    "cpu_small": dict(conv_dim=128, width=128, depth=3, heads=4, ffn=512, conv_pos=16, conv_pos_groups=4, fs=100.0,
                      segment=500, n_samples=1000),
    "tiny": dict(conv_dim=32, width=32, depth=1, heads=2, ffn=64, conv_pos=8, conv_pos_groups=2, fs=100.0, segment=500,
                 n_samples=1000),
}
DEFAULTS = dict(cmsc_temperature=0.1, lead_mask_p=0.5, mask_p=0.65, text=None)


class ECGFM(Encoder):
    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        overrides.pop("text", None)
        self.preset, self.config = preset, resolve_preset("ECG-FM", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        self.backbone = W2VBackbone.from_preset(c)
        self.mask_emb = nn.Parameter(torch.rand(c["width"]))
        self.cmsc_proj = nn.Linear(c["width"], c["width"])
        self.mp_head = nn.Linear(c["width"], c["width"])
        self._contract = InputContract(c["fs"], c["n_samples"], view_layout="tile", view_samples=c["segment"],
                                       scale="zscore_lead_flat0", per_view=False)

    pretraining_only = ("mask_emb", "cmsc_proj.", "mp_head.")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("ecg_fm", c["width"], c["fs"], c["n_samples"], n_params=sum(p.numel() for p in self.backbone.parameters()),
                           extra={"preset": self.preset}, contract=self._contract)

    def _segments(self, x: torch.Tensor) -> list[torch.Tensor]:
        seg = self.config["segment"]
        n = max(1, x.shape[-1] // seg)
        return [x[..., i * seg:(i + 1) * seg] for i in range(n)]

    def _embed_segment(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.encoder(self.backbone.embed(x)).mean(1)

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("ECG-FM has no text tower")
        return self._embed_segment(x)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.encoder(self.backbone.embed(x))

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        keep_leads = (rng.rand(12, 1) >= c["lead_mask_p"]).to(x.dtype)
        x = x * keep_leads  # random lead masking
        first, second = self._segments(x)[:2]
        z1, z2 = self._embed_segment(first), self._embed_segment(second)
        cmsc = info_nce(self.cmsc_proj(z1), self.cmsc_proj(z2), c["cmsc_temperature"])
        local = self.backbone.local_features(first)
        masked = rng.rand(local.shape[1]) < c["mask_p"]
        inp = torch.where(masked[..., None], self.mask_emb.to(local.dtype), local)
        h = self.backbone.encoder(inp + self.backbone.conv_pos(inp))
        mp = masked_mean(((self.mp_head(h) - local.detach()) ** 2).mean(-1), masked.to(h.dtype))
        return {"cmsc": cmsc, "masked_pred": mp, "loss": cmsc + mp}

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        self.file_form = "finetuned" if "proj.weight" in state else "pretrained"
        if "proj.weight" in state:  # fine-tuned file: encoder wrapped as encoder.* next to the classifier proj.*
            state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
            state = strip_prefix(state, "w2v_model.")
        if any(k.startswith("backbone.") for k in state):
            return dict(state)
        out = backbone_from_fairseq(state, "backbone.")  # the fine-tuned file's classifier is proj.*, dropped there
        if "mask_emb" in state:
            out["mask_emb"] = state["mask_emb"]
        return out

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith("backbone.")}


def build_ecg_fm(**config: Any) -> ECGFM:
    return ECGFM(**config)
