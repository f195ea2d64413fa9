"""Files that appear whole or not at all: every cache, store and result file bench writes goes through here."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write (hidden, ending in ``.tmp``, so no glob for the real files
    matches it); renamed onto ``path`` when the block ends, removed if it raises. Writers that append a
    suffix to a name (``numpy.save``) should be given an open file object."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_url(url: str, target: str | Path, desc: str = "download", chunk: int = 1 << 16, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``target`` with a progress bar, resuming a stopped transfer: bytes arrive in a
    ``<target>.part`` file that a later call continues with an HTTP range request, and only a complete file is
    renamed onto ``target``."""
    import requests
    from tqdm.auto import tqdm

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, stream=True, timeout=timeout, headers=headers) as resp:
        if resp.status_code == 416:  # the part file already holds everything
            os.replace(part, target)
            return target
        resp.raise_for_status()
        if have and resp.status_code != 206:  # the server ignored the range: start again
            have = 0
        size = int(resp.headers.get("content-length", 0)) or None
        with open(part, "ab" if have else "wb") as fh, tqdm(total=(size + have) if size else None, initial=have, unit="B",
                                                            unit_scale=True, desc=desc) as bar:
            for block in resp.iter_content(chunk):
                fh.write(block)
                bar.update(len(block))
        if size is not None and part.stat().st_size != have + size:
            raise OSError(f"{url}: the transfer stopped at {part.stat().st_size} of {have + size} bytes (run again to resume)")
    os.replace(part, target)
    return target
