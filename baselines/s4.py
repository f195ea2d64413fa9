"""S4 (Gu, Goel, Re, "Efficiently Modeling Long Sequences with Structured State Spaces", ICLR 2022) as the reality check
trains it from scratch (AI4HealthUOL/ecg-fm-benchmarking: main_lite_ecg.py ``--architecture s4``, run.sh: N 8, H 512, 4
layers, 2.5 s at 100 Hz; clinical_ts/models/s4_model.py S4Model and s42.py S4, the state-spaces standalone S4 v2) behind
the Encoder interface: a supervised architecture for the ``scratch`` mode (``requires_pretraining = False``).

Re-implemented from its facts with upstream's module and buffer names, so a state dict of the reality check's S4Model
loads strictly: a 1x1 conv from 12 leads to H, then layers of [S4 -> dropout -> residual -> LayerNorm over channels]
(post-norm), the mean over time (the embedding, [B, H]) and the classifier ``decoder``. One S4 layer: a bidirectional
state-space convolution whose kernel is the NPLR (diagonal plus rank-1) HiPPO-LegS system discretised with the bilinear
transform and evaluated as a Cauchy kernel at the FFT nodes (``omega``, ``z``) with the Woodbury correction; plus the
skip ``D``; GELU; a position-wise linear to 2H and a GLU. A, B, P, Q and dt are buffers (upstream trains them only when
asked); C, D and the linear layers are trained.

Initialisation as upstream (HiPPO-LegS eigen-decomposition, dt log-uniform in [1e-3, 1e-1], C complex normal) except
the length correction of C (upstream multiplies C by I - dA^L once at construction): bench leaves C as drawn, which is
another random C, so a bench-initialised model is not upstream's at the same seed; a loaded one computes the same.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.contract import WHOLE_RECORD_OPTIONS, InputContract, whole_record_fields
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset

PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(d_model=512, d_state=8, n_layers=4, n_classes=71),  # run.sh: --s4-n 8 --s4-h 512 --s4-layers 4
    "cpu_small": dict(d_model=64, d_state=8, n_layers=2, n_classes=71),
    "tiny": dict(d_model=16, d_state=4, n_layers=1, n_classes=4),
}
#: main_lite's test-time windows cover the whole record (every non-overlapping chunk): bench reads a record's first 60 s
#: that way; PTB-XL, Chapman-Shaoxing-Ningbo and MIMIC-IV-ECG records are all 10 s, so their arrays stay 10 s long
DEFAULTS = dict(in_channels=12, dropout=0.2, fs=100.0, n_samples=1000, view_samples=250, dt_min=1e-3, dt_max=1e-1, **WHOLE_RECORD_OPTIONS)


def _complex(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(x.contiguous())


def hippo_legs_nplr(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w (n/2), P (1, n/2), B (n/2): HiPPO-LegS as diagonal minus rank one in its eigenbasis, one of each conjugate pair."""
    q = np.arange(n, dtype=np.float64)
    col, row = np.meshgrid(q, q)
    r = 2 * q + 1
    t = np.sqrt(np.diag(r))
    a = torch.as_tensor(t @ (-(np.where(row >= col, r, 0) - np.diag(q))) @ np.linalg.inv(t), dtype=torch.float)
    b = torch.as_tensor(np.diag(t).copy(), dtype=torch.float)
    p = torch.sqrt(0.5 + torch.arange(n, dtype=torch.float)).unsqueeze(0)
    w, v = torch.linalg.eig(a + p.T @ p)
    w, v = w[0::2].contiguous(), v[:, 0::2].contiguous()
    v_inv = v.conj().T
    return w, (v_inv @ p.to(v).T).T, v_inv @ b.to(v)


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum over the state of v / (z - w) + conj(v) / (z - conj(w)): the conjugate-symmetric Cauchy kernel."""
    v, w, z = v.unsqueeze(-1), w.unsqueeze(-1), z
    return (v / (z - w) + v.conj() / (z - w.conj())).sum(-2)


class SSKernel(nn.Module):
    """The NPLR kernel's state (``kernel.kernel.*`` upstream) and its length-L convolution kernel."""

    def __init__(self, h: int, n: int, length: int, channels: int, dt_min: float, dt_max: float):
        super().__init__()
        w, p, b = hippo_legs_nplr(n)
        self.L, self.N = length, n // 2
        self.C = nn.Parameter(torch.view_as_real(torch.randn(channels, h, n // 2, dtype=torch.cfloat)))
        self.register_buffer("log_dt", torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.register_buffer("B", torch.view_as_real(b.expand(1, h, -1).contiguous()))
        self.register_buffer("P", torch.view_as_real(p.unsqueeze(1).expand(-1, h, -1).contiguous()))
        self.register_buffer("w", torch.view_as_real(w.expand(h, -1).contiguous()))
        self.register_buffer("Q", torch.view_as_real(p.unsqueeze(1).expand(-1, h, -1).conj().resolve_conj().contiguous()))
        omega = torch.tensor(np.exp(-2j * np.pi / length), dtype=torch.cfloat) ** torch.arange(0, length // 2 + 1)
        self.register_buffer("omega", torch.view_as_real(omega))
        self.register_buffer("z", torch.view_as_real(2 * (1 - omega) / (1 + omega)))

    def forward(self, length: int) -> torch.Tensor:
        """(channels, H, length): the first ``length`` taps of the kernel of length L (inputs longer than L are refused)."""
        if length > self.L:
            raise ValueError(f"S4 kernel of length {self.L} given {length} samples (fix: encoder.view_samples <= {self.L})")
        dt = torch.exp(self.log_dt)
        w = _complex(self.w) * dt.unsqueeze(-1)
        b = torch.cat([_complex(self.B), _complex(self.P)], dim=-3)
        c = torch.cat([_complex(self.C), _complex(self.Q)], dim=-3)
        r = cauchy(b.unsqueeze(-3) * c.unsqueeze(-4), _complex(self.z), w) * dt[None, None, :, None]
        k_f = r[:-1, :-1] - r[:-1, -1:] * r[-1:, :-1] / (1 + r[-1:, -1:])  # Woodbury, rank 1
        k = torch.fft.irfft(k_f * 2 / (1 + _complex(self.omega)))
        return k[-1, :, :, :length]


class KernelHolder(nn.Module):
    """Upstream's HippoSSKernel wrapper, kept for its ``kernel.kernel.*`` names."""

    def __init__(self, kernel: SSKernel):
        super().__init__()
        self.kernel = kernel


class S4Layer(nn.Module):
    """S4 convolution (bidirectional, or causal as a CPC predictor) + D skip, GELU, dropout, position-wise
    Linear(H, 2H) + GLU (upstream's S4, postact glu)."""

    def __init__(self, h: int, n: int, length: int, dropout: float, dt_min: float, dt_max: float, bidirectional: bool = True):
        super().__init__()
        self.bidirectional = bidirectional
        self.D = nn.Parameter(torch.randn(1, h))
        self.kernel = KernelHolder(SSKernel(h, n, length, 2 if bidirectional else 1, dt_min, dt_max))
        self.dropout = nn.Dropout1d(dropout) if dropout > 0 else nn.Identity()
        self.output_linear = nn.Sequential(TransposedLinear(h, 2 * h), nn.GLU(dim=-2))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[-1]
        k = self.kernel.kernel(length).unsqueeze(1)  # (channels, 1, H, L)
        if self.bidirectional:  # forward and backward kernels, the backward one flipped onto the negative lags
            k0, k1 = k.unbind(0)
            k = F.pad(k0, (0, length)) + F.pad(k1.flip(-1), (length, 0))
        else:
            k = k[0]
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length).unsqueeze(1) * torch.fft.rfft(k, n=2 * length), n=2 * length)
        y = y[..., :length] + u.unsqueeze(1) * self.D.unsqueeze(-1)
        return self.output_linear(self.dropout(F.gelu(y.flatten(1, 2))))


class TransposedLinear(nn.Module):
    """Linear over the channel axis of [B, C, L] (upstream's weight [out, in], bias [out, 1])."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.empty(d_out, 1).uniform_(-1 / math.sqrt(d_in), 1 / math.sqrt(d_in)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ul,vu->...vl", x, self.weight) + self.bias


class S4Net(nn.Module):
    """S4Model with transposed input and LayerNorm post-norm: as the supervised S4 builds it (a 1x1 conv from the leads,
    bidirectional, a decoder) or as ECG-CPC's predictor (no input conv, causal, no decoder; ``in_channels`` and
    ``n_classes`` None). ``length``: l_max, the kernel's length in steps."""

    def __init__(self, c: dict[str, Any], length: int | None = None, bidirectional: bool = True):
        super().__init__()
        h = c["d_model"]
        self.encoder = nn.Conv1d(c["in_channels"], h, 1) if c.get("in_channels") else nn.Identity()
        self.s4_layers = nn.ModuleList(S4Layer(h, c["d_state"], length or c["view_samples"], c["dropout"], c["dt_min"], c["dt_max"],
                                               bidirectional) for _ in range(c["n_layers"]))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(c["n_layers"]))
        self.dropouts = nn.ModuleList(nn.Dropout1d(c["dropout"]) for _ in range(c["n_layers"]))
        self.decoder = nn.Linear(h, c["n_classes"]) if c.get("n_classes") else None

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """[B, leads, L] -> [B, H, L] after the last layer."""
        x = self.encoder(x)
        for layer, norm, dropout in zip(self.s4_layers, self.norms, self.dropouts):
            x = norm((dropout(layer(x)) + x).transpose(-1, -2)).transpose(-1, -2)
        return x


class S4(Encoder):
    requires_pretraining = False  # a supervised architecture: the scratch mode trains it, the linear probe reads its init

    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        overrides.pop("text", None)  # no text tower
        self.preset, self.config = preset, resolve_preset("S4", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        self.net = S4Net(c)
        self._contract = InputContract(c["fs"], c["n_samples"], view_layout="tile", view_samples=c["view_samples"],
                                       resample="resampy", resample_per_window=True, **whole_record_fields(c),
                                       notes="reality check run.sh: --input-size 2.5 --fs-model 100; main_lite "
                                             "--stride-fraction-valtest 1.0: non-overlapping windows, each resampled by "
                                             "clinical_ts' Resample (resampy)")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("s4", c["d_model"], c["fs"], c["view_samples"], n_params=self.n_params(), extra={"preset": self.preset},
                           contract=self._contract)

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        if aligned:
            raise NotImplementedError("S4 has no text tower")
        return self.net.sequence(x).mean(-1)  # S4Model's pooling, the decoder's input

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.sequence(x).transpose(1, 2)

    def remap_state_dict(self, state):
        """The reality check's Lightning checkpoint names S4Model under ``model.``; a bare S4Model state has no prefix;
        bench's own files name it under ``net.``."""
        if any(k.startswith("net.") for k in state):
            return dict(state)
        prefix = "model." if any(k.startswith("model.s4_layers.") for k in state) else ""
        return {f"net.{k[len(prefix):]}": v for k, v in state.items() if k.startswith(prefix)}

    def missing_hint(self, missing: list[str]) -> str:
        return ("pass a state dict of the reality check's S4Model (main_lite_ecg.py --architecture s4) with encoder.preset=official "
                "and encoder.n_classes=<its classes>")


def build_s4(**config: Any) -> S4:
    return S4(**config)
