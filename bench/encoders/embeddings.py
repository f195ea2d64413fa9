"""Embedding cache: each (encoder weights, prepared arrays, encoder input step) is encoded once.

Every fold, label fraction, seed and suite reuses the cached arrays: ``emb`` [N, D] (the global
embedding the linear heads train on) and, for encoders with a text tower, ``aligned`` [N, D'] (the
ECG side of the shared ECG-text space, for zero-shot). Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.data.cache import PreparedArrays
from bench.data.loader import Batches, InOrder, LoaderConfig, Rows, batch_loader
from bench.encoders.loading import EncoderHandle
from bench.files import atomic_path
from bench.locks import hold

T = TypeVar("T")


@dataclass
class Embeddings:
    record_ids: list[str]
    emb: np.ndarray
    aligned: np.ndarray | None
    path: Path

    def rows(self, ids) -> np.ndarray:
        where = {r: i for i, r in enumerate(self.record_ids)}
        return np.array([where[r] for r in ids], dtype=np.int64)


@dataclass
class EncodeSettings:
    """How the encoding pass runs: batch size and loader change no number; bf16 autocast (``amp``, CUDA only)
    does, so the embedding key records the precision."""

    batch_size: int = 256
    amp: bool = True
    loader: LoaderConfig = field(default_factory=LoaderConfig)

    @classmethod
    def from_config(cls, cfg) -> "EncodeSettings":
        embed = cfg.get("embed") or {}
        return cls(int(embed.get("batch_size", cls.batch_size)), bool(embed.get("amp", cls.amp)), LoaderConfig.from_mapping(cfg.get("loader")))

    @property
    def precision(self) -> str:
        return "bf16" if self.amp and torch.cuda.is_available() else "fp32"


def embedding_key(handle: EncoderHandle, prepared_key: str, precision: str = "fp32") -> str:
    """Weights, prepared arrays (reader, data options, preprocessing, records), input contract, encoder options,
    and the precision when it is not float32."""
    spec = handle.encoder.spec
    parts = [handle.method, handle.checkpoint_hash, prepared_key, spec.contract.as_dict(), spec.fs, spec.n_samples,
             spec.extra, handle.options] + ([precision] if precision != "fp32" else [])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@torch.inference_mode()
def encode_arrays(handle: EncoderHandle, signals: np.ndarray | Rows, units: str, settings: EncodeSettings | None = None,
                  progress: bool = False, desc: str = "") -> tuple[np.ndarray, np.ndarray | None]:
    """Prepared records (in memory, or ``Rows`` of the cache file) -> (embeddings, aligned embeddings or None)
    through the encoder's input contract; loader processes read and compute the contract's views ahead."""
    settings = settings or EncodeSettings()
    enc = handle.encoder.eval()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    enc.to(device)
    rows = signals if isinstance(signals, Rows) else Rows(signals)
    batches = batch_loader(Batches(rows, transform=enc.contract.views), InOrder(len(rows), settings.batch_size), settings.loader)
    aligned_ok = enc.spec.has_text_tower
    embs, aligned = [], []
    for views, _, _ in tqdm(batches, desc=desc or f"embed {handle.method}", disable=not progress):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16"):
            e, a = enc.embed_views(views)
        embs.append(e.float().cpu().numpy())
        if aligned_ok and a is not None:
            aligned.append(a.float().cpu().numpy())
    emb = np.concatenate(embs) if embs else np.zeros((0, enc.spec.embed_dim), np.float32)
    bad = int((~np.isfinite(emb)).any(axis=1).sum())
    if bad:  # never cached, never scored
        raise FloatingPointError(f"{handle.method}: {bad} of {len(emb)} embeddings hold NaN or infinite values (weights "
                                 f"{handle.checkpoint_hash}) (fix: check the checkpoint, which may have diverged, and the "
                                 f"records' values; nothing was cached)")
    return emb.astype(np.float32), (np.concatenate(aligned).astype(np.float32) if aligned_ok and aligned else None)


def _load(path: Path) -> Embeddings:
    with np.load(path, allow_pickle=False) as z:
        aligned = z["aligned"] if "aligned" in z.files else None
        return Embeddings(list(z["ids"]), z["emb"], aligned, path)


def _once(cache_dir: str | Path, path: Path, load: Callable[[Path], T], build: Callable[[BinaryIO], T]) -> T:
    """``load(path)``, or under the path's lock ``build`` it (writing into the open temporary file) when no
    process has yet: concurrent processes wait for the one that encodes, then load its file."""
    if path.is_file():
        return load(path)
    with hold(cache_dir, [f"embeddings:{path.name}"]):
        if path.is_file():
            return load(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            return build(f)


def cached_embeddings(handle: EncoderHandle, prepared: PreparedArrays, cache_dir: str | Path, units: str,
                      settings: EncodeSettings | None = None, progress: bool = True) -> Embeddings:
    """The cached embeddings, encoding first if needed (one process encodes, concurrent ones wait for it)."""
    settings = settings or EncodeSettings()
    path = Path(cache_dir) / "embeddings" / f"{handle.method}-{embedding_key(handle, prepared.key, settings.precision)}.npz"

    def build(f: BinaryIO) -> Embeddings:
        emb, aligned = encode_arrays(handle, Rows(prepared.path / "signals.npy"), units, settings, progress,
                                     desc=f"embed {handle.method} on {prepared.manifest['dataset']}")
        np.savez(f, ids=np.array(prepared.record_ids), emb=emb, **({"aligned": aligned} if aligned is not None else {}))
        return Embeddings(list(prepared.record_ids), emb, aligned, path)

    return _once(cache_dir, path, _load, build)


@dataclass
class TokenFeatures:
    """Token features [N, T, D] (float16, memory-mapped) of the prepared records, in their order: what the attentive
    probe trains on (each view's tokens concatenated along T)."""

    record_ids: list[str]
    tokens: np.ndarray
    path: Path

    def rows(self, ids) -> np.ndarray:
        where = {r: i for i, r in enumerate(self.record_ids)}
        return np.array([where[r] for r in ids], dtype=np.int64)


@torch.inference_mode()
def _encode_tokens(enc, views: torch.Tensor) -> torch.Tensor:
    """[B, V, leads, C] -> [B, V * T, D]: each view's tokens, concatenated."""
    return torch.cat([enc.encode_tokens(views[:, v]) for v in range(views.shape[1])], dim=1)


def cached_token_features(handle: EncoderHandle, prepared: PreparedArrays, cache_dir: str | Path,
                          settings: EncodeSettings | None = None, progress: bool = True) -> TokenFeatures:
    """The cached token features of the prepared records, encoding first if needed (once per embedding key, as the
    embeddings are): one pass of the frozen encoder, then every attentive head reads them."""
    settings = settings or EncodeSettings()
    key = embedding_key(handle, prepared.key, settings.precision)
    path = Path(cache_dir) / "embeddings" / f"tokens-{handle.method}-{key}.npy"

    def load(p: Path) -> TokenFeatures:
        return TokenFeatures(list(prepared.record_ids), np.load(p, mmap_mode="r"), p)

    def build(f: BinaryIO) -> TokenFeatures:
        enc = handle.encoder.eval()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        enc.to(device)
        batches = batch_loader(Batches(Rows(prepared.path / "signals.npy"), transform=enc.contract.views),
                               InOrder(len(prepared.record_ids), settings.batch_size), settings.loader)
        out = None
        start = 0
        for views, _, _ in tqdm(batches, desc=f"tokens {handle.method} on {prepared.manifest['dataset']}", disable=not progress):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16"):
                t = _encode_tokens(enc, views.to(device)).float().cpu().numpy().astype(np.float16)
            if out is None:
                out = np.lib.format.open_memmap(f.name, mode="w+", dtype=np.float16, shape=(len(prepared.record_ids), *t.shape[1:]))
            out[start:start + len(t)] = t
            start += len(t)
        out.flush()
        return TokenFeatures(list(prepared.record_ids), out, path)

    return _once(cache_dir, path, load, build)


def cached_perturbed_embeddings(handle: EncoderHandle, prepared: PreparedArrays, record_ids: list[str], condition, seed: int,
                                cache_dir: str | Path, units: str, settings: EncodeSettings | None = None) -> np.ndarray:
    """Embeddings [len(record_ids), D] of ``record_ids`` under an acquisition shift (bench/data/perturb.py),
    cached per (embedding key, condition, seed, records). For a contract whose filters and scaling run in the
    preprocessing, ``prepared`` holds the arrays without them: the shift comes first, then those steps, as on a record."""
    from bench.data.perturb import apply

    pre = prepared.manifest["preprocess"]
    settings = settings or EncodeSettings()
    key = embedding_key(handle, prepared.key, settings.precision)
    tag = hashlib.sha256(json.dumps([key, condition.key(), seed, record_ids]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "embeddings" / "perturbed" / f"{handle.method}-{condition.name}-{tag}.npy"

    def build(f: BinaryIO) -> np.ndarray:
        signals = apply(condition, prepared.signals[prepared.rows(record_ids)], pre["leads"], float(pre["target_fs"]), record_ids, seed)
        if handle.encoder.contract.steps_prepared:  # ``prepared`` is raw (RunContext.prepared(raw=True)): the steps follow
            signals = handle.encoder.contract.filter_and_scale(signals)
        emb, _ = encode_arrays(handle, signals, units, settings)
        np.save(f, emb)
        return emb

    return _once(cache_dir, path, np.load, build)
