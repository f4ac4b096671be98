"""Test helpers for the fetch tests: a real HTTP file server with Range support on 127.0.0.1,
in-memory archives (including malicious ones) and data registry files."""

from __future__ import annotations

import hashlib
import io
import socket
import sys
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


@dataclass
class Served:
    body: bytes
    cut_after: int | None = None  # first GET: send this many bytes, then drop the connection
    fail_first: list[int] = field(default_factory=list)  # statuses answered before serving
    range_support: bool = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        with srv.lock:
            srv.requests.append(
                {"path": self.path, "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")}
            )
            item = srv.files.get(self.path)
            status = item.fail_first.pop(0) if item and item.fail_first else None
            cut = item.cut_after if item else None
            if item is not None:
                item.cut_after = None
        if item is None:
            return self._plain(404, b"not found")
        if status is not None:
            return self._plain(status, b"try later")
        body = item.body
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        start, code = 0, 200
        rng = self.headers.get("Range")
        if rng and item.range_support and self.headers.get("If-Range") in (None, etag):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            code = 206
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", formatdate(0, usegmt=True))
        if item.range_support:
            self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        payload = body[start:]
        if cut is not None:
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)

    def _plain(self, code: int, text: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


class FileServer(ThreadingHTTPServer):
    """Serves `files` (path -> Served) and records every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, Served] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        """A client that hangs up mid-body is what the resume and abort tests do on purpose;
        anything else still prints its traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def add(self, path: str, body: bytes, **kw) -> str:
        self.files[path] = Served(body, **kw)
        return self.url + path

    def gets(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def reset(self) -> None:
        self.files.clear()
        self.requests.clear()


# --- archives ------------------------------------------------------------------------------------


def fake_image(seed: int, n: int = 2000) -> bytes:
    """PNG-named bytes (archives are not decoded: only names and sizes matter here)."""
    return hashlib.sha256(str(seed).encode()).digest() * (n // 32)


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(entries: dict[str, bytes], links: dict[str, tuple[str, bytes]] | None = None, mode: str = "w") -> bytes:
    """Regular files plus links {name: (target, tarfile.SYMTYPE | LNKTYPE)}; `mode` e.g. "w:gz"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (target, kind) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_registry(path: Path, archives: dict[str, dict], sources: dict[str, dict]) -> Path:
    path.write_text(yaml.safe_dump({"archives": archives, "sources": sources}, sort_keys=False))
    return path
