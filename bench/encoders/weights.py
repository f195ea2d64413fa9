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


def _env_true(name: str) -> bool:
    """An environment switch read as huggingface_hub reads it (1/ON/YES/TRUE; ``HF_HUB_OFFLINE=0`` means online)."""
    from huggingface_hub.constants import ENV_VARS_TRUE_VALUES

    return os.environ.get(name, "").upper() in ENV_VARS_TRUE_VALUES


def _segments_safe(text: str) -> bool:
    """No absolute path, drive, backslash, empty, '.' or '..' segment: a relative name that stays where it is put."""
    return (bool(text) and not text.startswith(("/", "~")) and "\\" not in text and ":" not in text
            and all(part not in ("", ".", "..") for part in text.split("/")))


def validate_hub_reference(repo: str, filename: str, revision: str) -> None:
    """Each part of a Hub reference checked against the hub's own rules (``validate_repo_id``) and for path traversal,
    before anything is fetched or written."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    source = f"hf:{repo}/{filename}@{revision}"
    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise CheckpointError(f"{source}: not a Hub repository id ({str(exc).splitlines()[0]}) (fix: hf:ORG/REPO/FILE@REV "
                              f"with the names the model card gives)") from exc
    for part, value in (("file", filename), ("revision", revision)):
        if not _segments_safe(value) or any(ord(c) < 32 for c in value):
            raise CheckpointError(f"{source}: the {part} {value!r} is not a plain relative name ('..', '.', an absolute "
                                  f"path or a backslash would leave the cache) (fix: the {part} as the model card gives it)")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub's endpoint: an offline machine is told at once instead of after the client's retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except (OSError, ValueError):
        return False


def _inside(path: Path, root: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


def _confined(root: Path, *targets: Path, source: str) -> None:
    """Every place a download writes, symlinks resolved, lies inside the cache ``root``."""
    for target in targets:
        if not _inside(target, root):
            raise CheckpointError(f"{source}: refused: the download would write {os.path.realpath(target)}, outside the "
                                  f"cache {os.path.realpath(root)} (fix: remove the symlink or name that leads there)")


def _verified(path: Path, expected: str, source: str) -> Path:
    digest = file_hash(path, 64)
    if expected and digest != expected:
        Path(os.path.realpath(path)).unlink(missing_ok=True)  # a hub cache entry is a symlink to its blob: both go
        path.unlink(missing_ok=True)
        raise CheckpointError(f"{source}: downloaded file has sha256 {digest}, expected {expected} (fix: the file at the source "
                              f"changed or the transfer was corrupted; nothing was kept, run the command again or check the "
                              f"model card's digest)")
    return path


def _digest_note(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _check_recorded(path: Path, note: Path, source: str) -> None:
    """A cached file against the digest recorded when it was downloaded (offline too)."""
    if note.is_file():
        _verified(path, note.read_text().strip(), source + " (cached)")


def fetch_hf(repo: str, filename: str, revision: str, cache: str | Path, sha256: str = "") -> Path:
    """A Hub file in the cache (downloaded, resumed, or found offline), checked against ``sha256`` or the hub's LFS digest
    and, on every later use, against the digest recorded beside it."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    source = f"hf:{repo}/{filename}@{revision}"
    validate_hub_reference(repo, filename, revision)
    root = hub_cache(cache)
    repo_folder = root / f"models--{repo.replace('/', '--')}"
    _confined(root, repo_folder / "refs" / revision, repo_folder / "snapshots" / revision / filename, source=source)
    offline = _env_true("HF_HUB_OFFLINE") or not _hub_reachable()
    try:
        path = Path(hf_hub_download(repo, filename, revision=revision, cache_dir=root, local_files_only=offline))
    except LocalEntryNotFoundError as exc:
        if offline:
            why = "HF_HUB_OFFLINE is set" if _env_true("HF_HUB_OFFLINE") else "the hub cannot be reached"
            raise CheckpointError(f"{source}: not in the cache {root} and {why} (fix: connect once, or download the file "
                                  f"by hand and pass its path with --ckpt)") from exc
        cause = exc.__cause__ or exc.__context__ or exc
        raise CheckpointError(f"{source}: not in the cache {root}, and the hub did not answer or the transfer broke off "
                              f"({type(cause).__name__}: {(str(cause).splitlines() or [''])[0][:160]}) (fix: run the command "
                              f"again, it resumes from the bytes already in the cache; or download the file by hand and "
                              f"pass its path with --ckpt)") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(f"{source}: download failed ({exc}) (fix: check the repository, file name and revision on "
                              f"the model card, or download by hand and pass the path)") from exc
    except Exception as exc:  # the transport's own errors (a connection closed mid-body)
        raise CheckpointError(f"{source}: download interrupted ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}) "
                              f"(fix: run the command again, it resumes from the bytes already in the cache)") from exc
    _confined(root, path, source=source)
    note = _digest_note(Path(os.path.realpath(path)))
    _check_recorded(path, note, source)
    blob = Path(os.path.realpath(path)).name  # the hub's cache names an LFS blob by its sha256
    expected = sha256 or (blob if SHA256.match(blob) else "")
    if not expected and not offline:
        try:
            etag = (get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision)).etag or "").strip('"')
            expected = etag if SHA256.match(etag) else ""
        except Exception:
            expected = ""  # unreachable now: the recorded digest above is the check
    _verified(path, expected, source)
    if not note.is_file():
        note.write_text(file_hash(path, 64) + "\n")
    return path


def fetch_plain(url: str, cache: str | Path, sha256: str = "") -> Path:
    """A file from a plain URL (figshare, Zenodo) in ``<cache>/downloads``, resumed where a transfer stopped."""
    if "drive.google.com" in url:
        raise CheckpointError(f"{url}: Google Drive asks a browser to confirm large downloads (fix: download the file from "
                              f"this link by hand, then pass its path with --ckpt NAME=PATH)")
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "download"
    if not _segments_safe(name):
        raise CheckpointError(f"{url}: the file name {name!r} would leave the cache (fix: a URL ending in a plain file name)")
    target = Path(cache) / "downloads" / f"{hashlib.sha256(url.encode()).hexdigest()[:10]}-{name}"
    _confined(Path(cache), target, source=url)
    if target.is_file():
        _check_recorded(target, _digest_note(target), url)
    else:
        import requests

        try:
            fetch_url(url, target, desc=f"download {name}")
        except (requests.RequestException, OSError) as exc:
            raise CheckpointError(f"{url}: download failed ({exc}) (fix: run the command again, it resumes; or download "
                                  f"by hand and pass the path with --ckpt)") from exc
    _verified(target, sha256, url)
    if not _digest_note(target).is_file():
        _digest_note(target).write_text(file_hash(target, 64) + "\n")
    return target


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
