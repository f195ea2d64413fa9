"""xresnet1d101 (Strodthoff et al., "Deep learning for ECG analysis: benchmarks and insights from PTB-XL", IEEE JBHI
2021; helme/ecg_ptbxl_benchmarking code/models/xresnet1d.py) behind the Encoder interface: the PTB-XL benchmark's
strongest supervised model, for the ``scratch`` mode (no released weights: ``requires_pretraining = False``).

Re-implemented from its facts, with upstream's module layout so that an upstream state dict loads strictly:
``nn.Sequential`` of a stem (three conv-BN-ReLU layers, kernel 5, the first with stride 2: 12->32->32->64), a max pool
(3, stride 2, padding 1), four stages of bottleneck ResBlocks (expansion 4; [3, 4, 23, 3] blocks; width 64, so 256
channels out; the first block of stages 2-4 with stride 2; the shortcut average-pooled (2, ceil) when striding and
projected by a 1x1 conv-BN when widening; the last BN of each block initialised to zero) and the head
``create_head1d`` (concat pooling [max, avg] -> BN-Dropout(0.25)-Linear(512, 128)-ReLU -> BN-Dropout(0.5)-Linear(128,
classes)). Convolutions are Kaiming-normal initialised, BN biases 1e-3. Each ResBlock registers its conv stack twice
(``convs`` and ``convpath.0``), as upstream does, so both names are in the state dict.

The embedding is the head's pooled input: concat pooling of the last stage, [B, 512]. Input contract (fastai_model.py):
100 Hz, windows of 2.5 s; at test time windows of 250 samples every 125 samples over the whole record (7 over 10 s, 11
over 15 s; a chunk shorter than the window dropped), aggregated (upstream: the maximum of the predictions; here the
mean of the views, as every encoder). 500 Hz records reach 100 Hz as convert_ICBEB.py brings CPSC2018 there:
``scipy.ndimage.zoom`` of each lead by 0.2.
Upstream standardises with one StandardScaler fitted on all training values; the contract scales nothing: weights trained
in bench learn their BatchNorm statistics on bench's input, and a state dict trained upstream needs its run's scaler
applied to the records first (the model card says so).

The class is parametrised by its stage widths and whether it carries the classification head, so the ECG encoder of
ECGFM-KED (the same design with widths 64-128-128-192 and no head) reuses it (baselines/ecgfm_ked.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.data.contract import WHOLE_RECORD_OPTIONS, InputContract, whole_record_fields
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(layers=[3, 4, 23, 3], width=64, stem=[32, 32, 64], n_classes=71),  # 71: PTB-XL "all" statements
    "cpu_small": dict(layers=[1, 1, 2, 1], width=32, stem=[16, 16, 32], n_classes=71),
    "tiny": dict(layers=[1, 1], width=8, stem=[8, 8, 8], n_classes=4),
}
DEFAULTS = dict(in_channels=12, expansion=4, kernel=5, kernel_stem=5, lin_ftrs=[128], ps=0.5, fs=100.0, n_samples=1000,
                view_samples=250, view_stride=125, widths=None, text=None, **WHOLE_RECORD_OPTIONS)


def conv_layer(cin: int, cout: int, kernel: int, stride: int = 1, act: bool = True, zero_bn: bool = False) -> nn.Sequential:
    """fastai's ConvLayer (bn_1st): conv (no bias) -> BatchNorm -> ReLU."""
    conv = nn.Conv1d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight)
    bn = nn.BatchNorm1d(cout)
    with torch.no_grad():
        bn.bias.fill_(1e-3)
        bn.weight.fill_(0.0 if zero_bn else 1.0)
    return nn.Sequential(conv, bn, nn.ReLU()) if act else nn.Sequential(conv, bn)


class ResBlock(nn.Module):
    """Bottleneck block: 1x1 -> k (stride) -> 1x1 (zero-initialised BN), plus the pooled / projected shortcut."""

    def __init__(self, expansion: int, cin: int, width: int, stride: int, kernel: int):
        super().__init__()
        cin, cout = cin * expansion, width * expansion
        self.convs = nn.Sequential(conv_layer(cin, width, 1), conv_layer(width, width, kernel, stride),
                                   conv_layer(width, cout, 1, act=False, zero_bn=True))
        self.convpath = nn.Sequential(self.convs)
        shortcut: list[nn.Module] = [conv_layer(cin, cout, 1, act=False)] if cin != cout else []
        if stride != 1:
            shortcut.insert(0, nn.AvgPool1d(2, ceil_mode=True))
        self.idpath = nn.Sequential(*shortcut)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convpath(x) + self.idpath(x))


class ConcatPool(nn.Module):
    """Adaptive max and average pooling over time, concatenated [max, avg] (fastai's AdaptiveConcatPool1d)."""

    def __init__(self):
        super().__init__()
        self.ap, self.mp = nn.AdaptiveAvgPool1d(1), nn.AdaptiveMaxPool1d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


def head(features: int, lin_ftrs: list[int], ps: float, n_classes: int) -> nn.Sequential:
    """create_head1d: concat pooling, flatten, then BN-Dropout-Linear(-ReLU) blocks (dropout ps/2 before the last)."""
    sizes = [2 * features, *lin_ftrs, n_classes]
    drops = [ps / 2] * (len(sizes) - 2) + [ps]
    layers: list[nn.Module] = [ConcatPool(), nn.Flatten()]
    for i, (n_in, n_out, p) in enumerate(zip(sizes[:-1], sizes[1:], drops)):
        layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out)]
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class XResNet1d(Encoder):
    requires_pretraining = False  # a supervised architecture: the scratch mode trains it, the linear probe reads its init
    method, presets, defaults, with_head = "xresnet1d101", PRESETS, DEFAULTS, True

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        self.preset, self.config = preset, resolve_preset(self.method, self.presets, preset, self.prepare_overrides(overrides),
                                                          self.defaults)
        c = self.config
        stem = [c["in_channels"], *c["stem"]]
        stages = list(c["widths"] or [c["width"]] * len(c["layers"]))
        widths = [c["stem"][-1] // c["expansion"], *stages]  # upstream: 64 // 4 after a 64-wide stem
        modules: list[nn.Module] = [conv_layer(stem[i], stem[i + 1], c["kernel_stem"], stride=2 if i == 0 else 1) for i in range(3)]
        modules.append(nn.MaxPool1d(3, stride=2, padding=1))
        for i, n in enumerate(c["layers"]):
            modules.append(nn.Sequential(*[ResBlock(c["expansion"], widths[i] if b == 0 else widths[i + 1], widths[i + 1],
                                                    1 if i == 0 or b > 0 else 2, c["kernel"]) for b in range(n)]))
        self.out_channels = widths[-1] * c["expansion"]
        if self.with_head:
            modules.append(head(self.out_channels, list(c["lin_ftrs"]), c["ps"], c["n_classes"]))
        self.net = nn.Sequential(*modules)
        self._contract = self.input_contract()

    def prepare_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        overrides.pop("text", None)  # no text tower
        return overrides

    def input_contract(self) -> InputContract:
        c = self.config
        return InputContract(c["fs"], c["n_samples"], view_layout="tile", view_samples=c["view_samples"],
                             view_stride=c["view_stride"], resample="zoom", **whole_record_fields(c),
                             notes="ecg_ptbxl_benchmarking: fastai_model.py's test-time chunks of 2.5 s every 1.25 s over "
                                   "the whole record (a chunk shorter than 2.5 s dropped); convert_ICBEB.py brings 500 Hz "
                                   "records to 100 Hz with scipy.ndimage.zoom per lead")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("xresnet1d101", 2 * self.out_channels, c["fs"], c["view_samples"], n_params=self.n_params(),
                           extra={"preset": self.preset}, contract=self._contract)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 12, samples] -> the last stage's output [B, C, T]."""
        for module in list(self.net)[:-1] if self.with_head else self.net:
            x = module(x)
        return x

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("xresnet1d101 has no text tower")
        return self.net[-1][0](self.features(x)).flatten(1)  # the head's concat pooling: [max, avg]

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).transpose(1, 2)

    def remap_state_dict(self, state):
        """Upstream's state dict names the Sequential's indices (fastai's learner.save wraps it in {'model': ...}); bench's
        own files name them under ``net.``."""
        state = state.get("model", state) if isinstance(state.get("model"), dict) else state
        return dict(state) if any(k.startswith("net.") for k in state) else {f"net.{k}": v for k, v in state.items()}

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass a state dict of ecg_ptbxl_benchmarking's xresnet1d101 (fastai learner.save: {'model': state}) with "
                "encoder.preset=official and encoder.n_classes=<its classes>")


def build_xresnet1d101(**config: Any) -> XResNet1d:
    return XResNet1d(**config)
