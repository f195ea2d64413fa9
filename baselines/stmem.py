"""ST-MEM (Na et al., ICLR 2024; bakqui/ST-MEM) behind the Encoder interface, re-implemented from its facts.

ViT over per-lead patches of 75 samples at 250 Hz (9 s crops = 30 patches per lead), patch embedding
LayerNorm -> Linear -> LayerNorm, frozen sin/cos positions (1, 32, D) with zero rows at 0 and 31, a
learnable SEP at both ends of every lead, 12 lead embeddings, pre-LN blocks; pooled = mean over the
non-SEP tokens then LayerNorm. Input contract (configs/downstream/st_mem.yaml eval_transforms):
250 Hz (FFT resampling, util/transforms.Resample), 3 evenly spaced crops of 2,250 samples first, then
per crop a Butterworth-5 zero-phase high-pass at 0.67 Hz and a separate low-pass at 40 Hz and a
standardisation over leads x time (population std, 0 where std is 0); the crops' embeddings are
averaged (engine_downstream averages over crops). Pretraining: each lead masked independently at 0.75,
per-lead decoder, MSE on masked patches with per-patch normalised targets. Released files:
``encoder.pth`` ({'epoch', 'model': encoder state, ...}) and the full pretraining ``checkpoint-N.pth``
({'model': encoder.* + decoder keys + the shared to_patch_embedding.*}).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from baselines.keys import VIT_BLOCK_RULES, rename
from bench.data.contract import WHOLE_RECORD_OPTIONS, InputContract, whole_record_fields
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.losses import masked_mse
from bench.encoders.randomness import StepRandom
from bench.encoders.vit import ECGViT, MaskedDecoder, random_keep

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(width=768, depth=12, heads=12, mlp=3072, dec_width=256, dec_depth=4, dec_heads=4),  # ViT-B/75
    "vit_small": dict(width=384, depth=12, heads=6, mlp=1536, dec_width=256, dec_depth=4, dec_heads=4),
    "cpu_small": dict(width=96, depth=4, heads=3, mlp=384, dec_width=64, dec_depth=1, dec_heads=4),
    "tiny": dict(width=32, depth=1, heads=2, mlp=64, dec_width=32, dec_depth=1, dec_heads=2),
}
#: util/dataset.ECGDataset resamples the whole stored record and eval_transforms' NCrop spreads its 3 crops over all of
#: it: bench does that over a record's first 60 s (PTB-XL, Chapman, MIMIC-IV-ECG arrays stay 10 s: their records are)
DEFAULTS = dict(fs=250.0, crop=2250, patch=75, record_samples=2500, n_crops=3, mask_ratio=0.75, highpass=0.67,
                lowpass=40.0, filter_order=5, text=None, **WHOLE_RECORD_OPTIONS)
# Keys of the full pretraining file that only pretraining reads: the decoder and the alias of the
# encoder's patch embedding at the top level (the same tensors as encoder.to_patch_embedding.*).
PRETRAINING_KEYS = ("to_decoder_embedding.", "decoder_", "mask_embedding", "to_patch_embedding.")


class STMEMBackbone(ECGViT):
    """The ViT with its positional table as a frozen parameter, as in the official state dict."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        table = self._buffers.pop("pos")
        self.pos = nn.Parameter(table, requires_grad=False)


class STMEM(Encoder):
    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        overrides.pop("text", None)  # no text tower
        self.preset, self.config = preset, resolve_preset("ST-MEM", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        self.encoder = STMEMBackbone(n_leads=12, n_samples=c["crop"], patch=c["patch"], width=c["width"], depth=c["depth"],
                                     heads=c["heads"], mlp=c["mlp"])
        self.decoder = MaskedDecoder(c["width"], 12, self.encoder.n_patches, c["patch"], c["dec_width"], c["dec_depth"],
                                     c["dec_heads"], mlp=4 * c["dec_width"])
        self._contract = InputContract(
            c["fs"], c["record_samples"], resample="fft", view_layout="ncrop", view_samples=c["crop"], n_views=c["n_crops"],
            filters=(("highpass", c["highpass"], c["filter_order"]), ("lowpass", c["lowpass"], c["filter_order"])),
            scale="standardize_record", per_view=True, lead_subset="native", **whole_record_fields(c))

    pretraining_only = ("decoder.",)

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("stmem", c["width"], c["fs"], c["record_samples"], n_params=sum(p.numel() for p in self.encoder.parameters()),
                           extra={"preset": self.preset}, contract=self._contract)

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("ST-MEM has no text tower")
        return self.encoder(x, leads=self.contract.lead_index)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.forward_tokens(x, leads=self.contract.lead_index)[:, :, 1:-1]
        return self.encoder.norm(tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]))

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        start = rng.batch_randint(0, max(1, x.shape[-1] - c["crop"] + 1))
        x = x[..., start:start + c["crop"]]
        keep, mask = random_keep(rng.rand(12, self.encoder.n_patches), c["mask_ratio"])
        tokens = self.encoder.forward_tokens(x, keep)
        pred = self.decoder(self.encoder.norm(tokens[:, :, 1:-1]), keep)
        mse = masked_mse(pred, self.encoder.patchify(x), mask, normalise_target=True)
        return {"mse": mse, "loss": mse}

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        if "encoder.pos" in state:  # one of ours
            return dict(state)
        if "encoder.pos_embedding" in state:  # the full pretraining file: keep the encoder, drop what pretraining reads
            unknown = {k: v for k, v in state.items() if not k.startswith(("encoder.",) + PRETRAINING_KEYS)}
            state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
            state.update(unknown)  # the strict loader reports them as unexpected
        out = rename(state, VIT_BLOCK_RULES + [(r"^to_patch_embedding\.1\.", "patch_embed.0."),
                                               (r"^to_patch_embedding\.2\.", "patch_embed.1."),
                                               (r"^to_patch_embedding\.3\.", "patch_embed.2."),
                                               (r"^sep_embedding$", "sep")],
                     prefix="encoder.", ignore=("lead_embeddings.", "pos_embedding", "head."))
        if "pos_embedding" in state:
            out["encoder.pos"] = state["pos_embedding"].reshape(-1, state["pos_embedding"].shape[-1])
        leads = sorted((k for k in state if k.startswith("lead_embeddings.")), key=lambda k: int(k.split(".")[1]))
        if leads:
            out["encoder.lead_embed"] = torch.stack([state[k] for k in leads])
        return out

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass ST-MEM's encoder.pth or a full checkpoint-N.pth of the same architecture (encoder.preset=official "
                "for ViT-B/75)")

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith("encoder.")}


def build_stmem(**config: Any) -> STMEM:
    return STMEM(**config)
