"""Prepared-array cache: preprocessed signals on disk, memory-mappable, written atomically.

Key = hash(reader fingerprint, preprocessing config, record selection). A finished entry is a
folder ``<cache>/prepared/<dataset>-<key>/`` with ``signals.npy`` [N, leads, samples] float32,
``record_ids.json`` and ``manifest.json``; it is built by parallel workers in a ``.partial-`` sibling
folder, chunk by chunk, and renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from bench import code_version
from bench.data.base import DatasetReader
from bench.data.checks import signal_problems
from bench.data.errors import DataError
from bench.data.preprocess import PreprocessConfig, preprocess
from bench.files import atomic_path
from bench.locks import hold


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


CHUNK_RECORDS = 128  # unit of parallel work and of resumption


def default_workers() -> int:
    """The cores this process may use (``data.workers`` when the config leaves it null)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_WORKER: tuple[DatasetReader, PreprocessConfig, str] | None = None


def _init_worker(reader: DatasetReader, cfg: PreprocessConfig, on_error: str) -> None:
    global _WORKER
    _WORKER = (reader, cfg, on_error)


def _prepare_chunk(folder: Path, number: int, start: int, ids: list[str]) -> int:
    """Preprocess ``ids`` into rows ``start..`` of the shared ``signals.npy``, then commit the chunk by
    writing its marker atomically (rows of skipped records stay zero). Returns the number of records."""
    reader, cfg, on_error = _WORKER
    out = np.load(folder / "signals.npy", mmap_mode="r+")
    skipped, findings = [], []
    for offset, rid in enumerate(ids):
        try:
            raw = reader.read(rid)
            doubtful = signal_problems(raw.signal, raw.fs, raw.leads, raw.units, cfg.nan_window)
            if doubtful:
                findings.append({"record_id": rid, "findings": doubtful})
            out[start + offset] = preprocess(raw, cfg)
        except DataError as exc:
            if on_error == "raise":
                raise
            out[start + offset] = 0.0
            skipped.append({"record_id": rid, "problem": str(exc)})
    out.flush()
    del out
    with atomic_path(folder / "chunks" / f"{number:06d}.json") as tmp:
        tmp.write_text(json.dumps({"start": start, "n": len(ids), "skipped": skipped, "findings": findings}))
    return len(ids)


def _run_chunks(folder: Path, todo: list[tuple[int, int, list[str]]], workers: int, bar) -> None:
    """Run the chunks in this process (one worker) or in a pool of ``workers`` processes (fork on Linux)."""
    if workers <= 1 or len(todo) <= 1:
        for chunk in todo:
            bar.update(_prepare_chunk(folder, *chunk))
        return
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context(method),
                             initializer=_init_worker, initargs=_WORKER) as pool:
        pending = {pool.submit(_prepare_chunk, folder, *chunk) for chunk in todo}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    bar.update(future.result())  # re-raises a worker's error here
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _compact(folder: Path, keep: np.ndarray) -> None:
    """Drop the rows of skipped records, block by block (memory stays one chunk)."""
    full = np.load(folder / "signals.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(folder / "signals.kept.npy", mode="w+", dtype=np.float32, shape=(len(keep), *full.shape[1:]))
    for s in range(0, len(keep), CHUNK_RECORDS):
        out[s:s + CHUNK_RECORDS] = full[keep[s:s + CHUNK_RECORDS]]
    out.flush()
    del out, full
    os.replace(folder / "signals.kept.npy", folder / "signals.npy")


def prepare(reader: DatasetReader, cfg: PreprocessConfig, cache_dir: str | Path, *,
            record_ids: Sequence[str] | None = None, on_error: str = "raise", progress: bool = True,
            workers: int | None = None, chunk_records: int = CHUNK_RECORDS) -> PreparedArrays:
    """Return the cached prepared arrays, building them first if needed.

    ``workers`` processes (default: the cores available) preprocess chunks of ``chunk_records`` records
    into one memory-mapped file; the result is byte-identical whatever the number of workers. Chunks are
    committed one by one in ``.partial-<dataset>-<key>/``, so a killed prepare resumes where it stopped;
    a bad record (``on_error='raise'``) removes the partial folder, and nothing is ever read from it
    until the finished folder is renamed into place.
    """
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
    with hold(cache_dir, [f"prepare:{final.name}"]):
        if not (final / "manifest.json").is_file():
            _build(reader, cfg, ids, key, root / f".partial-{reader.name}-{key}", final, on_error, progress,
                   default_workers() if workers is None else int(workers), chunk_records)
    return load_prepared(final)


def report_lines(manifest: dict) -> list[str]:
    """What a command says about its prepared records: every record left out with its reason, and every record
    prepared with a doubtful signal (half-NaN, flat leads, ...) with its findings."""
    lines = [f"skipped {s['record_id']}: {s['problem']}" for s in manifest.get("skipped", [])]
    lines += [f"finding {f['record_id']}: {'; '.join(f['findings'])}" for f in manifest.get("findings", [])]
    return lines


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing ``needed`` bytes under ``folder`` when the disk cannot hold them (a memory-mapped write
    on a full disk kills the process with a bus error instead of raising)."""
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05 + (64 << 20):
        raise DataError(folder, f"not enough free disk space: {what} needs {needed / 1e9:.2f} GB, {free / 1e9:.2f} GB are free",
                        "free some space, or point BENCH_CACHE (paths.cache) at a larger disk")


def _build(reader: DatasetReader, cfg: PreprocessConfig, ids: list[str], key: str, folder: Path, final: Path, on_error: str,
           progress: bool, workers: int, chunk_records: int) -> None:
    plan = {"key": key, "shape": [len(ids), len(cfg.leads), cfg.n_samples], "chunk_records": chunk_records, "on_error": on_error}
    if not ((folder / "plan.json").is_file() and json.loads((folder / "plan.json").read_text()) == plan):
        check_free_space(folder.parent, 4 * int(np.prod(plan["shape"])), f"preparing {reader.name} ({len(ids)} records)")
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "chunks").mkdir(parents=True)
        np.lib.format.open_memmap(folder / "signals.npy", mode="w+", dtype=np.float32, shape=tuple(plan["shape"])).flush()
        (folder / "plan.json").write_text(json.dumps(plan))
    chunks = [(i, s, ids[s:s + chunk_records]) for i, s in enumerate(range(0, len(ids), chunk_records))]
    todo = [c for c in chunks if not (folder / "chunks" / f"{c[0]:06d}.json").is_file()]
    resumed = len(chunks) - len(todo)
    start = time.perf_counter()
    _init_worker(reader, cfg, on_error)
    try:
        with tqdm(total=len(ids), initial=len(ids) - sum(len(c[2]) for c in todo), desc=f"prepare {reader.name}", unit="rec",
                  disable=not progress) as bar:
            _run_chunks(folder, todo, workers, bar)
    except DataError:
        shutil.rmtree(folder, ignore_errors=True)  # bad input: nothing is left behind
        raise
    except (OSError, BrokenProcessPool) as exc:  # a full disk, a worker killed by a bus error: nothing is left either
        shutil.rmtree(folder, ignore_errors=True)
        raise DataError(folder, f"preparing {reader.name} stopped ({type(exc).__name__}: {exc}); the partial cache entry was removed",
                        "check the free disk space of the cache (paths.cache / BENCH_CACHE), then run again") from exc
    except Exception:  # anything a reader raises: the partial folder goes with it (only a killed process leaves one to resume)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    markers = [json.loads((folder / "chunks" / f"{c[0]:06d}.json").read_text()) for c in chunks]
    skipped = [s for m in markers for s in m["skipped"]]
    findings = [f for m in markers for f in m.get("findings", [])]
    bad = {s["record_id"] for s in skipped}
    kept = [r for r in ids if r not in bad]
    if skipped:
        _compact(folder, np.array([i for i, r in enumerate(ids) if r not in bad], dtype=np.int64))
    index = reader.index
    manifest = {
        "key": key, "dataset": reader.name, "reader": reader.kind, "fingerprint": reader.fingerprint(),
        "preprocess": {**asdict(cfg), "leads": list(cfg.leads)}, "units": index.units,
        "prefiltered": index.prefiltered, "n_records": len(kept), "n_skipped": len(skipped),
        "skipped": skipped, "findings": findings, "seconds": round(time.perf_counter() - start, 3), "workers": workers,
        "chunks_resumed": resumed, "code_version": code_version(),
    }
    (folder / "record_ids.json").write_text(json.dumps(kept))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(folder / "chunks")
    (folder / "plan.json").unlink()
    os.replace(folder, final)
