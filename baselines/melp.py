"""MELP (Wang, Xu and Yu, ICML 2025; HKU-MedAI/MELP) behind the Encoder interface, re-implemented from its
facts (models/melp_model.py, models/ecgfm_model.py, backbone/transformer.py, datasets/finetune_dataset.py) on the
wav2vec 2.0 backbone ECG-FM shares (baselines/wav2vec.py; MELP builds fairseq-signals' Wav2Vec2CMSCModel).

ECG side: the wav2vec 2.0 stack (4 conv layers of 256, width 768, 8 post-LN layers, 12 heads: the "small" size),
then an attentional pooler (``n_queries_contrast`` = 13 learned queries, LayerNormed, attending the LayerNormed
frame features through a multi-head attention of 8 heads) and ``ln_contrast``. The embedding for probing is the
mean of the pooled queries (``ext_ecg_emb``, what its linear probing reads); the aligned embedding multiplies them
by ``proj_contrast`` first, averages and L2-normalises (``_encode_ecg``). Text side: ``fuyingw/heart_bert`` loaded
as a causal LM with a [BOS] token added, the last layer's state at a [CLS] appended after the padding
(``MELPModel._encode_text``), ``proj_t`` (768 -> 256 -> 256, GELU), L2-normalised; zero-shot prompts lower-cased
(``MERLModel.get_class_emd``; test_zeroshot.get_text_emb does not run for heart_bert: its name test never
matches, and a causal-LM output has no last_hidden_state).

Input contract (finetune_dataset.py): 500 Hz, the first 5,000 samples, one min-max to [0, 1] over the whole
record, leads in MIMIC-IV-ECG's order (aVL and aVF swapped).

Released file: the Lightning checkpoint of MELPModel, ``{'state_dict': {ecg_encoder.ecg_encoder.*, ecg_encoder.
attn_pool_contrast.*, ..., lm_model.*, proj_t.*, text_decoder.*, ...}}``; the captioning heads (attn_pool_caption,
ln_caption, text_decoder), the sentence projection, the wav2vec quantiser and the logit scales are pretraining
machinery and are not loaded.

Pretraining here (small presets): two of MELP's three levels. Rhythm: CLIP loss between the aligned ECG
embedding and the projected report (learnable logit scale, initial 1/0.07). Beat: the GLoRIA-style alignment of
``BeatAlignmentModule`` between the 13 pooled ECG queries (after ``proj_contrast``) and the report's sentences
(split at '.', each embedded by the text tower, then ``sent_proj``). Token level (captioning through a 6-layer
multimodal decoder) does not run here: it needs the causal heart_bert and its decoder, too large for this budget.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.merl import CPSC_WINDOW, MIMIC_LEADS
from baselines.text_side import ProjectedTextSide
from baselines.wav2vec import W2VBackbone, backbone_from_fairseq
from bench.data.contract import InputContract
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.randomness import StepRandom
from merit.text import build_text_tower

HEART_BERT = {"kind": "heart_bert", "frozen": True}
PRESETS: dict[str, dict[str, Any]] = {
    # ECGFMModel(model_size="small") inside MELPModel: shared_emb_dim 256, n_queries_contrast 13, 8 pooling heads
    "official": dict(conv_dim=256, width=768, depth=8, heads=12, ffn=3072, conv_pos=128, conv_pos_groups=16, proj=256,
                     queries=13, pool_heads=8, proj_hidden=256, fs=500.0, n_samples=5000, text=HEART_BERT,
                     dataset_windows=CPSC_WINDOW),
    "cpu_small": dict(conv_dim=128, width=128, depth=3, heads=4, ffn=512, conv_pos=16, conv_pos_groups=4, proj=64, queries=13,
                      pool_heads=4, proj_hidden=64, fs=100.0, n_samples=1000, text={"kind": "minilm", "frozen": True}),
    "tiny": dict(conv_dim=32, width=32, depth=1, heads=2, ffn=64, conv_pos=8, conv_pos_groups=2, proj=16, queries=4, pool_heads=2,
                 proj_hidden=16, fs=100.0, n_samples=1000, text={"kind": "hashing", "frozen": False, "dim": 32}),
}
DEFAULTS = dict(beat_weight=0.2, beat_temperatures=[4.0, 5.0, 10.0], dataset_windows=())
# Lightning-file keys that are pretraining machinery (see the module docstring)
NOT_LOADED = ("attn_pool_caption.", "ln_caption.", "head.", "logit_scale", "bn.")
TOP_NOT_LOADED = ("text_decoder.", "sent_proj.", "logit_scale", "uot_loss.")


class AttentionalPooler(nn.Module):
    """Learned queries attending to the frame features (backbone/transformer.AttentionalPooler)."""

    def __init__(self, dim: int, context_dim: int, heads: int, queries: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(queries, dim))
        self.attn = nn.MultiheadAttention(dim, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.ln_q, self.ln_k = nn.LayerNorm(dim), nn.LayerNorm(context_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_k(x)
        q = self.ln_q(self.query).unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.attn(q, x, x, need_weights=False)[0]


def beat_alignment(ecg_queries: torch.Tensor, sentences: list[torch.Tensor], temperatures: Sequence[float]) -> torch.Tensor:
    """MELP's BeatAlignmentModule (GLoRIA's local loss): each report's sentences attend over every ECG's queries;
    the sentence-context cosine similarities give a report-ECG score; cross-entropy in both directions."""
    t1, t2, t3 = temperatures
    scores = []
    for sent in sentences:  # [n_sentences, D] of one report
        attn = torch.softmax(torch.einsum("bqd,sd->bqs", ecg_queries, sent), dim=-1)
        attn = torch.softmax(attn.transpose(1, 2) * t1, dim=-1)  # [B, sentences, queries]
        context = attn @ ecg_queries  # [B, sentences, D]
        sim = F.cosine_similarity(context, sent[None].expand_as(context), dim=-1, eps=1e-8)
        scores.append(torch.log((sim * t2).exp().sum(1)))
    logits = torch.stack(scores, dim=1) * t3  # [ECGs, reports]
    target = torch.arange(len(sentences), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def report_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(".")]
    return [p for p in parts if p] or [text]


class MELP(ProjectedTextSide, Encoder):
    pretraining_only = ("logit_scale", "sent_proj.")

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        self.preset, self.config = preset, resolve_preset("MELP", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        self.ecg_encoder = W2VBackbone.from_preset(c)
        self.attn_pool_contrast = AttentionalPooler(c["proj"], c["width"], c["pool_heads"], c["queries"])
        self.ln_contrast = nn.LayerNorm(c["proj"])
        self.proj_contrast = nn.Parameter(c["width"] ** -0.5 * torch.randn(c["proj"], c["proj"]))
        self.text_tower = build_text_tower(**c["text"])
        self.proj_t = self.sent_proj = None
        if self.text_tower is not None:
            self.proj_t = nn.Sequential(nn.Linear(self.text_tower.dim, c["proj_hidden"]), nn.GELU(),
                                        nn.Linear(c["proj_hidden"], c["proj"]))
            self.sent_proj = nn.Linear(self.text_tower.dim, c["proj"])
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._contract = InputContract(c["fs"], c["n_samples"], leads=MIMIC_LEADS, scale="minmax_record",
                                       dataset_windows=c["dataset_windows"],
                                       notes="MELP finetune_dataset.py: first 5,000 samples (CPSC2018: the first 2,500 and "
                                             "2,500 zeros), min-max over the record, aVL/aVF swapped")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("melp", c["proj"], c["fs"], c["n_samples"], leads=MIMIC_LEADS, has_text_tower=self.text_tower is not None,
                           n_params=self.n_params(), extra={"preset": self.preset}, contract=self._contract)

    def n_params(self) -> int:
        """The ECG side that embeddings read: the wav2vec stack, the contrastive pooler and its projection."""
        return sum(p.numel() for m in (self.ecg_encoder, self.attn_pool_contrast, self.ln_contrast) for p in m.parameters()) + \
            self.proj_contrast.numel()

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 12, S] -> the wav2vec frame features [B, T, width] (features_only, no mask)."""
        return self.ecg_encoder.encoder(self.ecg_encoder.embed(x))

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 12, S] -> the pooled queries after ln_contrast [B, Q, proj]."""
        return self.ln_contrast(self.attn_pool_contrast(self._features(x)))

    def encode_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self._queries(x)
        aligned = F.normalize((q @ self.proj_contrast).mean(1), dim=-1) if self.text_tower is not None else None
        return q.mean(1), aligned

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        emb, z = self.encode_pair(x)
        if aligned and z is None:
            raise NotImplementedError("this MELP has no text tower (encoder.text.kind=none)")
        return z if aligned else emb

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        if self.text_tower is None or texts is None:
            raise ValueError("MELP pretraining aligns ECGs with reports: it needs a text tower (encoder.text.kind) and texts")
        beats = self._queries(x) @ self.proj_contrast
        z_ecg = F.normalize(beats.mean(1), dim=-1)
        z_text = self.encode_text(texts)
        logits = self.logit_scale.exp() * z_ecg @ z_text.T
        target = torch.arange(len(texts), device=x.device)
        rhythm = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        sentences = [self.sent_proj(self.text_tower(report_sentences(t))) for t in texts]
        beat = beat_alignment(beats, sentences, self.config["beat_temperatures"])
        return {"rhythm": rhythm, "beat": beat, "loss": rhythm + self.config["beat_weight"] * beat}

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        backbone = "ecg_encoder.ecg_encoder."
        if not any(k.startswith(backbone) for k in state):
            return dict(state)  # one of ours
        out = backbone_from_fairseq({k[len(backbone):]: v for k, v in state.items() if k.startswith(backbone)}, "ecg_encoder.")
        for key, value in state.items():
            if key.startswith(backbone) or key.startswith(TOP_NOT_LOADED) or key.endswith("position_ids"):
                continue
            if key.startswith("ecg_encoder."):
                if not key[len("ecg_encoder."):].startswith(NOT_LOADED):
                    out[key[len("ecg_encoder."):]] = value
            elif key.startswith("lm_model."):
                if self.text_tower is not None:
                    out["text_tower.model." + key[len("lm_model."):]] = value
            elif not (key.startswith("proj_t.") and self.text_tower is None):
                out[key] = value
        return out

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass MELP's Lightning checkpoint ({'state_dict': MELPModel state}) with encoder.preset=official; for "
                "embeddings without the text side set encoder.text.kind=none")

    def shape_hint(self, mismatched: dict[str, tuple]) -> str:
        """MELP's README pretraining command (main_pretrain.py, n_queries_contrast default 12) writes 12 contrastive
        queries while its model class and our preset have 13: say which option loads the file."""
        queries = mismatched.get("attn_pool_contrast.query")
        if queries is None:
            return ""
        return (f"this file has {queries[0][0]} contrastive queries, this preset {queries[1][0]} (MELP's main_pretrain.py "
                f"writes 12 by default, its model class has 13); load it with encoder.queries={queries[0][0]}")


def build_melp(**config: Any) -> MELP:
    return MELP(**config)
