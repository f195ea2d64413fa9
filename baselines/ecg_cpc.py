"""ECG-CPC (Al-Masud M. A., Lopez Alcaraz J., Strodthoff N., "Benchmarking ECG Foundational Models: A Reality Check
Across Clinical Tasks", ICLR 2026; AI4HealthUOL/ecg-fm-benchmarking) behind the Encoder interface: contrastive
predictive coding with a convolutional encoder and a causal structured state-space (S4) predictor, pretrained on HEEDB.

Upstream builds it from code/conf/config_cpc_ecg_s4_heedb.yaml through clinical_ts' TimeSeriesEncoder:
- encoder (``ts/enc: rnn``, ts/encoder.py RNNEncoder, "actually just a conv encoder"): four [Conv1d (no bias, padding
  (k-1)//2) -> BatchNorm1d -> ReLU] with features 512 x 4, kernels 3, 1, 1, 1 and strides 2, 1, 1, 1;
- predictor (``ts/pred: s4``, ts/s4.py S4Predictor -> S4Model): causal S4 (N 8, H 512, 4 layers, dropout 0.2, LayerNorm
  post-norm), no input projection (512 = 512), l_max = the pretraining input's length in steps (10 s x 240 Hz / 2);
- SSL head (``ts/head_ssl: mlp``, multi_prediction, no bias): Linear(512, 512) per step, and the CPC loss
  (loss/selfsupervised.py CPCLoss): the head's output at step i scores the encoder output at step i + 14 against 128
  negatives drawn from the same sequence (``negatives_from_same_seq_only``), cross-entropy summed over i.
bench re-implements these with upstream's module names (baselines/s4.py holds the S4 stack shared with the supervised
S4), so the Lightning checkpoint's ``ts_encoder.*`` state loads strictly.

Embedding (the reality check's CPCWrapper): the predictor's output sequence [B, T, 512], averaged over time; token
features are that sequence. Input contract (run.sh ``--architecture cpc --input-size 2.5 --fs-model 240``; no
``--normalize``): millivolts at 240 Hz, 2.5 s windows; bench embeds the four non-overlapping windows of the 10 s record and
averages them (the reality check averages predictions over the same windows). Pretraining reads whole 10 s records,
as upstream's config (``base.input_size: 10``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.keys import strip_prefix
from baselines.s4 import S4Net
from bench.data.contract import WHOLE_RECORD_OPTIONS, InputContract, whole_record_fields
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.randomness import StepRandom

PRESETS: dict[str, dict[str, Any]] = {
    # config_cpc_ecg_s4_heedb.yaml: ts.enc, ts.pred (layers: S4PredictorConfig's default 4), ts.loss
    "official": dict(features=[512, 512, 512, 512], kss=[3, 1, 1, 1], strides=[2, 1, 1, 1], d_state=8, n_layers=4,
                     steps_predicted=14, n_negatives=128),
    "cpu_small": dict(features=[64, 64, 64, 64], kss=[3, 1, 1, 1], strides=[4, 2, 1, 1], d_state=8, n_layers=2,
                      steps_predicted=4, n_negatives=16),
    "tiny": dict(features=[16, 16], kss=[3, 1], strides=[4, 2], d_state=4, n_layers=1, steps_predicted=2, n_negatives=4),
}
DEFAULTS = dict(in_channels=12, fs=240.0, n_samples=2400, view_samples=600, dropout=0.2, dt_min=1e-3, dt_max=1e-1,
                pretrain_samples=2400, **WHOLE_RECORD_OPTIONS)


def conv_block(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    """clinical_ts' _conv1d with batch norm: Conv1d without bias, BatchNorm1d, ReLU."""
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
                         nn.BatchNorm1d(c_out), nn.ReLU(inplace=True))


class ConvEncoder(nn.Module):
    """RNNEncoder: the conv stack, [B, leads, samples] -> [B, steps, features]."""

    def __init__(self, c: dict[str, Any]):
        super().__init__()
        widths = [c["in_channels"], *c["features"]]
        self.layers = nn.Sequential(*(conv_block(widths[i], widths[i + 1], k, s)
                                      for i, (k, s) in enumerate(zip(c["kss"], c["strides"]))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).transpose(1, 2)


class Predictor(nn.Module):
    """S4Predictor: ``predictor`` is the S4Model (causal, no input projection, no pooling, no decoder)."""

    def __init__(self, c: dict[str, Any], length: int):
        super().__init__()
        self.predictor = S4Net({**c, "in_channels": None, "n_classes": None, "d_model": c["features"][-1]}, length, bidirectional=False)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.predictor.sequence(seq.transpose(1, 2)).transpose(1, 2)


class SSLHead(nn.Module):
    """MLPHead (multi_prediction, bias false): one linear map per step, the CPC prediction."""

    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(width, width, bias=False))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.proj(seq)


def cpc_loss(predicted: torch.Tensor, encoded: torch.Tensor, steps: int, n_negatives: int, rng: StepRandom) -> tuple[torch.Tensor, torch.Tensor]:
    """CPCLoss with negatives from the same sequence, all steps at once: for each step i < T - steps, the prediction at i
    against the encoding at i + steps (the positive) and ``n_negatives`` encodings drawn uniformly from the other steps of
    the same record; cross-entropy, averaged over the batch and summed over i (as upstream). Returns (loss, accuracy)."""
    b, t, _ = encoded.shape
    positions = t - steps
    if positions < 1:
        raise ValueError(f"CPC needs more than {steps} steps; the input gives {t} (fix: longer records or fewer steps_predicted)")
    sim = torch.bmm(predicted[:, :positions], encoded.transpose(1, 2))  # [B, positions, T]
    target = torch.arange(positions, device=encoded.device) + steps
    draw = (rng.rand(positions, n_negatives) * (t - 1)).long().clamp_max(t - 2)  # uniform over T - 1 steps
    negatives = draw + (draw >= target[None, :, None]).long()  # skip the positive
    candidates = torch.cat([target.expand(b, positions).unsqueeze(-1), negatives], dim=-1)
    logits = torch.gather(sim, 2, candidates)  # [B, positions, 1 + negatives], the positive first
    labels = torch.zeros(b * positions, dtype=torch.long, device=encoded.device)
    ce = F.cross_entropy(logits.reshape(b * positions, -1), labels, reduction="none").view(b, positions)
    accuracy = (logits.argmax(-1) == 0).float().mean()
    return ce.mean(0).sum(), accuracy


class ECGCPC(Encoder):
    requires_pretraining = True  # cpu_small: CPC on the run's pool; official: the released checkpoint

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        overrides.pop("text", None)  # no text tower
        self.preset, self.config = preset, resolve_preset("ECG-CPC", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        length = c["pretrain_samples"] // int(np.prod(c["strides"]))
        self.encoder = ConvEncoder(c)
        self.predictor = Predictor(c, length)
        self.head_ssl = SSLHead(c["features"][-1])
        self._contract = InputContract(c["fs"], c["n_samples"], view_layout="tile", view_samples=c["view_samples"],
                                       resample="resampy", resample_per_window=True, **whole_record_fields(c),
                                       notes="reality check run.sh: --input-size 2.5 --fs-model 240; no scaling; main_lite "
                                             "--stride-fraction-valtest 1.0: non-overlapping windows, each resampled by "
                                             "clinical_ts' Resample (resampy)")

    pretraining_only = ("head_ssl.",)

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("ecg_cpc", c["features"][-1], c["fs"], c["view_samples"], n_params=self.n_params(),
                           extra={"preset": self.preset}, contract=self._contract)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.encoder(torch.nan_to_num(x)))  # CPCWrapper: nan_to_num, then the model

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("ECG-CPC has no text tower")
        return self.encode_tokens(x).mean(1)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """CPCWrapper.get_params: the encoder (slowest), then the predictor."""
        return [list(self.encoder.parameters()), list(self.predictor.parameters())]

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        encoded = self.encoder(torch.nan_to_num(x))
        predicted = self.head_ssl(self.predictor(encoded))
        loss, accuracy = cpc_loss(predicted, encoded, c["steps_predicted"], c["n_negatives"], StepRandom.ensure(rng, x.shape[0], x.device))
        return {"cpc": loss, "loss": loss, "cpc_accuracy": accuracy.detach()}

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The Lightning checkpoint's state (``ts_encoder.*``; checkpoint.unwrap takes 'state_dict'), a fine-tuned
        run's (``model.model.ts_encoder.*`` under main_lite_ecg's module and CPCWrapper, its classifier ``model.head.*``
        left out), or bench's own."""
        state = strip_prefix(dict(state), "module.")
        prefixes = {k[:k.index("ts_encoder.") + len("ts_encoder.")] for k in state if "ts_encoder." in k}
        if len(prefixes) > 1:
            raise ValueError(f"ECG-CPC: the state holds several models ({', '.join(sorted(prefixes))}); pass one model's file")
        if prefixes:
            prefix = prefixes.pop()
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return state

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass ECG-CPC's Lightning checkpoint (figshare 30192604, the .ckpt the zip's yaml names in trainer.pretrained) "
                "with encoder.preset=official")


def build_ecg_cpc(**config: Any) -> ECGCPC:
    return ECGCPC(**config)
