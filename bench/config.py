"""Hydra composition: one place that turns ``configs/`` plus command-line overrides into a config."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import REPO_ROOT
from bench.errors import ConfigError  # noqa: F401  (raised here; importable from bench.config as before)

CONFIG_DIR = REPO_ROOT / "configs"

if not OmegaConf.has_resolver("bench_repo"):
    OmegaConf.register_new_resolver("bench_repo", lambda: str(REPO_ROOT))
if not OmegaConf.has_resolver("bench_cwd"):
    OmegaConf.register_new_resolver("bench_cwd", lambda: str(Path.cwd()))


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


#: nodes whose keys are not declared in configs/: encoder options differ per encoder (each factory refuses the
#: ones it does not know, listing its valid options) and ``unit.checkpoints`` maps methods to files (``hydra.*``,
#: which configures launchers, is passed to Hydra as given)
# a mode's block may set any of the common settings for that mode alone (modes.finetune.epochs=2); ModeConfig refuses
# keys it does not know, naming the valid ones
OPEN_NODES = ("encoder", "unit.checkpoints", "modes.attentive", "modes.finetune", "modes.scratch")


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    # inside a Hydra app (a launcher job, bench/run/worker.py) Hydra is already initialised on CONFIG_DIR; elsewhere it is
    # initialised once per process and kept (each initialisation re-scans configs/: a command composing every dataset's
    # config would pay it each time)
    if not GlobalHydra.instance().is_initialized():
        initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None)
    return compose(config_name="config", overrides=overrides)


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{prefix}{k}"
            yield from _keys(v, f"{prefix}{k}.")


def _is_selection(key: str) -> bool:
    """A config-group choice (``data=ptbxl``, ``hydra/launcher=joblib``, ``protocols@zero_shot=...``), not a value."""
    return "/" in key or "@" in key or (CONFIG_DIR / key).is_dir()


@functools.lru_cache(maxsize=64)
def _declared(selections: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_keys(OmegaConf.to_container(_compose(list(selections)), resolve=False)))


def normalise_overrides(overrides: Sequence[str], data: str | None = None) -> list[str]:
    """The user's ``KEY=VALUE`` overrides as Hydra must read them, or one clear error.

    A key the config declares is set as given (a leading '+' dropped); a key under an open node (``OPEN_NODES``)
    is added or set (``++``), and whoever consumes it validates it; any other key is refused naming the keys it
    is closest to, so a typo never runs silently (Hydra would add a '+key' nobody reads)."""
    def key_of(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    selections = [o for o in overrides if "=" in o and _is_selection(key_of(o))]
    if data is not None:
        selections = [f"data={data}", *[o for o in selections if key_of(o) != "data"]]
    declared = _declared(tuple(selections))
    out = list(selections)
    for o in overrides:
        key, sep, value = o.partition("=")
        bare = key.lstrip("+~")
        if sep and _is_selection(bare):
            continue
        if not sep or key.startswith("~") or bare.startswith("hydra."):
            out.append(o)
        elif bare in declared:
            out.append(f"{bare}={value}")
        elif any(bare == n or bare.startswith(n + ".") for n in OPEN_NODES):
            out.append(f"++{bare}={value}")
        else:
            parent = bare.rpartition(".")[0]
            siblings = sorted(k for k in declared if k.rpartition(".")[0] == parent)
            near = difflib.get_close_matches(bare, siblings, n=2, cutoff=0.6) or \
                difflib.get_close_matches(bare, sorted(declared), n=2, cutoff=0.6)
            raise ConfigError(f"unknown config key '{bare}'" + (f" (did you mean {' or '.join(near)}?)" if near else "")
                              + " (fix: check the spelling; the keys and their defaults are in configs/config.yaml and "
                                "configs/data/<dataset>.yaml)")
    return out


def load_config(overrides: Sequence[str] = (), *, data: str | None = None) -> DictConfig:
    """Compose ``configs/config.yaml`` with ``overrides``; ``data`` selects the dataset config."""
    if data is not None and data not in available("data"):
        raise ConfigError(f"Unknown dataset '{data}'. Available: {', '.join(available('data'))} "
                          f"(add configs/data/{data}.yaml to define it)")
    from hydra.errors import HydraException

    try:
        cfg = _compose(normalise_overrides(list(overrides), data))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"{exc}\n(fix: check the spelling against configs/ or `bench <command> --help`)") from exc
    from bench import schema

    try:
        schema.check(OmegaConf.to_container(cfg, resolve=False))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return cfg


def encoder_options(cfg: DictConfig) -> dict[str, Any]:
    """The encoder factory's options: ``cfg.encoder`` without unset (null) values or empty blocks, so a factory
    receives only what was set."""
    def prune(node: Any) -> Any:
        if isinstance(node, dict):
            kept = {k: prune(v) for k, v in node.items() if v is not None}
            return {k: v for k, v in kept.items() if v != {}}
        return node

    return prune(OmegaConf.to_container(cfg.encoder, resolve=True))


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


def workspace(cfg: DictConfig) -> Path:
    """The user's workspace: runs, store, generated tables and figures (never the publication in results/)."""
    return Path(cfg.paths.workspace).expanduser().resolve()


def check_workspace(cfg: DictConfig, min_free: int = 64 << 20) -> Path:
    """The workspace, usable before any work starts: a folder (or a place one can be made: nothing is created here),
    writable, with some free space."""
    import errno
    import os
    import shutil
    import tempfile

    path = workspace(cfg)
    fix = "(fix: set BENCH_HOME (paths.workspace) to a writable folder)"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: the workspace is a file, not a folder {fix}")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{path}: the workspace cannot be made, {existing} is a file {fix}")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".bench-probe-"):
            pass
    except OSError as exc:
        full = exc.errno == errno.ENOSPC
        raise ConfigError(f"{path}: the workspace cannot be written ({exc.strerror or exc}) "
                          + ("(fix: free some disk space or move BENCH_HOME)" if full else fix)) from None
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"{path}: the workspace is read-only {fix}")
    free = shutil.disk_usage(existing).free
    if free < min_free:
        raise ConfigError(f"{path}: the workspace's disk is full ({free / 1e6:.0f} MB free) (fix: free some disk space or "
                          f"move BENCH_HOME)")
    return path


def _data_node(name: str) -> DictConfig:
    """configs/data/NAME.yaml with the data configs its ``defaults`` name merged in Hydra's order (``_self_`` where listed,
    else last)."""
    own = OmegaConf.load(CONFIG_DIR / "data" / f"{name}.yaml")
    defaults = list(own.pop("defaults", []) or [])
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create({})
    for entry in defaults:
        merged = OmegaConf.merge(merged, own if entry == "_self_" else _data_node(str(entry)))
    return merged


def dataset_configs() -> dict[str, DictConfig]:
    """Every dataset's resolved config, for listings: the root config composed once, each dataset's node merged into it
    (what ``load_config(data=NAME)`` gives, at a fraction of its cost; a test holds them equal)."""
    root = OmegaConf.to_container(_compose([]), resolve=False)
    out = {}
    for name in available("data"):
        cfg = OmegaConf.create({**root, "data": OmegaConf.to_container(_data_node(name), resolve=False)})
        OmegaConf.resolve(cfg)
        out[name] = cfg
    return out
