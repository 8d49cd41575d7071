"""A tiny HTTP file server on 127.0.0.1 for tests: byte ranges, ETags, and a one-shot connection cut.

    with serve({"/a.tar": data}, cut_after={"/a.tar": 1000}) as srv:
        url = srv.url("/a.tar")          # http://127.0.0.1:<port>/a.tar
        ...
        srv.requests                     # [(method, path, {header: value}), ...] in arrival order

`cut_after[path] = n` makes the FIRST GET of `path` announce the full length, send `n` bytes and drop the
connection (a flaky network); later requests are served normally. Unknown paths answer 404.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

_TYPES = {".mp4": "video/mp4", ".tar": "application/x-tar", ".zip": "application/zip", ".gz": "application/gzip"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, files: dict[str, bytes], cut_after: dict[str, int], ignore_range: bool):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = dict(files)
        self.cut_after = dict(cut_after)
        self.ignore_range = ignore_range
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        """Stay quiet about clients that hang up mid-transfer (the tests provoke exactly that)."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.requests.append((self.command, path, dict(self.headers.items())))
            data = self.server.files.get(path)
            cut = self.server.cut_after.pop(path, None) if body else None
        if data is None:
            self._plain(404, b"not found")
            return
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        start, end, status = 0, len(data) - 1, 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and not self.server.ignore_range and (if_range is None or if_range == etag):
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m is None or int(m.group(1)) >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(m.group(1))
            end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            status = 206
        self.send_response(status)
        ext = path[path.rfind("."):] if "." in path else ""
        self.send_header("Content-Type", _TYPES.get(ext, "application/octet-stream"))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not body:
            return
        chunk = data[start:end + 1]
        if cut is not None:
            self.wfile.write(chunk[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)

    def _plain(self, code: int, text: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text)


@contextlib.contextmanager
def serve(files: dict[str, bytes], *, cut_after: dict[str, int] | None = None,
          ignore_range: bool = False) -> Iterator[_Server]:
    """Serve `files` (URL path -> bytes) on 127.0.0.1 in a background thread; stopped on exit."""
    server = _Server(files, cut_after or {}, ignore_range)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
