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
