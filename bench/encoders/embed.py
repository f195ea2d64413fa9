"""`bench embed`: feature extraction from any registered encoder on the user's own arrays, a dataset or a WFDB folder.

Millivolt records [N, 12, S] in the standard lead order at ``fs`` go through the same path as every
benchmark number: the shared preprocessing (lead order, resampling and window of the encoder's
input contract), the contract's views, filters and scaling, the encoder, and for text the encoder's
own text path. The golden conformance tests run upstream's fixtures through this function. Arrays are checked
first (``check_signals``: NaN or flat leads, amplitudes that are not millivolts, records too short), and a dataset's
embeddings become a table of record ids, splits, labels and provenance (``embedding_table``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from bench.config import ConfigError
from bench.data.base import RawECG
from bench.data.errors import DataError
from bench.data.leads import STANDARD_LEADS
from bench.data.preprocess import PreprocessConfig, preprocess
from bench.encoders.loading import EncoderHandle


def read_signals(path: str | Path) -> np.ndarray:
    """X.npy as float32 [N, 12, S]; anything else is refused naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "signals file not found", "pass --signals X.npy, a float array [N, 12, samples] in mV")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(path, f"not a readable .npy array ({exc})", "save with numpy.save(path, array)") from exc
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != len(STANDARD_LEADS):
        raise DataError(path, f"shape {x.shape} is not [N, 12, samples]",
                        "stack records as [N, 12, samples] in the order I, II, III, aVR, aVL, aVF, V1-V6")
    return x.astype(np.float32, copy=False)


def check_signals(x: np.ndarray, fs: float, source: str) -> None:
    """Refuse arrays that would embed silently wrong: the first records with problems are named with the fix."""
    from bench.data.checks import signal_problems

    bad = [(i, p) for i, rec in enumerate(x) for p in signal_problems(rec, fs, STANDARD_LEADS)]
    if bad:
        listed = "; ".join(f"record {i}: {p}" for i, p in bad[:3]) + (f"; ... {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DataError(source, listed, "clean or convert the records (millivolts, >= 2 s, no NaN or flat leads), or pass "
                                        "--skip-signal-checks to embed them as they are")


def embedding_table(emb, index, provenance: Mapping[str, Any]) -> "pd.DataFrame":
    """One row per record: id, split, fold, the labels of each task (class names), the embedding (and the aligned one
    with a text tower), and the provenance of the numbers (constant columns)."""
    import pandas as pd

    records = index.records.reindex(emb.record_ids)
    table = pd.DataFrame({"record_id": emb.record_ids,
                          "split": records["split"].astype(object).where(records["split"].notna(), None).tolist(),
                          "fold": records["fold"].astype("Int64").tolist() if "fold" in records else None})
    for name, task in index.tasks.items():
        labels = task.labels.reindex(emb.record_ids)
        table[f"labels:{name}"] = [[c for c, v in row.items() if v == 1] if row.notna().all() else None
                                   for _, row in labels.iterrows()]
    for raw in ("dx_snomed", "dx"):  # the record's own diagnosis codes beside the mapped labels (unscored codes included)
        if raw in records:
            table[raw] = records[raw].astype(object).where(records[raw].notna(), None).tolist()
    table["embedding"] = list(emb.emb.astype(np.float32))
    if emb.aligned is not None:
        table["aligned"] = list(emb.aligned.astype(np.float32))
    for key, value in provenance.items():
        table[key] = str(value)
    return table


def prepare_signals(signals: np.ndarray, fs: float, contract, base: Mapping[str, Any] | None = None,
                    source: str = "signals", dataset: str | None = None) -> np.ndarray:
    """Raw mV [N, 12, S] at ``fs`` -> prepared [N, leads, n] by the shared preprocessing of ``contract`` (with the rules
    it declares for ``dataset``, a dataset identity such as cpsc2018)."""
    cfg = PreprocessConfig.from_mapping(contract.preprocess_mapping(dict(base or {}), dataset))
    rows = [preprocess(RawECG(f"{source}[{i}]", np.asarray(x, dtype=np.float64 if x.dtype == np.float64 else np.float32), float(fs), STANDARD_LEADS,
                              source=f"{source}[{i}]"), cfg) for i, x in enumerate(signals)]
    return np.stack(rows) if rows else np.zeros((0, len(cfg.leads), cfg.n_samples), np.float32)


@torch.inference_mode()
def embed_signals(handle: EncoderHandle, signals: np.ndarray, fs: float, texts: Sequence[str] | None = None,
                  base: Mapping[str, Any] | None = None, batch_size: int = 64, dataset: str | None = None) -> dict[str, np.ndarray]:
    """``embedding`` [N, D], ``aligned`` [N, D'] with a text tower, ``text`` [M, D'] for ``texts``; ``dataset`` (an
    identity) applies the contract's rules for that dataset's records."""
    enc = handle.encoder.eval()
    prepared = prepare_signals(signals, fs, enc.contract, base, dataset=dataset)
    embs, aligned = [], []
    for start in range(0, len(prepared), batch_size):
        e, a = enc.embed(prepared[start:start + batch_size])
        embs.append(e.float().cpu().numpy())
        if a is not None:
            aligned.append(a.float().cpu().numpy())
    out = {"embedding": np.concatenate(embs) if embs else np.zeros((0, enc.spec.embed_dim), np.float32)}
    if aligned:
        out["aligned"] = np.concatenate(aligned)
    if texts:
        if not enc.spec.has_text_tower:
            raise ConfigError(f"{handle.method} has no text tower: drop --texts (it embeds ECGs only)")
        out["text"] = enc.encode_text(list(texts)).float().cpu().numpy()
    return out
