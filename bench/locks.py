"""Claims that let concurrent processes share one cache and one results store.

Two `bench run`s on overlapping work, or launcher jobs on a cluster, meet here: whoever holds a key's
lock computes that thing (a unit of work, an aggregate, an embedding file, a pretrained checkpoint);
the others wait, then find it done. The locks are OS file locks (``filelock``) under
``<paths.cache>/locks``, the folder every worker already shares; the OS drops a lock when its holder
dies, so a killed job never leaves anything claimed.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Iterable, Iterator

from filelock import FileLock


def lock_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / "locks" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"


@contextlib.contextmanager
def hold(cache_dir: str | Path, keys: Iterable[str]) -> Iterator[None]:
    """Hold the locks of ``keys`` (taken in sorted order, so two holders of overlapping sets cannot deadlock)."""
    paths = sorted({lock_path(cache_dir, k) for k in keys})
    if paths:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(FileLock(path))
        yield
