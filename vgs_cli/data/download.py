"""Resumable HTTP(S) download with checksum verification (datasets now, official checkpoints later).

    download(url, dest, md5="...")  ->  dest

Bytes go to `<dest>.part` (with `<dest>.part.json` remembering the URL and the server's ETag /
Last-Modified). An interrupted transfer -- dropped connection, timeout, Ctrl-C, a killed job -- resumes from
the bytes already on disk with `Range: bytes=N-` and `If-Range`, so a file that changed on the server
restarts from zero instead of being spliced. A server that ignores ranges (200 instead of 206) restarts
cleanly. Only a complete file whose checksum matches is renamed to `dest`; on a mismatch the `.part` is
deleted (never trusted, never resumed) and `ChecksumError` is raised. Retries use exponential backoff and
reset whenever bytes arrive, so a slow but live link is not abandoned; a host that never answered (name not
resolved, connection refused, no route) ends in `NetworkUnreachable`, which says so. A lock file
`<dest>.lock` serialises concurrent jobs (e.g. `--shard-index` workers) that fetch the same file; the last
holder removes it. Plain local paths and `file://` URLs are copied
(handy for mirrors on a shared disk).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from vgs_cli import __version__
from vgs_cli.errors import VgsError
from vgs_cli.fsutil import raise_output_error, write_json

Progress = Callable[[int, Optional[int]], None]  # (bytes on disk, total bytes or None)

_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
_NET_ERRORS = (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError,
               http.client.IncompleteRead, http.client.RemoteDisconnected, http.client.BadStatusLine)


class DownloadError(VgsError):
    """A file that could not be fetched (bad URL, HTTP error, network gave up)."""


class ChecksumError(DownloadError):
    """A fetched file whose checksum does not match (the partial file has been removed)."""


class NetworkUnreachable(DownloadError):
    """The server could not be reached at all (no name resolution, connection refused, no route): offline."""


# errno values of a host that cannot be reached at all (as opposed to a transfer that broke off)
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN,
                       errno.EHOSTDOWN}


@dataclass(frozen=True)
class Expected:
    """Checksums to verify (hex digests, lower case); an empty instance verifies nothing."""

    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        for name, size in (("md5", 32), ("sha256", 64)):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(rf"[0-9a-fA-F]{{{size}}}", value):
                raise DownloadError(f"--{name} must be {size} hex digits, got {value!r}")


def file_digests(path: Path, chunk: int = 1 << 20) -> dict[str, str]:
    """`{"md5": hex, "sha256": hex}` of a file in one pass."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def verify(path: Path, expected: Expected) -> dict[str, str]:
    """Raise ChecksumError naming both digests when `path` does not match; returns the digests."""
    got = file_digests(path)
    for name in ("md5", "sha256"):
        want = getattr(expected, name)
        if want is not None and got[name] != want.lower():
            raise ChecksumError(f"{path.name}: {name} mismatch (expected {want.lower()}, got {got[name]})")
    return got


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<dest>.lock` (POSIX flock; a no-op where unavailable), removing the file
    when done. A waiter that locked a file removed meanwhile sees that the path no longer names it and
    locks the new one instead, so removing while holding the lock never lets two jobs in at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = dest.with_name(dest.name + ".lock")
    while True:
        fh = open(path, "a+b")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            held = os.fstat(fh.fileno())
            on_disk = os.stat(path)
            if (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino):
                break
        except FileNotFoundError:
            pass
        fh.close()  # removed by the previous holder: lock the current file
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still held: nobody can be inside; waiters on this file retry as above
        fh.close()  # releases the lock


def download(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
             retries: int = 5, timeout: float = 60.0, backoff: float = 1.0, chunk_size: int = 1 << 16,
             progress: Progress | None = None) -> Path:
    """Fetch `url` into `dest` (resuming a previous `.part`), verify checksums, return `dest`.

    An existing `dest` that matches the checksums (or any existing `dest` when none are given: it was
    only ever written by a completed download) is returned without network access.
    """
    dest = Path(dest)
    expected = Expected(md5=md5, sha256=sha256)
    with _locked(dest):
        if dest.is_file():
            if expected.md5 is None and expected.sha256 is None:
                return dest
            with contextlib.suppress(ChecksumError):
                verify(dest, expected)
                return dest
        part = dest.with_name(dest.name + ".part")
        meta = dest.with_name(dest.name + ".part.json")
        local = _local_source(url)
        if local is not None:
            _copy_local(local, part)
        else:
            _fetch(url, part, meta, retries=retries, timeout=timeout, backoff=backoff,
                   chunk_size=chunk_size, progress=progress)
        try:
            verify(part, expected)
        except ChecksumError as exc:
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            raise ChecksumError(f"{exc} from {_redact(url)}; the corrupt download was deleted") from None
        os.replace(part, dest)
        meta.unlink(missing_ok=True)
    return dest


def _local_source(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https", "ftp"):
        return None
    if parsed.scheme and len(parsed.scheme) > 1:
        raise DownloadError(f"unsupported URL scheme {parsed.scheme!r} in {url!r} (use http, https or a path)")
    return Path(url)


def _copy_local(src: Path, part: Path) -> None:
    if not src.is_file():
        raise DownloadError(f"source file not found: {src}")
    part.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, part)


def _redact(url: str) -> str:
    """The URL without query string or credentials (for messages)."""
    p = urllib.parse.urlparse(url)
    return f"{p.scheme}://{p.hostname or ''}{':' + str(p.port) if p.port else ''}{p.path}"


def _load_meta(meta: Path, url: str, part: Path) -> dict:
    """The validator saved with `part`; a part from another URL (or without metadata) is discarded."""
    info: dict = {}
    if meta.is_file():
        with contextlib.suppress(ValueError, OSError):
            info = json.loads(meta.read_text())
    if part.exists() and info.get("url") != url:
        part.unlink()
        info = {}
    return info if part.exists() else {}


def _fetch(url: str, part: Path, meta: Path, *, retries: int, timeout: float, backoff: float,
           chunk_size: int, progress: Progress | None) -> None:
    """Download into `part`, resuming and retrying; returns when the server says the file is complete."""
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        info = _load_meta(meta, url, part)
        offset = part.stat().st_size if part.exists() else 0
        try:
            done = _attempt(url, part, meta, offset, info, timeout, chunk_size, progress)
        except DownloadError:
            raise
        except _NET_ERRORS as exc:
            done, reason = False, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            unreachable = _unreachable(exc)
        else:
            reason, unreachable = "connection closed early", None
        if done:
            return
        grew = part.exists() and part.stat().st_size > offset
        failures = 0 if grew else failures + 1  # progress resets the budget: slow links still finish
        # a name that does not resolve is an offline machine far more often than a passing DNS hiccup: one
        # retry, not the whole budget (an offline `vgs download` answered after ~1 s instead of ~31 s)
        give_up = min(retries, 1) if unreachable == "name resolution failed" else retries
        if failures > give_up and unreachable:
            raise _unreachable_error(url, part, unreachable, failures)
        if failures > retries:
            raise DownloadError(f"giving up on {_redact(url)} after {retries} retries ({reason}); "
                                f"re-run to resume from {part.stat().st_size if part.exists() else 0} bytes")
        time.sleep(min(backoff * (2 ** max(failures - 1, 0)), 60.0))


def _unreachable(exc: BaseException) -> str | None:
    """Why the host could not be reached at all ("name resolution failed", "connection refused", ...), or None
    for errors of a transfer under way (those are worth the retries and the resume hint)."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return "name resolution failed"
    code = getattr(reason, "errno", None)
    if isinstance(reason, OSError) and code in _UNREACHABLE_ERRNOS:
        return "connection refused" if code == errno.ECONNREFUSED else os.strerror(code).lower()
    return None


def _unreachable_error(url: str, part: Path, why: str, tries: int) -> NetworkUnreachable:
    kept = part.stat().st_size if part.exists() else 0
    return NetworkUnreachable(
        f"cannot reach {urllib.parse.urlparse(url).hostname or url}: the network is unreachable ({why}; {tries} "
        f"attempt{'s' if tries > 1 else ''}); check the connection, or put a copy of the file at "
        f"{part.with_suffix('')}" + (f" (the {kept} bytes fetched so far are kept for a re-run)" if kept else ""))


def _attempt(url: str, part: Path, meta: Path, offset: int, info: dict, timeout: float, chunk_size: int,
             progress: Progress | None) -> bool:
    """One HTTP request; True when `part` now holds the whole file, False when it ended early."""
    headers = {"User-Agent": f"vgs/{__version__}", "Accept-Encoding": "identity"}
    validator = info.get("etag") or info.get("last_modified")
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:
            return offset >= int(info.get("total") or 0) > 0 or _restart(part)
        if exc.code in _TRANSIENT_HTTP:
            raise urllib.error.URLError(f"HTTP {exc.code}") from None
        raise DownloadError(f"HTTP {exc.code} ({exc.reason}) for {_redact(url)}") from None
    with resp:
        try:
            append, total = _plan(resp, offset)
        except urllib.error.URLError:
            _restart(part)  # a server that cannot honour our range: start over rather than splice
            raise
        if not append:
            offset = 0
        write_json(meta, {"url": url, "etag": resp.headers.get("ETag"),
                          "last_modified": resp.headers.get("Last-Modified"), "total": total})
        received = offset
        try:
            with open(part, "ab" if append else "wb") as fh:
                while block := resp.read(chunk_size):
                    fh.write(block)
                    received += len(block)
                    if progress is not None:
                        progress(received, total)
        except OSError as exc:  # a full disk is not a network error to retry: one line, the .part is kept
            raise_output_error(exc, part.with_suffix(""))
            raise
    if total is None:
        return True  # no length announced: a clean end of stream is all we can check (checksum follows)
    if received > total:
        _restart(part)
        return False
    return received == total


def _plan(resp: http.client.HTTPResponse, offset: int) -> tuple[bool, int | None]:
    """(append to the part?, total file size or None) from a 200/206 response."""
    length = resp.headers.get("Content-Length")
    if resp.status == 206:
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (resp.headers.get("Content-Range") or "").strip())
        if m is None or int(m.group(1)) != offset:
            raise urllib.error.URLError("server answered a different byte range than asked")
        total = int(m.group(3)) if m.group(3) != "*" else None
        return True, total
    return False, int(length) if length is not None else None


def _restart(part: Path) -> bool:
    part.unlink(missing_ok=True)
    return False
