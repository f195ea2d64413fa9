"""ECGFounder (Li et al., NEJM AI 2025; PKUDigitalHealth/ECGFounder) behind the Encoder interface, re-implemented
from its facts (net1d.py, finetune_model.py, dataset.py).

Net1D: a "same"-padded stem conv (stride 2) with Swish, then stages of bottleneck blocks (1x1 conv, grouped
k-wide conv with the stage's stride in the first block, 1x1 conv, each preceded by BatchNorm/Swish/Dropout
except the very first block's first conv; squeeze-and-excitation with ratio 2; the shortcut max-pooled when
downsampling and zero-padded on channels when widening). The released 12-lead model builds it with
``use_bn=False, use_do=False`` (the BatchNorm layers exist, and are in the file, but are not applied), 150
output classes in ``dense``. The embedding is ``deep_features``: the last stage's output averaged over time.

Input contract (dataset.py, which the README says must be followed strictly): 500 Hz, 10 s (5,000 samples),
leads I, II, III, aVR, aVL, aVF, V1-V6; a 50 Hz IIR notch (Q 30), a Butterworth-4 band-pass 0.67-40 Hz, both as
``filtfilt(b, a)``, minus a 0.4 s median-filter baseline, then one z-score over the whole record
((x - mean) / (std + 1e-8)). The released file is ``{'state_dict': Net1D state}`` (12_lead_ECGFounder.pth).
Pretraining was supervised, on the 150 cardiologist-confirmed labels of the Harvard-Emory ECG Database: no
objective of the method can run on the datasets here, so presets other than ``official`` are untrained.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.data.contract import WHOLE_RECORD_OPTIONS, InputContract, whole_record_fields
from bench.data.leads import STANDARD_LEADS
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(base_filters=64, filters=[64, 160, 160, 400, 400, 1024, 1024], blocks=[2, 2, 2, 3, 3, 4, 4], kernel=16,
                     stride=2, groups_width=16, use_bn=False, n_classes=150),
    # the released single-lead model (1_lead_ECGFounder.pth; finetune_model.ft_1lead_ECGFounder): the same Net1D on lead I
    # (dataset.py's LVEF_1lead_*_Dataset keep lead I, then the same filters and z-score)
    "official_1lead": dict(base_filters=64, filters=[64, 160, 160, 400, 400, 1024, 1024], blocks=[2, 2, 2, 3, 3, 4, 4],
                           kernel=16, stride=2, groups_width=16, use_bn=False, n_classes=150, in_channels=1, leads=["I"]),
    # the same design at about a fiftieth of the width (untrained: no objective of the method runs here)
    "cpu_small": dict(base_filters=16, filters=[16, 32, 32, 64, 64, 128, 128], blocks=[1, 1, 1, 1, 1, 1, 1], kernel=16,
                      stride=2, groups_width=16, use_bn=False, n_classes=150),
    "tiny": dict(base_filters=8, filters=[8, 16, 32], blocks=[1, 2, 1], kernel=8, stride=2, groups_width=8, use_bn=False,
                 n_classes=4),
}
#: dataset.py reads the whole record (wfdb.rdsamp), filters and scales it, and the network pools over all of it: bench
#: reads a record's first 60 s that way; PTB-XL, Chapman and MIMIC-IV-ECG records are all 10 s, their arrays stay 10 s
DEFAULTS = dict(in_channels=12, leads=list(STANDARD_LEADS), ratio=1.0, fs=500.0, n_samples=5000, notch_hz=50.0, notch_q=30.0, band=[0.67, 40.0], band_order=4,
                baseline_s=0.4, text=None, **WHOLE_RECORD_OPTIONS)


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero padding so a conv of ``kernel``/``stride`` gives ceil(length / stride) outputs, the extra sample on the right."""
    length = x.shape[-1]
    total = max(0, (-(-length // stride) - 1) * stride + kernel - length)
    return F.pad(x, (total // 2, total - total // 2))


class SameConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_pad_same(x, self.conv.kernel_size[0], self.conv.stride[0]))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, ratio: float, kernel: int, stride: int, groups: int, first: bool, use_bn: bool):
        super().__init__()
        mid = int(cout * ratio)
        self.cin, self.cout, self.stride, self.first, self.use_bn = cin, cout, stride, first, use_bn
        self.bn1, self.conv1 = nn.BatchNorm1d(cin), SameConv(cin, mid, 1)
        self.bn2, self.conv2 = nn.BatchNorm1d(mid), SameConv(mid, mid, kernel, stride, groups)
        self.bn3, self.conv3 = nn.BatchNorm1d(mid), SameConv(mid, cout, 1)
        self.se_fc1, self.se_fc2 = nn.Linear(cout, cout // 2), nn.Linear(cout // 2, cout)

    def _pre(self, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        return F.silu(bn(x) if self.use_bn else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x if self.first else self._pre(self.bn1, x))
        out = self.conv2(self._pre(self.bn2, out))
        out = self.conv3(self._pre(self.bn3, out))
        gate = torch.sigmoid(self.se_fc2(F.silu(self.se_fc1(out.mean(-1)))))
        out = out * gate[:, :, None]
        shortcut = x
        if self.stride > 1:  # max-pool with "same" zero padding, window = stride
            shortcut = F.max_pool1d(F.pad(x, ((self.stride - 1) // 2, self.stride - 1 - (self.stride - 1) // 2)), self.stride)
        if self.cout != self.cin:
            extra = self.cout - self.cin
            shortcut = F.pad(shortcut, (0, 0, extra // 2, extra - extra // 2))
        return out + shortcut


class Stage(nn.Module):
    def __init__(self, cin: int, cout: int, n_blocks: int, first_stage: bool, **kw: Any):
        super().__init__()
        stride = kw.pop("stride")
        self.block_list = nn.ModuleList(
            Block(cin if i == 0 else cout, cout, stride=stride if i == 0 else 1, first=first_stage and i == 0, **kw)
            for i in range(n_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class ECGFounder(Encoder):
    requires_pretraining = False  # supervised on HEEDB labels: the released weights, or an untrained architecture
    #: what a subclass of the same Net1D (CLEF) replaces: its presets, defaults and name in messages and specs
    presets, defaults, title, spec_name = PRESETS, DEFAULTS, "ECGFounder", "ecgfounder"

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        overrides.pop("text", None)  # no text tower
        self.preset, self.config = preset, resolve_preset(self.title, self.presets, preset, overrides, self.defaults)
        c = self.config
        if len(c["leads"]) != c["in_channels"]:
            raise ValueError(f"{self.title}: {c['in_channels']} input channels for leads {c['leads']} (fix: encoder.leads with "
                             f"as many leads as encoder.in_channels)")
        self.use_bn = c["use_bn"]
        self.first_conv = SameConv(c["in_channels"], c["base_filters"], c["kernel"], stride=2)
        self.first_bn = nn.BatchNorm1d(c["base_filters"])
        widths = [c["base_filters"], *c["filters"]]
        self.stage_list = nn.ModuleList(
            Stage(widths[i], widths[i + 1], c["blocks"][i], i == 0, ratio=c["ratio"], kernel=c["kernel"], stride=c["stride"],
                  groups=widths[i + 1] // c["groups_width"], use_bn=c["use_bn"])
            for i in range(len(c["filters"])))
        if c["n_classes"]:  # the released 150-label head (not used for embeddings); CLEF's backbone has none
            self.dense = nn.Linear(widths[-1], c["n_classes"])
        self._contract = self.input_contract(c)

    def input_contract(self, c: dict[str, Any]) -> InputContract:
        return InputContract(
            c["fs"], c["n_samples"], leads=tuple(c["leads"]), filters=(("notch", c["notch_hz"], c["notch_q"]), ("bandpass", list(c["band"]), c["band_order"])),
            filter_form="ba", baseline_median_s=c["baseline_s"], scale="zscore_record_eps", window_steps=True,
            **whole_record_fields(c),
            notes="ECGFounder dataset.py: filter_bandpass then z_score_normalization")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec(self.spec_name, c["filters"][-1], c["fs"], c["n_samples"], leads=tuple(c["leads"]),
                           n_params=self.n_params(), extra={"preset": self.preset}, contract=self._contract)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 12, samples] -> the last stage's output [B, C, T]."""
        out = self.first_conv(x)
        out = F.silu(self.first_bn(out) if self.use_bn else out)
        for stage in self.stage_list:
            out = stage(out)
        return out

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("ECGFounder has no text tower")
        return self.features(x).mean(-1)  # Net1D's deep_features

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).transpose(1, 2)

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass ECGFounder's 12_lead_ECGFounder.pth ({'state_dict': Net1D state}) with encoder.preset=official, or "
                "1_lead_ECGFounder.pth with encoder.preset=official_1lead")


def build_ecgfounder(**config: Any) -> ECGFounder:
    return ECGFounder(**config)
