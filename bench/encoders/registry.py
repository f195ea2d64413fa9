"""Encoder registry: built-ins register lazily here; third parties use the ``bench.encoders`` entry-point group.

A registered object is a factory ``f(**config) -> Encoder`` (a class or a function). A plugin package
declares in its pyproject::

    [project.entry-points."bench.encoders"]
    my_encoder = "my_package.module:build_my_encoder"
"""

from __future__ import annotations

from typing import Any, Callable

from bench.encoders.base import Encoder
from bench.registry import Registry

ENCODERS: Registry[Callable[..., Encoder]] = Registry("encoder", entry_point_group="bench.encoders")
for _name in ("merit", "merit_mse", "merit_cma", "merit_ib"):
    ENCODERS.register(_name, f"merit.model:build_{_name}")
ENCODERS.register("random", "merit.model:build_random")
ENCODERS.register("signal_stats", "baselines.controls:build_signal_stats")
ENCODERS.register("stmem", "baselines.stmem:build_stmem")
ENCODERS.register("merl", "baselines.merl:build_merl")
ENCODERS.register("d_beta", "baselines.dbeta:build_d_beta")
ENCODERS.register("ecg_fm", "baselines.ecgfm:build_ecg_fm")
ENCODERS.register("ecgfounder", "baselines.ecgfounder:build_ecgfounder")
ENCODERS.register("ecgjepa", "baselines.ecgjepa:build_ecgjepa")
ENCODERS.register("hubert_ecg", "baselines.hubert_ecg:build_hubert_ecg")
ENCODERS.register("melp", "baselines.melp:build_melp")
ENCODERS.register("xresnet1d101", "baselines.xresnet1d:build_xresnet1d101")
ENCODERS.register("ecgfm_ked", "baselines.ecgfm_ked:build_ecgfm_ked")
ENCODERS.register("s4", "baselines.s4:build_s4")
ENCODERS.register("ecg_cpc", "baselines.ecg_cpc:build_ecg_cpc")
ENCODERS.register("heartlang", "baselines.heartlang:build_heartlang")
ENCODERS.register("clef", "baselines.clef:build_clef")


def create_encoder(name: str, **config: Any) -> Encoder:
    """Build encoder ``name`` with config overrides (e.g. ``preset='cpu_small'``)."""
    enc = ENCODERS.get(name)(**config)
    if not isinstance(enc, Encoder):
        raise TypeError(f"encoder factory '{name}' returned {type(enc).__name__}, not a bench Encoder")
    enc.name = name
    return enc


def encoder_names() -> list[str]:
    return ENCODERS.names()
