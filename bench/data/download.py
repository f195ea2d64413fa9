"""Download a PhysioNet dataset archive with a progress bar and unpack it atomically into its root."""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path

import requests
import yaml
from tqdm.auto import tqdm

from bench import REPO_ROOT
from bench.data.errors import DataError

SOURCES = REPO_ROOT / "configs" / "download.yaml"


def sources() -> dict:
    return yaml.safe_load(SOURCES.read_text())


def download(name: str, root: str | Path, *, chunk: int = 1 << 20, timeout: float = 30.0) -> Path:
    """Fetch ``name``'s archive into ``root`` (nothing is left behind if it fails)."""
    spec = sources().get(name)
    if spec is None:
        raise DataError(SOURCES, f"no download source for '{name}'", f"choose one of {sorted(sources())}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        return root
    work = root.with_name(f".{root.name}.download-{uuid.uuid4().hex[:8]}")
    work.mkdir(parents=True)
    try:
        archive = work / spec["url"].rsplit("/", 1)[-1]
        with requests.get(spec["url"], stream=True, timeout=timeout) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length", 0)) or None
            with open(archive, "wb") as fh, tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                for block in resp.iter_content(chunk):
                    fh.write(block)
                    bar.update(len(block))
        unpacked = work / "unpacked"
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as z:
                z.extractall(unpacked)
        else:
            with tarfile.open(archive) as t:
                t.extractall(unpacked, filter="data")
        top = unpacked
        entries = list(unpacked.iterdir())
        if spec.get("strip_top_folder") and len(entries) == 1 and entries[0].is_dir():
            top = entries[0]
        root.parent.mkdir(parents=True, exist_ok=True)
        if root.exists():
            root.rmdir()
        os.replace(top, root)
    except requests.RequestException as exc:
        raise DataError(spec["url"], f"download failed ({exc})", "check the network, or download by hand and set data.root") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root
