"""Hydra composition: one place that turns ``configs/`` plus command-line overrides into a config."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "configs"

if not OmegaConf.has_resolver("bench_repo"):
    OmegaConf.register_new_resolver("bench_repo", lambda: str(REPO_ROOT))


class ConfigError(ValueError):
    """A config that does not compose: unknown group option, misspelt key, bad value."""


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def load_config(overrides: Sequence[str] = (), *, data: str | None = None) -> DictConfig:
    """Compose ``configs/config.yaml`` with ``overrides``; ``data`` selects the dataset config."""
    overrides = list(overrides)
    if data is not None:
        if data not in available("data"):
            raise ConfigError(f"Unknown dataset '{data}'. Available: {', '.join(available('data'))} "
                              f"(add configs/data/{data}.yaml to define it)")
        overrides = [f"data={data}", *overrides]
    # inside a Hydra app (a launcher job, bench/worker.py) Hydra is already initialised on CONFIG_DIR
    context = contextlib.nullcontext() if GlobalHydra.instance().is_initialized() else \
        initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None)
    try:
        with context:
            cfg = compose(config_name="config", overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"{exc}\n(fix: check the spelling against configs/ or `bench <command> --help`; "
                          f"new keys need a leading '+')") from exc
    return cfg


def dataclass_from_mapping(cls, mapping, what: str, error=ValueError, **convert):
    """Build dataclass ``cls`` from a config mapping, refusing unknown keys with the list of valid ones.

    ``convert`` maps a field name to a function applied to its value (e.g. lists to tuples).
    """
    d = dict(mapping)
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise error(what, f"unknown key(s) {sorted(unknown)}; valid keys: {sorted(cls.__dataclass_fields__)}")
    for key, fn in convert.items():
        if key in d:
            d[key] = fn(d[key])
    return cls(**d)


def cache_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.cache).expanduser().resolve()
