"""Content hashes: the stable names of objects, tables and record lists that keys are built from."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import pandas as pd


def content_hash(obj: Any, n: int = 16) -> str:
    """Stable hash of a JSON-able object (dict keys sorted; numpy / paths through ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def frame_hash(frame: "pd.DataFrame") -> str:
    """Hash of a table's content (index, columns and values): a label table or a metadata table."""
    return hashlib.sha256(frame.to_csv().encode()).hexdigest()[:16]


def ids_hash(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]
