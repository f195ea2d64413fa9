"""Cross-domain transfer in the aligned label space of the MERIT paper's Table 5.

A block ``X_to_Y`` maps each class of X to the class codes of Y it is aligned with (an empty list is
the paper's "None": left out). The reverse direction reads the same pairs the other way. An aligned
class is positive in a dataset when any of that side's codes is positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from bench.data.errors import DataError

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


def load_label_maps(path: str | Path) -> dict[str, dict[str, list[str]]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "label-map file not found", "set transfer.label_maps to the Table 5 yaml")
    return yaml.safe_load(path.read_text())


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
