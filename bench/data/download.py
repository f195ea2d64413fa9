"""Download a PhysioNet dataset archive with a progress bar (resumed if stopped) and unpack it atomically into its root."""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path

import requests
import yaml

from bench import REPO_ROOT
from bench.data.errors import DataError
from bench.files import fetch_url

SOURCES = REPO_ROOT / "configs" / "download.yaml"


def sources() -> dict:
    return yaml.safe_load(SOURCES.read_text())


def download(name: str, root: str | Path, *, timeout: float = 30.0) -> Path:
    """Fetch ``name``'s archive and unpack it into ``root``. The archive is kept beside ``root`` until it unpacks, so a
    stopped transfer resumes (``bench.files.fetch_url``); a failed unpack leaves no partial ``root``."""
    spec = sources().get(name)
    if spec is None:
        raise DataError(SOURCES, f"no download source for '{name}'", f"choose one of {sorted(sources())}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        return root
    partial = root.with_name(f".{root.name}.download")
    try:
        archive = fetch_url(spec["url"], partial / spec["url"].rsplit("/", 1)[-1], desc=f"download {name}", timeout=timeout)
    except (requests.RequestException, OSError) as exc:
        raise DataError(spec["url"], f"download failed ({exc})", "check the network and run the command again (it resumes), "
                                                                 "or download by hand and set data.root") from exc
    work = partial / f"unpacked-{uuid.uuid4().hex[:8]}"
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as z:
                z.extractall(work)
        else:
            with tarfile.open(archive) as t:
                t.extractall(work, filter="data")
        top = work
        entries = list(work.iterdir())
        if spec.get("strip_top_folder") and len(entries) == 1 and entries[0].is_dir():
            top = entries[0]
        root.parent.mkdir(parents=True, exist_ok=True)
        if root.exists():
            root.rmdir()
        os.replace(top, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)
    return root
