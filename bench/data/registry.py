"""Dataset registry: reader kinds by name, and opening a dataset from its (Hydra) config."""

from __future__ import annotations

from typing import Any, Mapping

from bench.data.base import DatasetReader
from bench.registry import Registry

READERS: Registry[type[DatasetReader]] = Registry("dataset reader", base=DatasetReader,
                                                   entry_point_group="bench.datasets")
READERS.register("ptbxl", "bench.data.ptbxl:PTBXLReader")
READERS.register("ptbxl_1819", "bench.data.ptbxl:PTBXL1819Reader")
READERS.register("cinc", "bench.data.cinc:CinCReader")
READERS.register("cpsc2018_original", "bench.data.cinc:CPSC2018OriginalReader")
READERS.register("mimic_iv_ecg", "bench.data.mimic:MimicIVECGReader")
READERS.register("mimic_iv_ecg_icd", "bench.data.mimic:MimicIVECGICDReader")

# Keys of a data config that are about the dataset or how it is processed, not options of its reader
# (so not in its fingerprint: ``workers`` cannot change a prepared byte).
_NON_OPTIONS = {"name", "reader", "root", "description", "citation", "license", "demo", "download", "paper_name",
                "identity", "default_tasks", "auto_pretrain", "workers"}


def open_dataset(cfg: Mapping[str, Any]) -> DatasetReader:
    """Reader for a resolved data config (``configs/data/<name>.yaml``)."""
    cls = READERS.get(cfg["reader"])
    options = {k: v for k, v in cfg.items() if k not in _NON_OPTIONS}
    return cls(cfg["name"], cfg["root"], options)


def open_from_config(cfg) -> DatasetReader:
    """Reader for ``cfg.data``; a demo dataset is generated into its root first if missing."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg.data, resolve=True)
    demo = data.get("demo")
    if demo:
        from bench.data.demo import ensure_demo

        ensure_demo(demo["layout"], data["root"], demo["n_records"], demo.get("seed", 0))
    return open_dataset(data)
