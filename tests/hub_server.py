"""A stand-in for the Hugging Face Hub and for plain download hosts, on 127.0.0.1, so the real download path runs in
tests: ``/{org}/{repo}/resolve/{revision}/{file}`` answers HEAD and GET as the hub does for an LFS file (X-Repo-Commit,
ETag = the file's sha256, Content-Length, byte ranges); any other path serves a plain file. A file can be set to break
its first transfer after some bytes, to exercise resumption."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_once: dict[str, int] = {}
        self.cut_always: dict[str, int] = {}
        self.etags: dict[str, str] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self.url = ""

    def add(self, path: str, data: bytes, cut_after: int | None = None, always: bool = False, etag: str = "") -> str:
        """``cut_after``: the first transfer (every transfer with ``always``) stops after that many bytes; ``etag``: a
        digest the server claims instead of the file's own."""
        self.files[path] = data
        if cut_after is not None:
            (self.cut_always if always else self.cut_once)[path] = cut_after
        if etag:
            self.etags[path] = etag
        return hashlib.sha256(data).hexdigest()


def _handler(hub: Hub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _file(self) -> tuple[str, bytes | None]:
            path = self.path.split("?")[0].lstrip("/")
            if "/resolve/" in path:
                repo, _, rest = path.partition("/resolve/")
                _, _, name = rest.partition("/")
                path = f"{repo}/{name}"
            return path, hub.files.get(path)

        def _headers(self, data: bytes, start: int) -> None:
            self.send_header("X-Repo-Commit", COMMIT)
            etag = hub.etags.get(self._file()[0]) or hashlib.sha256(data).hexdigest()
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()

        def do_HEAD(self):
            hub.requests.append(("HEAD", self.path, self.headers.get("Range", "")))
            path, data = self._file()
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self._headers(data, 0)

        def do_GET(self):
            hub.requests.append(("GET", self.path, self.headers.get("Range", "")))
            path, data = self._file()
            if data is None:
                self.send_error(404)
                return
            start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
            self.send_response(206 if start else 200)
            self._headers(data, start)
            cut = hub.cut_once.pop(path, None) if path in hub.cut_once else hub.cut_always.get(path)
            body = data[start:]
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def serving() -> Iterator[Hub]:
    hub = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
