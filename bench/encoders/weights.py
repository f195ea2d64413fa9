"""Released weights from where their authors publish them: `--ckpt hf:ORG/REPO/FILE@REV`, `--ckpt url:https://...`,
and `bench models pull NAME[:FORM]` for the files a model card lists (``weights``).

Hugging Face Hub files come through ``huggingface_hub`` (its cache under ``<cache>/hub``, resumed downloads, offline
runs served from the cache; ``HF_ENDPOINT`` points it at a mirror); plain URLs (figshare, Zenodo) through
``bench.files.fetch_url`` (resumed with HTTP ranges). Every file's sha256 is checked against the card's digest when
the card records one, else against the hub's LFS digest (its ETag), and printed, so a user can pin it.
Google Drive links (ST-MEM, MERL, ECG-JEPA) need a browser's confirmation step: the command says where to get them.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.encoders.cards import load_card
from bench.encoders.checkpoint import CheckpointError, file_hash
from bench.files import fetch_url

HF_SPEC = re.compile(r"^hf:(?P<repo>[^/@\s]+/[^/@\s]+)/(?P<file>[^@\s]+?)(?:@(?P<rev>[^@\s]+))?$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ReleasedFile:
    """One file a model card lists: where it is published and what it must hash to."""

    encoder: str
    form: str
    preset: str
    hf_repo: str = ""
    hf_file: str = ""
    revision: str = "main"
    url: str = ""
    sha256: str = ""
    note: str = ""

    @classmethod
    def from_card(cls, encoder: str, entry: dict[str, Any]) -> "ReleasedFile":
        hf = entry.get("hf") or {}
        return cls(encoder, str(entry["form"]), str(entry.get("preset", "official")), hf.get("repo", ""), hf.get("file", ""),
                   str(hf.get("revision", "main")), entry.get("url", "") or "", entry.get("sha256") or "", entry.get("note", ""))

    @property
    def where(self) -> str:
        return f"hf:{self.hf_repo}/{self.hf_file}@{self.revision}" if self.hf_repo else self.url


def released_files(encoder: str) -> list[ReleasedFile]:
    """The files ``encoder``'s model card lists under ``weights`` (the first is the default form)."""
    return [ReleasedFile.from_card(encoder, e) for e in load_card(encoder).get("weights") or []]


def hub_cache(cache: str | Path) -> Path:
    return Path(cache) / "hub"


def _verified(path: Path, expected: str, source: str) -> Path:
    digest = file_hash(path, 64)
    if expected and digest != expected:
        path.unlink(missing_ok=True)
        raise CheckpointError(f"{source}: downloaded file has sha256 {digest}, expected {expected} (fix: the file at the source "
                              f"changed or the transfer was corrupted; nothing was kept, run the command again or check the "
                              f"model card's digest)")
    return path


def fetch_hf(repo: str, filename: str, revision: str, cache: str | Path, sha256: str = "") -> Path:
    """A Hub file in the cache (downloaded, resumed, or found offline), checked against ``sha256`` or the hub's LFS digest."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    source = f"hf:{repo}/{filename}@{revision}"
    try:
        path = Path(hf_hub_download(repo, filename, revision=revision, cache_dir=hub_cache(cache)))
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(f"{source}: not in the cache {hub_cache(cache)} and the hub is unreachable (fix: connect once, or "
                              f"download the file by hand and pass its path with --ckpt)") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(f"{source}: download failed ({exc}) (fix: check the repository, file name and revision on "
                              f"the model card, or download by hand and pass the path)") from exc
    expected = sha256
    if not expected and not os.environ.get("HF_HUB_OFFLINE"):
        try:
            etag = (get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision)).etag or "").strip('"')
            expected = etag if SHA256.match(etag) else ""
        except (HfHubHTTPError, OSError):
            expected = ""  # offline: the file was verified when it was downloaded
    return _verified(path, expected, source)


def fetch_plain(url: str, cache: str | Path, sha256: str = "") -> Path:
    """A file from a plain URL (figshare, Zenodo) in ``<cache>/downloads``, resumed where a transfer stopped."""
    if "drive.google.com" in url:
        raise CheckpointError(f"{url}: Google Drive asks a browser to confirm large downloads (fix: download the file from "
                              f"this link by hand, then pass its path with --ckpt NAME=PATH)")
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "download"
    target = Path(cache) / "downloads" / f"{hashlib.sha256(url.encode()).hexdigest()[:10]}-{name}"
    if not target.is_file():
        import requests

        try:
            fetch_url(url, target, desc=f"download {name}")
        except (requests.RequestException, OSError) as exc:
            raise CheckpointError(f"{url}: download failed ({exc}) (fix: run the command again, it resumes; or download "
                                  f"by hand and pass the path with --ckpt)") from exc
    return _verified(target, sha256, url)


def resolve_checkpoint(spec: str | Path | None, cache: str | Path) -> Path | None:
    """A ``--ckpt`` value as a local file: a path, ``hf:ORG/REPO/FILE[@REV]`` or ``url:https://...`` (downloaded into
    the cache once, then reused offline)."""
    if spec is None:
        return None
    text = str(spec)
    match = HF_SPEC.match(text)
    if match:
        return fetch_hf(match["repo"], match["file"], match["rev"] or "main", cache)
    if text.startswith("hf:"):
        raise CheckpointError(f"{text}: a Hub checkpoint is hf:ORG/REPO/FILE or hf:ORG/REPO/FILE@REVISION")
    if text.startswith("url:"):
        return fetch_plain(text[4:], cache)
    return Path(text)


def pull(name: str, cache: str | Path) -> tuple[ReleasedFile, Path]:
    """`bench models pull ENCODER[:FORM]`: the card's file (its first form by default) into the cache, verified."""
    encoder, _, form = name.partition(":")
    files = released_files(encoder)
    if not files:
        raise CheckpointError(f"{encoder}: its model card (configs/cards/{encoder}.yaml) lists no released weights "
                              f"(fix: `bench models list` shows the encoders that have some)")
    chosen = next((f for f in files if f.form == form), None) if form else files[0]
    if chosen is None:
        raise CheckpointError(f"{encoder} has no released form {form!r}; forms: {', '.join(f.form for f in files)}")
    if chosen.hf_repo:
        path = fetch_hf(chosen.hf_repo, chosen.hf_file, chosen.revision, cache, chosen.sha256)
    else:
        path = fetch_plain(chosen.url, cache, chosen.sha256)
    return chosen, path
