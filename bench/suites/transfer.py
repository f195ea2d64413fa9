"""Cross-domain transfer in the aligned label space of the MERIT paper's Table 5.

A block ``X_to_Y`` maps each class of X to the class codes of Y it is aligned with (an empty list is
the paper's "None": left out). The reverse direction reads the same pairs the other way. An aligned
class is positive in a dataset when any of that side's codes is positive.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from bench.config import ConfigError
from bench.data.errors import DataError
from bench.suites.base import Aggregate, Group, Request, Suite, Unit, UnitResult, content_hash, frame_hash, ids_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext

DIRECTIONS = {  # (source, target) families -> block of the label-map file and whether it is read reversed
    ("ptbxl_super", "cpsc2018"): ("ptbxl_super_to_cpsc2018", False),
    ("ptbxl_super", "csn"): ("ptbxl_super_to_csn", False),
    ("cpsc2018", "csn"): ("cpsc2018_to_csn", False),
    ("cpsc2018", "ptbxl_super"): ("ptbxl_super_to_cpsc2018", True),
    ("csn", "ptbxl_super"): ("ptbxl_super_to_csn", True),
    ("csn", "cpsc2018"): ("cpsc2018_to_csn", True),
}


@dataclass
class AlignedClass:
    name: str
    source_codes: list[str]
    target_codes: list[str]


def load_label_maps(path: str | Path, variant: str = "paper") -> dict[str, dict[str, list[str]]]:
    """The Table 5 alignments, or a named variant of them (the file's ``variants``: blocks whose listed classes are
    aligned otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "label-map file not found", "set transfer.label_maps to the Table 5 yaml")
    maps = yaml.safe_load(path.read_text())
    variants = maps.pop("variants", None) or {}
    if variant == "paper":
        return maps
    if variant not in variants:
        raise ConfigError(f"transfer.label_map={variant!r} is not a label map of {path.name} (choose from "
                          f"{['paper', *sorted(variants)]})")
    return {block: {**classes, **variants[variant].get(block, {})} for block, classes in maps.items()}


def aligned_classes(maps: dict, source: str, target: str) -> list[AlignedClass]:
    if (source, target) not in DIRECTIONS:
        raise ValueError(f"no Table 5 direction {source} -> {target}; available: {sorted(DIRECTIONS)}")
    block, reverse = DIRECTIONS[(source, target)]
    out = []
    for x, ys in maps[block].items():
        ys = [str(y) for y in (ys or [])]
        if not ys:
            continue  # "None" in the paper: no counterpart
        pair = ([str(x)], ys)
        src, tgt = (pair[1], pair[0]) if reverse else pair
        out.append(AlignedClass(str(x) if not reverse else "/".join(ys), src, tgt))
    return out


def aligned_labels(labels: pd.DataFrame, classes: list[AlignedClass], side: str) -> pd.DataFrame:
    """Multi-hot labels in the aligned space from a dataset's own task labels (``side``: source|target)."""
    cols = {}
    for c in classes:
        codes = c.source_codes if side == "source" else c.target_codes
        missing = [k for k in codes if k not in labels.columns]
        if missing:
            raise DataError(f"{side} labels", f"codes {missing} of aligned class {c.name} are not in the task's classes",
                            "check the dataset's label space against configs/protocols/table5_label_maps.yaml")
        cols[c.name] = labels[codes].max(axis=1)
    return pd.DataFrame(cols, index=labels.index).astype(int)


@dataclass
class TransferState:
    scfg: Any
    tcfg: Any
    handle: Any
    source_labels: pd.DataFrame
    target_labels: pd.DataFrame
    target_ids: list[str]
    train: list[str]
    val: list[str]
    classes: list[AlignedClass]
    head: Any
    seed: int


class TransferSuite(Suite):
    name = "transfer"
    version = "2"  # 2: target records without an aligned label are left out; validation thresholds
    pools_seeds = True
    description = "cross-domain transfer in the paper's Table 5 label space (head trained on the source, tested on the target)"

    def groups(self, ctx: "RunContext", request: Request):
        from omegaconf import OmegaConf

        from bench.suites.linear import HeadConfig

        tcfg = ctx.base.transfer
        maps = load_label_maps(tcfg.label_maps, str(tcfg.get("label_map", "paper")))
        pairs = [tuple(d.split(":")) for d in request.directions] if request.directions else list(DIRECTIONS)
        head = HeadConfig.from_mapping(OmegaConf.to_container(ctx.base.linear))
        for pair in pairs:
            if pair not in DIRECTIONS:
                raise ConfigError(f"unknown transfer direction {':'.join(pair)}; use SOURCE:TARGET from {sorted(DIRECTIONS)}")
            source, target = pair
            sfam, tfam = tcfg.families[source], tcfg.families[target]
            scfg, tgt_cfg = ctx.dataset_cfg(sfam.dataset), ctx.dataset_cfg(tfam.dataset)
            classes = aligned_classes(maps, source, target)
            s_idx, t_idx = ctx.reader(scfg).index, ctx.reader(tgt_cfg).index
            s_lab = aligned_labels(s_idx.task(sfam.task).labels, classes, "source")
            t_all = aligned_labels(t_idx.task(tfam.task).labels.reindex(t_idx.records.index, fill_value=0), classes, "target")
            t_lab = t_all[t_all.sum(axis=1) > 0]
            split = s_idx.records.loc[s_lab.index, "split"]
            train, val = list(s_lab.index[split == "train"]), list(s_lab.index[split == "val"])
            for method, seed in itertools.product(request.methods, request.seeds or [int(s) for s in ctx.base.run.seeds]):
                handle = ctx.scorers(scfg, method, "fixed", seed=seed)[0].handle
                t_ident = tgt_cfg.data.get("identity", tfam.dataset)
                t_ids = list(t_lab.index)
                if tcfg.exclude_pool_records and handle.pool_identity == t_ident:
                    t_ids = [r for r in t_ids if r not in handle.pool_ids]
                handle.check_leakage(tfam.dataset, t_ident, t_ids)
                group = Group({"method": method, "dataset": source, "task": f"to_{target}", "protocol": "fixed", "fraction": 1.0,
                               "seed": seed}, state=TransferState(scfg, tgt_cfg, handle, s_lab, t_lab, t_ids, train, val, classes, head,
                                                                  seed))
                material = {"source_embedding": ctx.embedding_key(scfg, handle), "target_embedding": ctx.embedding_key(tgt_cfg, handle),
                            "aligned_classes": content_hash([vars(c) for c in classes]), "source_labels": frame_hash(s_lab),
                            "target_labels": frame_hash(t_lab.loc[t_ids]), "train": ids_hash(train), "val": ids_hash(val), "head": head.as_params(), "seed": seed}
                tags = {"fold": "target", **ctx.provenance(scfg, handle, s_idx), "source_dataset": sfam.dataset,
                        "label_map": str(tcfg.get("label_map", "paper")),
                        "target_dataset": tfam.dataset, "n_target_unlabelled_dropped": int(len(t_all) - len(t_lab))}
                group.units.append(Unit(tags, material))
                yield group

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        from bench.suites.classification import unit_result
        from bench.suites.linear import fit_heads
        from bench.suites.protocols import Split

        st: TransferState = group.state
        s_emb, _ = ctx.embeddings(st.scfg, st.handle)
        t_emb, _ = ctx.embeddings(st.tcfg, st.handle)
        y_src = st.source_labels.reindex(s_emb.record_ids, fill_value=0).to_numpy()
        (fitted,) = fit_heads(s_emb, y_src, [Split("target", st.train, st.val, [])], st.head, st.seed, 1.0)
        arrays = fitted.arrays(t_emb.emb[t_emb.rows(st.target_ids)], st.target_labels.loc[st.target_ids].to_numpy(), st.target_ids)
        aligned = ";".join(f"{c.name}={'+'.join(c.source_codes)}->{'+'.join(c.target_codes)}" for c in st.classes)
        return [unit_result(arrays, [c.name for c in st.classes], {"n_train": len(st.train), "best_epoch": fitted.best_epoch},
                            {**st.head.as_params(), "aligned_classes": aligned})]

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        from bench.suites.classification import classification_aggregate

        agg = classification_aggregate(ctx, group, results, [c.name for c in group.state.classes] if group.state else [])
        agg.tags.update({k: results[0][0].tags[k] for k in ("source_dataset", "target_dataset", "n_target_unlabelled_dropped")})
        agg.tags["label_map"] = results[0][0].tags.get("label_map", "paper")  # units before the option: the paper's
        return agg

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        return [{"method": request.methods, "direction": request.directions or [f"{s}:{t}" for s, t in DIRECTIONS],
                 "seed": request.seeds or list(ctx.base.run.seeds)}]
