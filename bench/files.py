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


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    import shutil

    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def staged_folder(folder: Path) -> Path:
    """Where a new version of ``folder`` is built: a hidden sibling (same file system, so the swap is a rename)."""
    return folder.with_name(f".{folder.name}.staged")


def recover_folder(folder: Path) -> None:
    """Finish or undo a swap a killed process left half done: ``folder`` missing with its previous version beside it
    means the previous version comes back; a stale staging folder is removed."""
    import shutil

    previous = folder.with_name(f".{folder.name}.previous")
    if not folder.exists() and previous.is_dir():
        os.replace(previous, folder)
    for leftover in (previous, staged_folder(folder)):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def swapped_folder(folder: str | Path, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Build a new version of ``folder`` in a staging sibling and swap it in whole when the block ends, so a kill at any
    point leaves the old version or the new one, never a mix. ``keep``: entries of the old folder the writer does not
    produce (copied into the staging folder first). The staging folder is removed if the block raises."""
    import shutil

    folder = Path(folder)
    recover_folder(folder)
    staged = staged_folder(folder)
    staged.mkdir(parents=True)
    try:
        for name in keep:  # hard links where the file system allows: nothing is copied, nothing of the old is changed
            source = folder / name
            if source.is_dir():
                shutil.copytree(source, staged / name, copy_function=_link_or_copy)
            elif source.is_file():
                _link_or_copy(source, staged / name)
        yield staged
        if not folder.exists():
            os.replace(staged, folder)
        elif _exchange(staged, folder):
            shutil.rmtree(staged)  # now the old version
        else:  # two renames; recover_folder mends a kill between them
            previous = folder.with_name(f".{folder.name}.previous")
            os.replace(folder, previous)
            os.replace(staged, folder)
            shutil.rmtree(previous)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
