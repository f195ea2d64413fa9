"""HeartLang (Jin J. et al., "Reading Your Heart: Learning ECG Words and Sentences via Pre-training ECG Language Model",
ICLR 2025; PKUDigitalHealth/HeartLang) behind the Encoder interface.

A record becomes an "ECG sentence" (QRSTokenizer.py): QRS complexes are detected on lead I with ``wfdb.processing.
xqrs_detect`` at 100 Hz; around each one, every lead gives a 96-sample "word" (from half-way to the previous beat to
half-way to the next, centred on the QRS, zero-padded, cut to 96 around the QRS when longer); the words are ordered lead
by lead (all beats of lead I, then lead II, ...), with the lead index + 1 (``in_chans``) and the 1 s block of the beat
+ 1 (``in_times``), zero-padded or cut to 256 words. The transformer (modeling_pretrain.py ST_ECGFormer) embeds each word
with a circular 3-tap convolution across the sentence (the word's 96 samples as channels), replaces masked words by a
mask token, adds lead and time-block embeddings, prepends a class token, adds learned positions and runs pre-norm
blocks; the embedding is the class token after the final LayerNorm (modeling_finetune.py ST_ECGFormerClassifier, the
linear probe's input). bench re-implements it with upstream's module names, so released states load strictly.

Input contract: 100 Hz, 10 s, millivolts. Upstream feeds PTB-XL through ecg_ptbxl_benchmarking's preprocessing, which
standardises every value with one StandardScaler fitted on the training split; bench scales nothing by default and
takes that scaler as ``input_scale: [mean, std]`` (an encoder option, so in the unit key) for released weights. For
CPSC2018 and Chapman-Shaoxing-Ningbo the ``official`` preset runs upstream's own dataset scripts' steps instead
(``DATASET_STEPS``, the contract's ``dataset_steps``): the 500 Hz record scaled to [-3, 3], FFT-resampled, and for CPSC2018
first cut to 2,500 samples and padded with zeros, for Chapman band-passed after resampling.

Pretraining upstream is two-stage: VQ-HBR learns an 8,192-word codebook of heartbeat words, then masked sentence
modelling predicts the codes of 50 % masked words. ``cpu_small`` keeps the second stage and replaces the learned
codebook with k-means codes of the (z-scored) words, fitted once on the first pretraining batch (the model card says so).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.codebook import assign_codes, fit_codebook
from baselines.keys import strip_prefix
from bench.data.contract import InputContract
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.randomness import StepRandom

#: its dataset scripts (datasets/dataset_preprocess): CPSC2018 keeps the first 2,500 samples at 500 Hz and pads 2,500
#: zeros (make_cpsc_dataset.py), Chapman is min-max scaled whole and band-passed after resampling (make_csn_datasets.py);
#: both scale the 500 Hz record to [-3, 3] before resample_signals
DATASET_STEPS = (("cpsc2018", {"keep_seconds": 5.0, "scale": "minmax_record_pm3"}),
                 ("csn", {"scale": "minmax_record_pm3", "filters": [["bandpass", [0.67, 40.0], 5]], "filter_form": "ba"}))
PRESETS: dict[str, dict[str, Any]] = {
    # modeling_pretrain.HeartLang / modeling_finetune.HeartLang_finetune_base: depth 12, 8 heads, MLP 1024, 8,192 codes
    "official": dict(embed_dim=768, depth=12, heads=8, dim_head=64, mlp_dim=1024, vocab_size=8192, dataset_steps=DATASET_STEPS),
    "cpu_small": dict(embed_dim=96, depth=4, heads=4, dim_head=24, mlp_dim=192, vocab_size=64),
    "tiny": dict(embed_dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64, vocab_size=16),
}
DEFAULTS = dict(seq_len=256, time_window=96, fs=100.0, n_samples=1000, dropout=0.1, emb_dropout=0.1, mask_ratio=0.5,
                input_scale=None, time_block=100, n_embeddings=16, dataset_steps=())


_BEATS: OrderedDict[bytes, np.ndarray] = OrderedDict()  # lead I's bytes digest -> its beats (epochs re-read records)
_BEATS_KEPT = 200_000


def detect_beats(lead: np.ndarray, fs: float) -> np.ndarray:
    """wfdb's XQRS detector on one lead (QRSTokenizer.qrs_detection), remembered per signal: it is the slow step, and
    pretraining and fine-tuning see each record once per epoch."""
    from wfdb import processing

    key = hashlib.sha1(np.ascontiguousarray(lead, dtype=np.float64).tobytes() + repr(fs).encode()).digest()
    if key not in _BEATS:
        _BEATS[key] = np.asarray(processing.xqrs_detect(sig=lead, fs=fs, verbose=False), dtype=int)
        if len(_BEATS) > _BEATS_KEPT:
            _BEATS.popitem(last=False)
    return _BEATS[key]


def qrs_sentence(record: np.ndarray, fs: float, max_len: int, word: int, time_block: int,
                 channels: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One record [leads, samples] -> (words [max_len, word], lead index + 1 [max_len], time block + 1 [max_len]), as
    QRSTokenizer.forward builds them for one record (zeros where padded); ``channels``: the record's leads' indices
    among the 12 (QRSTokenizer's ``used_channels``: beats found on the first of them; None: 0..11)."""
    n = record.shape[-1]
    beats = detect_beats(record[0], fs)
    words, chans, times = [], [], []
    bounds = [_word_bounds(beats, i, word, n) for i in range(len(beats))]
    for lead in range(record.shape[0]):
        times.extend(int(b) // time_block + 1 for b in beats)
        for start, end, offset in bounds:
            segment = np.zeros(word)
            segment[offset:offset + end - start] = record[lead, start:end]
            words.append(segment)
            chans.append((lead if channels is None else channels[lead]) + 1)
    pad = max_len - len(words)
    words += [np.zeros(word)] * max(pad, 0)
    chans += [0] * max(pad, 0)
    times += [0] * max(pad, 0)
    return np.stack(words[:max_len]), np.asarray(chans[:max_len]), np.asarray(times[:max_len])


def _word_bounds(beats: np.ndarray, i: int, word: int, n: int) -> tuple[int, int, int]:
    """QRSTokenizer.extract_qrs_segments for beat i: (start, end) in the record and the offset in the word."""
    half, center = word // 2, int(beats[i])
    last = len(beats) - 1
    start = max(center - half, 0) if i == 0 else (beats[i] + beats[i - 1]) // 2
    if i < last:
        end = (beats[i] + beats[i + 1]) // 2
    else:
        end = min(center + half, n) if i > 0 else min(start + word, n)
    start, end = max(int(start), 0), min(int(end), n)
    if end - start > word:
        start = max(center - half, 0)
        end = min(start + word, n)
    offset = max(half - (center - start), 0)
    if offset + end - start > word:
        end -= offset + end - start - word
    return start, end, offset


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention without qkv bias (modeling_pretrain.Attention)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class Embedding(nn.Module):
    """Upstream's SpatialEmbedding / TemporalEmbedding (an nn.Embedding under ``embed``)."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(n, dim)


class TokenEmbedding(nn.Module):
    def __init__(self, word: int, dim: int):
        super().__init__()
        self.tokenConv = nn.Conv1d(word, dim, kernel_size=3, padding=1, padding_mode="circular", bias=False)

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        return self.tokenConv(words.transpose(1, 2)).transpose(1, 2)


class Transformer(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([Attention(c["embed_dim"], c["heads"], c["dim_head"], c["dropout"]),
                                                   FeedForward(c["embed_dim"], c["mlp_dim"], c["dropout"])])
                                    for _ in range(c["depth"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class STECGFormer(nn.Module):
    """modeling_pretrain.ST_ECGFormer: sentence [B, words, samples] + lead and time indices -> tokens [B, 1 + words, D]."""

    def __init__(self, c: dict[str, Any]):
        super().__init__()
        d = c["embed_dim"]
        self.token_embed = TokenEmbedding(c["time_window"], d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.cls_token = nn.Parameter(torch.randn(d))
        self.pos_embed = nn.Parameter(torch.randn(1, c["seq_len"] + 1, d))
        self.spa_embed = Embedding(c["n_embeddings"], d)
        self.tem_embed = Embedding(c["n_embeddings"], d)
        self.dropout = nn.Dropout(c["emb_dropout"])
        self.transformer = Transformer(c)
        self.norm_layer = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, c["vocab_size"])

    def forward(self, words: torch.Tensor, chans: torch.Tensor, times: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        x = self.token_embed(words)
        if masked is not None:
            w = masked.unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + self.mask_token * w
        x = x + self.spa_embed.embed(chans) + self.tem_embed.embed(times)
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), x], dim=1) + self.pos_embed
        return self.norm_layer(self.transformer(self.dropout(x)))


class HeartLang(Encoder):
    requires_pretraining = True  # cpu_small: masked sentence modelling on the run's pool; official: the released file
    pretraining_only = ("backbone.lm_head.", "centroids", "word_mean", "word_std")

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        overrides.pop("text", None)  # no text tower
        self.preset, self.config = preset, resolve_preset("HeartLang", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        self.backbone = STECGFormer(c)
        self.register_buffer("centroids", torch.zeros(c["vocab_size"], c["time_window"]))
        self.register_buffer("word_mean", torch.zeros(c["time_window"]))
        self.register_buffer("word_std", torch.zeros(c["time_window"]))
        scale = c["input_scale"]
        self._contract = InputContract(c["fs"], c["n_samples"], resample="fft", dataset_steps=c["dataset_steps"], lead_subset="native",
                                       notes="HeartLang QRSTokenizer: 100 Hz, 10 s; records of other rates resampled with "
                                             "scipy.signal.resample over the record (datasets/dataset_preprocess "
                                             "resample_signals); upstream "
                                       "standardises with its training set's StandardScaler" + (f" (here {list(scale)})" if scale else ""))

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("heartlang", c["embed_dim"], c["fs"], c["n_samples"], n_params=self.n_params(),
                           extra={"preset": self.preset}, contract=self._contract)

    def n_params(self) -> int:
        """ST_ECGFormer's parameters (with its language-model head, as upstream counts them)."""
        return sum(p.numel() for p in self.backbone.parameters())

    def sentences(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Records [B, leads, 1000] (12, or a native subset's) -> QRSTokenizer's words, lead and time indices (on the
        CPU: wfdb's detector)."""
        c = self.config
        arr = torch.nan_to_num(x).detach().cpu().double().numpy()
        if c["input_scale"]:
            mean, std = c["input_scale"]
            arr = (arr - mean) / std
        parts = [qrs_sentence(r, c["fs"], c["seq_len"], c["time_window"], c["time_block"], self.contract.lead_index) for r in arr]
        words, chans, times = (torch.as_tensor(np.stack(p)) for p in zip(*parts))
        return words.to(x.device, torch.float32), chans.to(x.device, torch.long), times.to(x.device, torch.long)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(*self.sentences(x))

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("HeartLang has no text tower")
        return self.encode_tokens(x)[:, 0]  # ST_ECGFormerClassifier: the class token

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Embeddings, then each transformer block (run_class_finetuning's layer-wise decay assigns them in this order)."""
        b = self.backbone
        first = [p for n, p in b.named_parameters() if not n.startswith(("transformer.", "norm_layer.", "lm_head.", "mask_token"))]
        return [first] + [list(layer.parameters()) for layer in b.transformer.layers] + [list(b.norm_layer.parameters())]

    # Pretraining -----------------------------------------------------------------------------
    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        words, chans, times = self.sentences(x)
        if not bool(self.word_std.any()):  # the stand-in for VQ-HBR's codebook, once, on the first batch
            fit_codebook(words, self.word_mean, self.word_std, self.centroids)
        codes = assign_codes(words, self.word_mean, self.word_std, self.centroids)
        masked = rng.rand(c["seq_len"]).argsort(-1).argsort(-1) >= int(c["seq_len"] * (1 - c["mask_ratio"]))  # random_masking
        tokens = self.backbone(words, chans, times, masked)[:, 1:]
        loss = F.cross_entropy(self.backbone.lm_head(tokens[masked]), codes[masked])
        return {"masked_sentence": loss, "loss": loss}

    # Released files ----------------------------------------------------------------------------
    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The pretraining file's ST_ECGFormer state ('model', bare keys: load_state_dict adds ``backbone.``), a
        fine-tuned classifier's (``backbone.*`` and ``mlp_head.*``, left out, with a language-model head of the
        classifier's default vocabulary, left out when its size is not this preset's), or bench's own."""
        state = strip_prefix(dict(state), "module.")
        if not any(k.startswith("backbone.") for k in state):
            state = {f"backbone.{k}": v for k, v in state.items()}
        ours = self.backbone.lm_head.weight.shape
        return {k: v for k, v in state.items() if not k.startswith("mlp_head.")
                and not (k.startswith("backbone.lm_head.") and v.shape[0] != ours[0])}

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass HeartLang's pretraining checkpoint (Hugging Face PKUDigitalHealth/HeartLang, heartlang_base/"
                "checkpoint-200.pth: its 'model' state) with encoder.preset=official")


def build_heartlang(**config: Any) -> HeartLang:
    return HeartLang(**config)
