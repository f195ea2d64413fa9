"""MERL (Liu et al., ICML 2024; cheliu-computation/MERL-ICML2024) behind the Encoder interface.

Two released ECG encoders (utils/utils_builder.py ECGCLIP):
- ``vit_tiny``: Conv1d(12 -> 192, kernel = stride = 50, no bias) over all leads, learnable positions
  (1, 100, 192) for 10 s at 500 Hz, 12 pre-LN blocks (3 heads x 64, MLP 768), mean over tokens then
  LayerNorm (5.47M parameters); aligned side ``proj_e`` = Linear(192->256)-BN-ReLU-Linear(256)-BN.
- ``resnet18``: 1-D ResNet18 (utils/resnet1d.py; embedding = global average of layer4, 512-d, as its
  linear probe uses it); aligned side ``downconv`` (1x1 conv 512->256) + attention pooling
  (``att_pool_head``: a CLS query over 313 positions, 4 heads).
Text tower MedCPT-Query-Encoder whose last 6 layers MERL fine-tunes: the released ``*_final_total.pth``
holds those weights (``lm_model.*``), and prompts are embedded with the model's ``pooler_output``,
lower-cased (utils/zeroshot_val.get_class_emd); projection ``proj_t`` = Linear(768->256)-GELU-Linear(256),
L2-normalised. Objective: CMA (symmetric InfoNCE, T = 0.07) + UMA (the same loss between two
dropout-0.1 views of the ECG embedding through ``linear1`` / ``linear2``, pretraining only).
Input contract (finetune/finetune_dataset.py): 500 Hz, the first 10 s, min-max of the whole record to
[0, 1], then aVL and aVF swapped to MIMIC-IV-ECG's order I, II, III, aVR, aVF, aVL, V1-V6 (the order
the released weights were trained in; the small presets trained here keep the standard order).
Released files: ``*_final_encoder.pth`` / ``*_bestZeroShotAll_encoder.pth`` (ECG encoder only),
``*_final_total.pth`` / ``*_bestZeroShotAll_ckpt.pth`` (the whole model) and ``*_N_ckpt.pth``
({'epoch', 'model_state_dict' with DDP's ``module.`` prefix, 'optimizer_state_dict'}).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.keys import VIT_BLOCK_RULES, rename, strip_prefix
from baselines.text_side import ProjectedTextSide
from bench.data.contract import InputContract
from bench.data.leads import STANDARD_LEADS
from bench.encoders.base import Encoder, EncoderSpec, resolve_preset
from bench.encoders.losses import info_nce
from bench.encoders.randomness import StepRandom
from bench.encoders.vit import Block
from merit.text import build_text_tower

MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
# finetune/finetune_dataset.py, 'icbeb' (CPSC2018) branch: "we only keep the first 2500 points as METS did", then 2,500
# zeros; MELP's loader copies the rule. Keyed by the dataset identities that hold CPSC2018 records.
CPSC_WINDOW = (("cpsc2018", 5.0), ("cinc_samples", 5.0))
MEDCPT = {"kind": "medcpt", "frozen": True, "pooling": "pooler", "lowercase": True}
PRESETS: dict[str, dict[str, Any]] = {
    "official": dict(width=192, depth=12, heads=3, mlp=768, patch=50, fs=500.0, n_samples=5000, proj_dim=256,
                     dataset_windows=CPSC_WINDOW,
                     leads=MIMIC_LEADS, text=MEDCPT),
    "official_resnet18": dict(backbone="resnet18", fs=500.0, n_samples=5000, proj_dim=256, leads=MIMIC_LEADS, text=MEDCPT,
                              dataset_windows=CPSC_WINDOW),
    "cpu_small": dict(width=96, depth=4, heads=3, mlp=384, patch=10, fs=100.0, n_samples=1000, proj_dim=128,
                      text={"kind": "minilm", "frozen": True}),
    "tiny": dict(width=32, depth=1, heads=2, mlp=64, patch=50, fs=100.0, n_samples=1000, proj_dim=32,
                 text={"kind": "hashing", "frozen": False, "dim": 32}),
}
DEFAULTS = dict(backbone="vit_tiny", leads=STANDARD_LEADS, temperature=0.07, uma_dropout=0.1, att_heads=4, dataset_windows=(),
                resnet_widths=(64, 128, 256, 512))
TEXT_SIDE = ("lm_model.", "proj_t.", "proj_e.", "downconv.", "att_pool_head.")


class BasicBlock1d(nn.Module):
    """Two 3-tap convolutions with batch norm and a projected shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))


class ResNet18_1d(nn.Module):
    """1-D ResNet18 over 12 leads (stem 7-tap stride 2, four stages of two blocks, 64-512 channels by default)."""

    def __init__(self, n_leads: int = 12, widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv1d(n_leads, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm1d(widths[0])
        stages, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock1d(c_in, c_out, stride), BasicBlock1d(c_out, c_out, 1)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.width = widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(-1)

    @staticmethod
    def n_positions(n_samples: int) -> int:
        n = (n_samples - 1) // 2 + 1
        for _ in range(3):
            n = (n - 1) // 2 + 1
        return n


class AttentionPool1d(nn.Module):
    """A learned CLS query attending over the feature positions (MERL's att_pool_head for ResNets)."""

    def __init__(self, positions: int, dim: int, heads: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(1, positions + 1, dim) / dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.mhsa = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.c_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, L] -> [B, C]
        x = x.permute(0, 2, 1)
        cls = (self.cls_token + self.positional_embedding[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        out, _ = self.mhsa(x[:, :1], x, x, need_weights=False)
        return self.c_proj(out)[:, 0]


class ConvPatchViT(nn.Module):
    def __init__(self, n_leads: int, n_samples: int, patch: int, width: int, depth: int, heads: int, mlp: int):
        super().__init__()
        self.to_patch_embedding = nn.Conv1d(n_leads, width, kernel_size=patch, stride=patch, bias=False)
        self.pos_embedding = nn.Parameter(torch.randn(1, n_samples // patch, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        h = self.to_patch_embedding(x).transpose(1, 2) + self.pos_embedding
        for blk in self.blocks:
            h = blk(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.tokens(x).mean(1))


class MERL(ProjectedTextSide, Encoder):
    def __init__(self, preset: str = "cpu_small", **overrides: Any):
        super().__init__()
        self.preset, self.config = preset, resolve_preset("MERL", PRESETS, preset, overrides, DEFAULTS)
        c = self.config
        p = c["proj_dim"]
        if c["backbone"] == "resnet18":
            self.ecg_encoder = ResNet18_1d(12, c["resnet_widths"])
            width = self.ecg_encoder.width
            uma_dim = p  # MERL's ResNets apply linear1/2 to the projected features
        elif c["backbone"] == "vit_tiny":
            self.ecg_encoder = ConvPatchViT(12, c["n_samples"], c["patch"], c["width"], c["depth"], c["heads"], c["mlp"])
            width = uma_dim = c["width"]
        else:
            raise ValueError(f"unknown MERL backbone {c['backbone']!r}: vit_tiny or resnet18")
        self.width = width
        self.linear1 = nn.Linear(uma_dim, p, bias=False)
        self.linear2 = nn.Linear(uma_dim, p, bias=False)
        self.text_tower = build_text_tower(**c["text"])
        self.proj_e = self.proj_t = self.downconv = self.att_pool_head = None
        if self.text_tower is not None:
            if c["backbone"] == "resnet18":
                self.downconv = nn.Conv1d(width, p, kernel_size=1)
                self.att_pool_head = AttentionPool1d(ResNet18_1d.n_positions(c["n_samples"]), p, c["att_heads"])
            else:
                self.proj_e = nn.Sequential(nn.Linear(width, p), nn.BatchNorm1d(p), nn.ReLU(inplace=True),
                                            nn.Linear(p, p), nn.BatchNorm1d(p))
            self.proj_t = nn.Sequential(nn.Linear(self.text_tower.dim, p), nn.GELU(), nn.Linear(p, p))
        self._contract = InputContract(c["fs"], c["n_samples"], leads=tuple(c["leads"]), scale="minmax_record",
                                       dataset_windows=c["dataset_windows"])

    pretraining_only = ("linear1.", "linear2.")

    @property
    def spec(self) -> EncoderSpec:
        c = self.config
        return EncoderSpec("merl", self.width, c["fs"], c["n_samples"], leads=self._contract.leads,
                           has_text_tower=self.text_tower is not None,
                           n_params=sum(q.numel() for q in self.ecg_encoder.parameters()),
                           extra={"preset": self.preset, "backbone": c["backbone"]}, contract=self._contract)

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        emb, z = self.encode_pair(x)
        if aligned and z is None:
            raise NotImplementedError("this MERL has no text tower (encoder.text.kind=none)")
        return z if aligned else emb

    def encode_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.att_pool_head is not None:
            feats = self.ecg_encoder.features(x)
            return feats.mean(-1), F.normalize(self.att_pool_head(self.downconv(feats)), dim=-1)
        emb = self.ecg_encoder(x)
        if self.proj_e is None:
            return emb, None
        return emb, F.normalize(self.proj_e(emb), dim=-1)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.ecg_encoder, ResNet18_1d):
            return self.ecg_encoder.features(x).transpose(1, 2)
        return self.ecg_encoder.norm(self.ecg_encoder.tokens(x))

    def pretraining_losses(self, x: torch.Tensor, texts: Sequence[str] | None = None,
                           rng: StepRandom | None = None) -> dict[str, torch.Tensor]:
        if self.text_tower is None:
            raise ValueError("MERL pretraining aligns ECGs with reports: it needs a text tower (encoder.text.kind)")
        if self.att_pool_head is not None:
            feats = self.downconv(self.ecg_encoder.features(x))
            z, emb = self.att_pool_head(feats), feats.mean(-1)
        else:
            emb = self.ecg_encoder(x)
            z = self.proj_e(emb)
        t = self.config["temperature"]
        cma = info_nce(z, self.proj_t(self.text_tower(texts)), t)
        drop = self.config["uma_dropout"]
        rng = StepRandom.ensure(rng, x.shape[0], x.device)
        uma = info_nce(self.linear1(rng.dropout(emb, drop, self.training)), self.linear2(rng.dropout(emb, drop, self.training)), t)
        return {"cma": cma, "uma": uma, "loss": cma + uma}

    def remap_state_dict(self, state: Mapping[str, Any]) -> dict[str, Any]:
        state = strip_prefix(state, "module.")  # *_N_ckpt.pth: DDP
        if any(k.startswith("ecg_encoder.blocks.") for k in state):
            return dict(state)  # one of ours (our ResNet keys equal the official ones and take the path below)
        if any(k.startswith("ecg_encoder.") for k in state):  # the whole model (total / ckpt files)
            enc = {k[len("ecg_encoder."):]: v for k, v in state.items() if k.startswith("ecg_encoder.")}
            rest = {k: v for k, v in state.items() if not k.startswith("ecg_encoder.")}
        else:  # the ECG encoder alone (*_encoder.pth)
            enc, rest = dict(state), {}
        rules = [] if isinstance(self.ecg_encoder, ResNet18_1d) else VIT_BLOCK_RULES
        out = rename(enc, rules, prefix="ecg_encoder.", ignore=("head.", "linear."))  # unused classifier heads
        for key, value in rest.items():
            if self.text_tower is None and key.startswith(TEXT_SIDE):
                continue  # no text tower requested: the text side is not needed
            if key.endswith("position_ids"):
                continue  # a buffer older transformers saved; rebuilt by the tower
            out["text_tower.model." + key[len("lm_model."):] if key.startswith("lm_model.") else key] = value
        return out

    def missing_hint(self, missing: list[str]) -> str:
        if any(k.startswith(("proj_e.", "proj_t.", "att_pool_head.", "downconv.")) for k in missing):
            return ("this file holds the ECG encoder only; zero-shot needs MERL's projection heads and fine-tuned text "
                    "model from *_final_total.pth (or *_ckpt.pth); for embeddings alone set encoder.text.kind=none")
        return "use a MERL file of the same backbone (encoder.preset=official for vit_tiny, official_resnet18 for ResNet18)"


def build_merl(**config: Any) -> MERL:
    return MERL(**config)
