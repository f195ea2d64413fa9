"""D-BETA (Hung et al., ICML 2025; manhph2211/D-BETA) behind the Encoder interface.

ECG encoder (wav2vec2-style, baselines/wav2vec.py): 4 x Conv1d(256, kernel 2, stride 2) (5000 samples
-> 312 tokens), LayerNorm, Linear 256 -> 768, convolutional positions (kernel 128, 16 groups), a
learnable CLS prepended, LayerNorm, 8 post-LN layers (768, 12 heads, FFN 3072): 62.02M parameters.
Feature = ``unimodal_ecg_pooler`` (Linear + tanh on CLS) of ``multi_modal_ecg_proj`` (768 -> 768).
Text side (models/dbeta.py forward): flan-t5-base encoder (trained with the rest; the released file
holds it as ``language_encoder.*``) run on the lower-cased text without an attention mask, then
``multi_modal_language_proj`` (768 -> 768) and ``unimodal_language_pooler`` (Linear + tanh on the
first token). Input contract (models/processor.get_ecg_feats): 500 Hz, 10 s, no normalisation or
filtering. Released files: fairseq-style {'cfg', 'model'}; every key the embedding and text paths
read must be present, the fusion layers and pretraining heads are not used.

Pretraining here (small presets) turns on two of the four official terms: masked ECG modelling (75%
of the conv tokens masked; a light decoder reconstructs the normalised 16-sample x 12-lead chunk of
each token) and the SigLIP-style sigmoid loss on the pooled ECG / text features. MLM and ECG-text
matching with hard negatives are off (they need the cross-modal fusion layers).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.keys import WEIGHT_NORM_RULES, rename
from baselines.wav2vec import W2VBackbone
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.losses import gather_batch, masked_mean
from bench.encoders.randomness import StepRandom
from bench.encoders.vit import Block, sincos_positions
from merit.text import build_text_tower

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(conv_dim=256, width=768, depth=8, heads=12, ffn=3072, conv_pos=128, conv_pos_groups=16, fs=500.0,
                     n_samples=5000, dec_width=384, dec_depth=5, dec_heads=6,
                     text={"kind": "t5", "frozen": True, "pooling": "first_unpadded", "lowercase": True}),
    "cpu_small": dict(conv_dim=128, width=128, depth=3, heads=4, ffn=512, conv_pos=16, conv_pos_groups=4, fs=100.0,
                      n_samples=1000, dec_width=64, dec_depth=1, dec_heads=4, text={"kind": "minilm", "frozen": True}),
    "tiny": dict(conv_dim=32, width=32, depth=1, heads=2, ffn=64, conv_pos=8, conv_pos_groups=2, fs=100.0, n_samples=1000,
                 dec_width=32, dec_depth=1, dec_heads=2, text={"kind": "hashing", "frozen": False, "dim": 32}),
}
DEFAULTS = dict(mask_ratio=0.75)
# Official keys no embedding or text path reads: the fusion layers and the pretraining heads.
IGNORED = ("multi_modal_ecg_layers.", "multi_modal_language_layers.", "multi_modal_ecg_pooler.",
           "multi_modal_language_pooler.", "modality_type_embeddings.", "mlm_head.", "mim_head.", "itm_head.",
           "ecg_encoder.mask_emb")
# the official text side -> ours
TEXT_RULES = [(r"^language_encoder\.", "text_tower.model."), (r"^multi_modal_language_proj\.", "text_proj."),
              (r"^unimodal_language_pooler\.", "text_pooler.")]
TEXT_SIDE = ("language_encoder.", "multi_modal_language_proj.", "unimodal_language_pooler.", "text_tower.", "text_proj.",
             "text_pooler.")


class Pooler(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.dense = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(h[:, 0]))


class DBETA(Encoder):
    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        self.preset, self.config = preset, resolve_preset("D-BETA", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        self.ecg_encoder = W2VBackbone.from_preset(c)
        self.class_embedding = nn.Parameter(torch.rand(c["width"]))
        self.multi_modal_ecg_proj = nn.Linear(c["width"], c["width"])
        self.unimodal_ecg_pooler = Pooler(c["width"])
        self.text_tower = build_text_tower(**c["text"])
        if self.text_tower is not None:
            self.text_proj = nn.Linear(self.text_tower.dim, c["width"])
            self.text_pooler = Pooler(c["width"])
            self.siglip_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.siglip_bias = nn.Parameter(torch.tensor(-10.0))
        stride = self.ecg_encoder.feature_extractor.stride
        self.chunk = stride
        self.mim_embed = nn.Linear(c["width"], c["dec_width"])
        self.mim_token = nn.Parameter(torch.zeros(c["dec_width"]))
        self.mim_blocks = nn.ModuleList(Block(c["dec_width"], c["dec_heads"], 4 * c["dec_width"]) for _ in range(c["dec_depth"]))
        self.mim_pred = nn.Linear(c["dec_width"], 12 * stride)

    pretraining_only = ("mim_", "siglip_")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("d_beta", c["width"], c["fs"], c["n_samples"], has_text_tower=self.text_tower is not None,
                           n_params=sum(p.numel() for p in self.ecg_encoder.parameters()), extra={"preset": self.preset})

    def _hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = self.class_embedding.expand(tokens.shape[0], 1, -1)
        return self.ecg_encoder.encoder(torch.cat([cls, tokens], dim=1))

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        return self.unimodal_ecg_pooler(self.multi_modal_ecg_proj(self._hidden(self.ecg_encoder.embed(x))))

    def encode_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.encode_ecg(x)
        return z, (z if self.text_tower is not None else None)  # D-BETA aligns its pooled features directly

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi_modal_ecg_proj(self._hidden(self.ecg_encoder.embed(x)))[:, 1:]

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        if self.text_tower is None:
            return super().encode_text(texts)
        return self.text_pooler(self.text_proj(self.text_tower(texts)).unsqueeze(1))

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        tokens = self.ecg_encoder.embed(x)
        b, t, d = tokens.shape
        rng = StepRandom.ensure(rng, b, x.device)
        keep_n = max(1, int(t * (1 - self.config["mask_ratio"])))
        order = rng.rand(t).argsort(1)
        keep = order[:, :keep_n].sort(1).values
        visible = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, d))
        h = self.multi_modal_ecg_proj(self._hidden(visible))
        # masked ECG modelling: reconstruct each masked token's 16-sample x 12-lead chunk, normalised
        dec = self.mim_token.expand(b, t, -1).clone()
        dec.scatter_(1, keep[..., None].expand(-1, -1, dec.shape[-1]), self.mim_embed(h[:, 1:]))
        dec = dec + sincos_positions(t, dec.shape[-1], zero_ends=False).to(x.device)
        for blk in self.mim_blocks:
            dec = blk(dec)
        pred = self.mim_pred(dec)
        target = x[..., : t * self.chunk].reshape(b, 12, t, self.chunk).permute(0, 2, 1, 3).reshape(b, t, -1)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
        masked = torch.ones(b, t, device=x.device).scatter_(1, keep, 0.0)
        mim = masked_mean(((pred - target) ** 2).mean(-1), masked)
        out = {"mim": mim}
        if self.text_tower is not None and texts is not None:
            z_e = F.normalize(gather_batch(self.unimodal_ecg_pooler(h)), dim=-1)
            z_t = F.normalize(gather_batch(self.encode_text(texts)), dim=-1)
            logits = z_e @ z_t.T * self.siglip_scale.exp() + self.siglip_bias
            labels = 2 * torch.eye(len(z_e), device=x.device) - 1
            out["siglip"] = -F.logsigmoid(labels * logits).sum() / len(z_e)
        out["loss"] = sum(out.values())
        return out

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        if self.text_tower is None:  # no text tower requested: the text side is not needed
            state = {k: v for k, v in state.items() if not k.startswith(TEXT_SIDE)}
        state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
        return rename(state, WEIGHT_NORM_RULES + TEXT_RULES, ignore=IGNORED)

    def missing_hint(self, missing: list[str]) -> str:
        if any(k.startswith(("text_proj.", "text_pooler.")) for k in missing):
            return "this file lacks D-BETA's text side; for ECG embeddings alone set encoder.text.kind=none"
        return "use a D-BETA file of the same architecture (encoder.preset=official for the released model)"

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        frozen = self.text_tower is not None and self.text_tower.frozen
        return {k: v for k, v in self.state_dict().items() if not (frozen and k.startswith("text_tower."))}


def build_d_beta(**config: Any) -> DBETA:
    return DBETA(**config)
