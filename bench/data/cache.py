"""Prepared-array cache: preprocessed signals on disk, memory-mappable, written atomically.

Key = hash(reader fingerprint, preprocessing config, record selection). A finished entry is a
folder ``<cache>/prepared/<dataset>-<key>/`` with ``signals.npy`` [N, leads, samples] float32,
``record_ids.json`` and ``manifest.json``; it is built in a temporary sibling folder and renamed
into place only when complete, so an interrupted or failed prepare leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from bench import code_version
from bench.data.base import DatasetReader
from bench.data.errors import DataError
from bench.data.preprocess import PreprocessConfig, preprocess


@dataclass
class PreparedArrays:
    path: Path
    signals: np.ndarray  # memory-mapped [N, leads, samples]
    record_ids: list[str]
    manifest: dict

    @property
    def key(self) -> str:
        return self.manifest["key"]

    def rows(self, record_ids: Sequence[str]) -> np.ndarray:
        where = {r: i for i, r in enumerate(self.record_ids)}
        missing = [r for r in record_ids if r not in where]
        if missing:
            raise KeyError(f"{len(missing)} record(s) not in the prepared cache (skipped at prepare?), e.g. {missing[:3]}")
        return np.array([where[r] for r in record_ids], dtype=np.int64)


def cache_key(reader: DatasetReader, cfg: PreprocessConfig, record_ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(reader.fingerprint().encode())
    h.update(cfg.key().encode())
    h.update("\n".join(record_ids).encode())
    return h.hexdigest()[:16]


def prepared_key(reader: DatasetReader, cfg: PreprocessConfig, record_ids: Sequence[str] | None = None) -> str:
    """The key ``prepare`` files its arrays under, known without building them."""
    return cache_key(reader, cfg, list(record_ids) if record_ids is not None else list(reader.index.records.index))


def load_prepared(path: Path) -> PreparedArrays:
    manifest = json.loads((path / "manifest.json").read_text())
    ids = json.loads((path / "record_ids.json").read_text())
    signals = np.load(path / "signals.npy", mmap_mode="r")
    return PreparedArrays(path, signals, ids, manifest)


def prepare(reader: DatasetReader, cfg: PreprocessConfig, cache_dir: str | Path, *,
            record_ids: Sequence[str] | None = None, on_error: str = "raise", progress: bool = True) -> PreparedArrays:
    """Return the cached prepared arrays, building them first if needed."""
    if on_error not in ("raise", "skip"):
        raise DataError("data.on_error", f"must be 'raise' or 'skip', got {on_error!r}")
    index = reader.index
    ids = list(record_ids) if record_ids is not None else list(index.records.index)
    key = prepared_key(reader, cfg, ids)
    root = Path(cache_dir) / "prepared"
    final = root / f"{reader.name}-{key}"
    if (final / "manifest.json").is_file():
        return load_prepared(final)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{reader.name}-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        start = time.perf_counter()
        out = np.lib.format.open_memmap(tmp / "signals.npy", mode="w+", dtype=np.float32,
                                        shape=(len(ids), len(cfg.leads), cfg.n_samples))
        kept, skipped = [], []
        for rid in tqdm(ids, desc=f"prepare {reader.name}", unit="rec", disable=not progress):
            try:
                out[len(kept)] = preprocess(reader.read(rid), cfg)
            except DataError as exc:
                if on_error == "raise":
                    raise
                skipped.append({"record_id": rid, "problem": str(exc)})
                continue
            kept.append(rid)
        out.flush()
        del out
        if skipped:  # shrink to the kept rows
            full = np.load(tmp / "signals.npy", mmap_mode="r")
            np.save(tmp / "signals.kept.npy", np.asarray(full[: len(kept)]))
            del full
            os.replace(tmp / "signals.kept.npy", tmp / "signals.npy")
        manifest = {
            "key": key, "dataset": reader.name, "reader": reader.kind, "fingerprint": reader.fingerprint(),
            "preprocess": {**asdict(cfg), "leads": list(cfg.leads)}, "units": index.units,
            "prefiltered": index.prefiltered, "n_records": len(kept), "n_skipped": len(skipped),
            "skipped": skipped, "seconds": round(time.perf_counter() - start, 3), "code_version": code_version(),
        }
        (tmp / "record_ids.json").write_text(json.dumps(kept))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_prepared(final)
