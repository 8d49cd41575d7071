"""Small filesystem helpers: atomic writes, output-error messages and content hashes (used by every stage
that writes files).

Every output goes through `atomic_path`: the data is written to `.<name>.<random>.tmp` next to the target and
renamed over it only when complete, so readers never see half a file and a crash (even kill -9) leaves the
previous version. A failure while writing becomes one `OutputError` line naming the user's path and the cause
(`output_error`), never the hidden temp name; temp files left by a killed run are removed by the next run
of the same command (`remove_stale_tmp`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from vgs_cli.errors import OutputError, OutputInTheWay, VgsError

_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM)
_IN_THE_WAY = (errno.ENOTDIR, errno.EEXIST, errno.EISDIR)
_TEXT_ERRNO = (r"\[Errno (\d+)\]", r"errno = (\d+)")  # Python's OSError text; HDF5's "file write failed" text
_TEXT_CAUSE = {"no space left": errno.ENOSPC, "read-only file system": errno.EROFS,
               "permission denied": errno.EACCES, "disk quota": errno.ENOSPC}


def _errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    text = str(exc)
    for pattern in _TEXT_ERRNO:
        m = re.search(pattern, text)
        if m and int(m.group(1)) > 0:
            return int(m.group(1))
    low = text.lower()
    return next((code for words, code in _TEXT_CAUSE.items() if words in low), None)


def _existing_dir(path: Path) -> Path:
    """The nearest folder at or above `path` that exists (where the write would land)."""
    for p in [path, *path.parents]:
        if p.is_dir():
            return p
    return Path(".")


def _probe(folder: Path) -> int | None:
    """Why a folder cannot take a file when the library's error said nothing useful (torch's zip writer,
    libsndfile: "System error"): a full or read-only file system, or no write permission."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_flag & getattr(os, "ST_RDONLY", 1):
        return errno.EROFS
    if st.f_bavail * st.f_frsize < (1 << 16):  # under 64 KiB left: the write failed for want of space
        return errno.ENOSPC
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return None


def output_error(exc: BaseException, target: str | os.PathLike) -> OutputError | None:
    """The one-line `OutputError` for `exc`, raised while writing `target` (the user's path, not a temp
    file), or None when `exc` is not about the output (then the caller re-raises it unchanged).

    No space / quota / file too large, read-only file system, permission denied -> `OutputError` (exit 1);
    a file where a folder must be, or a folder where the file goes -> `OutputInTheWay` (exit 2)."""
    if isinstance(exc, VgsError) or not isinstance(exc, Exception):
        return None
    target = Path(target)
    code = _errno_of(exc)
    folder = _existing_dir(target.parent)
    if code in _IN_THE_WAY or (code is None and isinstance(exc, (FileExistsError, NotADirectoryError))):
        blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return OutputInTheWay(f"cannot write {target}: {blocker} is a file, not a folder "
                                  "(choose another output path or move that file)")
        if target.is_dir():
            return OutputInTheWay(f"cannot write {target}: it is a folder, not a file (choose a file name)")
        if code == errno.EEXIST:  # a race or an odd file system: fall through to the generic causes
            code = None
    if code is None or code not in (*_NO_SPACE, errno.EROFS, *_NOT_WRITABLE, errno.EIO):
        code = _probe(folder) if code is None or code in _IN_THE_WAY else None
    if code in _NO_SPACE:
        return OutputError(f"cannot write {target}: no space left on the device holding {folder} "
                           "(free some space, then re-run the same command to continue)")
    if code == errno.EROFS:
        return OutputError(f"cannot write {target}: {folder} is on a read-only file system "
                           "(choose a writable output folder)")
    if code in _NOT_WRITABLE:
        return OutputError(f"cannot write {target}: {folder} is not writable (permission denied; "
                           "choose a folder you can write to)")
    if code == errno.EIO:
        return OutputError(f"cannot write {target}: input/output error on the device holding {folder}")
    return None


def raise_output_error(exc: BaseException, target: str | os.PathLike) -> None:
    """Re-raise `exc` as its one-line `OutputError` when it is about writing `target` (else do nothing)."""
    err = output_error(exc, target)
    if err is not None:
        raise err from exc


def ensure_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the output folder `path` (with parents); a file in the way, a read-only or full file system or
    a missing permission is one `OutputError` line naming `flag` and `path`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputInTheWay(f"{flag} {path} is a file, not a folder (choose a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise_output_error(exc, path)
        raise
    return path


def remove_stale_tmp(target: str | os.PathLike) -> int:
    """Delete the temp files `atomic_path(target)` leaves when a run is killed mid-write (`.<name>.*.tmp`);
    call it only where this process owns `target` (no other live process can be writing it). Returns the count."""
    target = Path(target)
    n = 0
    for stale in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
            n += 1
    return n


def glob_escape(name: str) -> str:
    """`name` with glob metacharacters escaped (clip ids may contain [ ] * ?)."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` only if the block succeeds.

    Readers therefore never see a half-written file, and a crash leaves the previous version intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; shared cluster disks need the usual umask
    except OSError as exc:
        raise_output_error(exc, path)
        raise
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except Exception as exc:  # the writer's error, told in terms of the user's path (not the temp name)
        raise_output_error(exc, path)
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as pretty JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file's bytes (the official SpecVQGAN files publish MD5 sums)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
