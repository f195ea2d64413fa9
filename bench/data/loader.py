"""Batches from the prepared-array cache for pretraining and encoding, without holding the pool in memory.

Rows are read with positioned reads (``os.pread``) from the prepared ``signals.npy`` rather than through
a memory map: the pages a pass reads stay in the OS page cache, where they do not count toward (nor
accumulate in) the process's resident memory, so peak RSS does not grow with the pool. Texts live in
one UTF-8 buffer with offsets, which loader processes share without copy-on-write growth. The batch
plan (which positions form step s) is computed in the main process exactly as before, so a loader
with worker processes gives the same batches, in the same order, as reading in the loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch


class Rows:
    """Records [N, leads, samples] float32 by position: rows ``rows`` of a ``.npy`` file, or of an array in memory."""

    def __init__(self, source: np.ndarray | str | Path, rows: Sequence[int] | None = None):
        if isinstance(source, (str, Path)):
            self.path: Path | None = Path(source)
            self.array = None
            header = np.load(self.path, mmap_mode="r")  # maps without reading: only the header's facts are kept
            if not header.flags.c_contiguous or header.dtype != np.float32:
                raise ValueError(f"{self.path}: expected a C-ordered float32 array, got {header.dtype}")
            self.offset, self.file_shape = int(header.offset), tuple(header.shape)
            del header
        else:
            self.path, self.array, self.offset, self.file_shape = None, source, 0, tuple(source.shape)
        self.rows = np.arange(self.file_shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self.row_shape = self.file_shape[1:]
        self._fd: tuple[int, int] | None = None  # (pid, fd): each process opens its own

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def _file(self) -> int:
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.path, os.O_RDONLY))
        return self._fd[1]

    def read(self, positions: Sequence[int]) -> np.ndarray:
        """The records at ``positions`` (positions into ``rows``), as a new array; runs of adjacent rows in one read."""
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        if self.array is not None:
            return np.asarray(self.array[rows], dtype=np.float32)
        out = np.empty((len(rows), *self.row_shape), dtype=np.float32)
        row_bytes = out[0].nbytes if len(rows) else 0
        fd, i = self._file(), 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            want = row_bytes * (j - i)
            got = os.pread(fd, want, self.offset + int(rows[i]) * row_bytes)
            if len(got) != want:
                raise OSError(f"{self.path}: truncated prepared array (fix: delete the folder and prepare again)")
            out[i:j] = np.frombuffer(got, dtype=np.float32).reshape(j - i, *self.row_shape)
            i = j
        return out


class Texts:
    """Strings by position, stored as one UTF-8 buffer with offsets."""

    def __init__(self, texts: Sequence[str]):
        encoded = [str(t).encode() for t in texts]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.buffer[self.offsets[i]:self.offsets[i + 1]].tobytes().decode()


class EpochBatches(torch.utils.data.Sampler):
    """Step i of epoch e: positions ``sorted(permutation_{seed,e}(n)[i*B:(i+1)*B][rank::world])``; the last
    partial batch is dropped (InfoNCE wants full batches). ``set_epoch`` before each pass."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for i in range(len(self)):
            yield np.sort(order[i * self.batch_size:(i + 1) * self.batch_size][self.rank::self.world])


class InOrder(torch.utils.data.Sampler):
    """Positions 0..n-1 in batches of ``batch_size`` (encoding)."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        for s in range(0, self.n, self.batch_size):
            yield np.arange(s, min(s + self.batch_size, self.n))


class Batches(torch.utils.data.Dataset):
    """One item = one whole batch: (signals tensor after ``transform``, texts or None, positions)."""

    def __init__(self, rows: Rows, texts: Texts | None = None, transform: Callable[[np.ndarray], np.ndarray] | None = None):
        self.rows, self.texts, self.transform = rows, texts, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: np.ndarray):
        x = self.rows.read(positions)
        if self.transform is not None:
            x = self.transform(x)
        texts = [self.texts[int(i)] for i in positions] if self.texts is not None else None
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), texts, positions


def _as_is(batch):
    return batch


@dataclass
class LoaderConfig:
    """How batches are fed; nothing here changes a number (tests compare against reading in the loop)."""

    workers: int | None = None  # None: 0 on CPU (the model already uses every core), min(8, cores - 1) with CUDA
    prefetch_factor: int = 2

    @classmethod
    def from_mapping(cls, cfg) -> "LoaderConfig":
        from bench.config import ConfigError, dataclass_from_mapping

        return dataclass_from_mapping(cls, cfg or {}, "loader config", lambda w, m: ConfigError(f"{w}: {m}"))

    def n_workers(self) -> int:
        if self.workers is not None:
            return int(self.workers)
        from bench.data.cache import default_workers

        return min(8, default_workers() - 1) if torch.cuda.is_available() else 0


def batch_loader(dataset: Batches, sampler: torch.utils.data.Sampler, cfg: LoaderConfig | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader that yields whole batches from ``sampler``: worker processes read ahead, pinned memory on CUDA."""
    cfg = cfg or LoaderConfig()
    workers = cfg.n_workers()
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_as_is, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                                       prefetch_factor=cfg.prefetch_factor if workers > 0 else None)
