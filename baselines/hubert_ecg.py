"""HuBERT-ECG (Coppola et al., 2024; Edoar-do/HuBERT-ECG) behind the Encoder interface.

The model is a ``transformers`` HubertModel (upstream subclasses it, code/hubert_ecg.py, adding the pretraining
heads ``final_proj`` and ``label_embedding``), so the backbone here is the library's own HubertModel built from
upstream's sizes (code/pretrain.py: small 512 x 8, base 768 x 12, large 960 x 16; with ``--downsampling_factor=5``
five 512-wide conv layers of kernels 10,3,3,2,2 and strides 4,2,2,2,2; every other setting HubertConfig's default).

Input contract, as the README and code/dataset.py state it: records stored at 500 Hz after utils.ecg_preprocessing
(a 151-tap FIR band-pass 0.05-47 Hz run forward and backward, biosppy's ``filter_signal``, then each lead scaled
to [-1, 1] over the whole record); the model reads the first 5 s, NaN -> the record mean, the twelve leads
concatenated into one 30,000-sample channel, ``scipy.signal.decimate`` by 5 -> 6,000 samples (100 Hz). The
embedding is the encoder's last hidden state averaged over time (HuBERTForECGClassification without padding).

Released files: the Hugging Face folders (config.json + model.safetensors) and the ``.pt`` checkpoints
``{'model_config': HuBERTECGConfig, 'model_state_dict', 'pretraining_vocab_sizes', ...}`` that finetune.py reads.
Their ``final_proj`` / ``label_embedding`` belong to the cluster vocabulary of upstream's last pretraining iteration
and are not loaded (they are pretraining machinery; the embedding does not read them).

Pretraining here (small presets): HuBERT masked prediction of cluster targets. Upstream's first iteration
clusters 16 time-frequency statistics of each frame (code/dumping.py) with k-means, masks 33 % of the frames
(``masked_spec_embed``) and scores cosine similarities to the label embeddings / 0.1 with cross-entropy on the
masked frames. Here the frame statistics are a subset of those (min, max, mean, RMS, std, peak-to-peak and the
FFT magnitude's max, sum, mean and variance), standardised and clustered once, on the first training batch, into
``vocab_size`` k-means centroids kept in the checkpoint; later iterations (re-clustering hidden states) do not run.
Dropout and layer-drop are off in the small presets, so every draw comes from the step's seeded generator.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import HubertConfig, HubertModel

from baselines.codebook import assign_codes, fit_codebook
from baselines.keys import rename
from bench.data.contract import InputContract
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.losses import masked_mean
from bench.encoders.randomness import StepRandom

_CONV_DS5 = dict(conv_dim=[512] * 5, conv_kernel=[10, 3, 3, 2, 2], conv_stride=[4, 2, 2, 2, 2])
_UPSTREAM_INPUT = dict(fs=500.0, n_samples=5000, view_samples=2500, decimate=5, band=[0.05, 47.0], fir_taps=150,
                       scale="minmax_lead_pm1", whole_record=True)
PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(hidden=768, layers=12, heads=12, ffn=3072, proj=256, **_CONV_DS5, **_UPSTREAM_INPUT),  # base
    "official_small": dict(hidden=512, layers=8, heads=8, ffn=2048, proj=256, **_CONV_DS5, **_UPSTREAM_INPUT),
    "official_large": dict(hidden=960, layers=16, heads=12, ffn=3840, proj=512, **_CONV_DS5, **_UPSTREAM_INPUT),
    # prepared at 100 Hz directly (no decimation step), a quarter of the small model's width
    "cpu_small": dict(hidden=128, layers=3, heads=4, ffn=512, proj=64, conv_dim=[128] * 5, conv_kernel=[10, 3, 3, 2, 2],
                      conv_stride=[4, 2, 2, 2, 2], pos_conv=32, pos_groups=4, dropout=0.0, fs=100.0, n_samples=1000,
                      view_samples=500, decimate=1, band=None, fir_taps=150, scale="minmax_lead_pm1"),
    "tiny": dict(hidden=32, layers=1, heads=2, ffn=64, proj=16, conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2],
                 pos_conv=8, pos_groups=2, dropout=0.0, fs=100.0, n_samples=1000, view_samples=500, decimate=1, band=None,
                 fir_taps=150, scale="minmax_lead_pm1", vocab_size=8),
}
DEFAULTS = dict(pos_conv=128, pos_groups=16, dropout=0.1, mask_prob=0.33, vocab_size=100, temperature=0.1, text=None,
                whole_record=False)
IGNORED = ("final_proj.", "label_embedding.")  # the released files' last-iteration cluster heads
WEIGHT_NORM_TO_PARAMETRIZED = [(r"\.weight_g$", ".parametrizations.weight.original0"),
                               (r"\.weight_v$", ".parametrizations.weight.original1")]


def frame_statistics(frames: torch.Tensor) -> torch.Tensor:
    """[..., frame samples] -> [..., 10] time and frequency statistics of each frame (after code/dumping.py)."""
    spectrum = torch.fft.rfft(frames, dim=-1).abs()
    stats = [frames.amin(-1), frames.amax(-1), frames.mean(-1), frames.pow(2).mean(-1).sqrt(), frames.std(-1),
             frames.amax(-1) - frames.amin(-1), spectrum.amax(-1), spectrum.sum(-1), spectrum.mean(-1), spectrum.var(-1)]
    return torch.stack(stats, dim=-1)


class HuBERTECG(Encoder):
    pretraining_only = ("final_proj.", "label_embedding.", "centroids", "feature_mean", "feature_std")

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        overrides.pop("text", None)  # no text tower
        self.preset, self.config = preset, resolve_preset("HuBERT-ECG", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        drop = c["dropout"]
        self.hubert = HubertModel(HubertConfig(
            hidden_size=c["hidden"], num_hidden_layers=c["layers"], num_attention_heads=c["heads"], intermediate_size=c["ffn"],
            conv_dim=c["conv_dim"], conv_kernel=c["conv_kernel"], conv_stride=c["conv_stride"],
            num_conv_pos_embeddings=c["pos_conv"], num_conv_pos_embedding_groups=c["pos_groups"], mask_time_prob=c["mask_prob"],
            layerdrop=0.1 if drop else 0.0, hidden_dropout=drop, activation_dropout=drop, attention_dropout=drop,
            feat_proj_dropout=0.0, final_dropout=drop))
        self.hubert.config.mask_time_prob = 0.0  # masks come from pretraining_losses only (as upstream's classifier resets it)
        self.final_proj = nn.ModuleList([nn.Linear(c["hidden"], c["proj"])])
        self.label_embedding = nn.ModuleList([nn.Embedding(c["vocab_size"], c["proj"])])
        n_stats = frame_statistics(torch.zeros(1, 2)).shape[-1]
        self.register_buffer("centroids", torch.zeros(c["vocab_size"], n_stats))
        self.register_buffer("feature_mean", torch.zeros(n_stats))
        self.register_buffer("feature_std", torch.zeros(n_stats))
        filters = (("fir_bandpass", list(c["band"]), c["fir_taps"]),) if c["band"] else ()
        self._contract = InputContract(c["fs"], c["n_samples"], view_layout="ncrop", view_samples=c["view_samples"], n_views=1,
                                       filters=filters, scale=c["scale"], per_view=False, decimate=c["decimate"],
                                       whole_record=c["whole_record"],
                                       notes="HuBERT-ECG utils.ecg_preprocessing, then dataset.py: first 5 s, leads "
                                             "concatenated, decimated to 100 Hz")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("hubert_ecg", c["hidden"], c["fs"], c["n_samples"], n_params=self.n_params(),
                           extra={"preset": self.preset}, contract=self._contract)

    def n_params(self) -> int:
        """The HubertModel's parameters (the cluster heads depend on the pretraining vocabulary)."""
        return sum(p.numel() for p in self.hubert.parameters())

    def _hidden(self, x: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        """One view, [B, 1, samples] (leads concatenated) or [B, leads, samples] -> the last hidden state [B, T, D]."""
        return self.hubert(input_values=x.reshape(x.shape[0], -1), mask_time_indices=masked).last_hidden_state

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("HuBERT-ECG has no text tower")
        return self._hidden(x).mean(1)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self._hidden(x)

    # Pretraining -----------------------------------------------------------------------------
    def _frames(self, flat: torch.Tensor, n_frames: int) -> torch.Tensor:
        """[B, samples] -> [B, n_frames, statistics]: each token's receptive stride of the input, summarised."""
        stride = flat.shape[-1] // n_frames
        return frame_statistics(flat[:, :n_frames * stride].reshape(flat.shape[0], n_frames, stride))

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        flat = x[..., :c["view_samples"]].reshape(x.shape[0], -1)  # dataset.py: the first 5 s, leads concatenated
        n_frames = int(self.hubert._get_feat_extract_output_lengths(flat.shape[-1]))
        stats = self._frames(flat, n_frames)
        if not bool(self.feature_std.any()):  # upstream's offline k-means step, once, on the first batch
            fit_codebook(stats, self.feature_mean, self.feature_std, self.centroids)
        targets = assign_codes(stats, self.feature_mean, self.feature_std, self.centroids)
        masked = rng.rand(n_frames) < c["mask_prob"]
        h = self._hidden(flat[:, None], masked)
        logits = F.cosine_similarity(self.final_proj[0](h)[:, :, None], self.label_embedding[0].weight[None, None], dim=-1)
        ce = F.cross_entropy((logits / c["temperature"]).transpose(1, 2), targets, reduction="none")
        loss = masked_mean(ce, masked.to(ce.dtype))
        return {"masked_prediction": loss, "loss": loss}

    # Released files ----------------------------------------------------------------------------
    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        if any(k.startswith("hubert.") for k in state):
            return dict(state)
        return rename(state, WEIGHT_NORM_TO_PARAMETRIZED, prefix="hubert.", ignore=IGNORED)

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass a HuBERT-ECG file (the Hugging Face model.safetensors, or a .pt with 'model_state_dict') with "
                "encoder.preset=official (base), official_small or official_large")


def build_hubert_ecg(**config: Any) -> HuBERTECG:
    return HuBERTECG(**config)
