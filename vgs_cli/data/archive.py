"""Safe unpacking of downloaded archives (tar of any compression, zip): no absolute or `..` member paths,
no links or devices, and all-or-nothing (a `.partial` folder renamed at the end)."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from vgs_cli.errors import DataError
from vgs_cli.fsutil import raise_output_error


def _safe_name(name: str, archive: Path) -> PurePosixPath | None:
    """The member path relative to the target, or None for '.'; path traversal is an error."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0].endswith(":")):
        raise DataError(f"{archive.name}: refusing unsafe member path {name!r} (outside the target folder)")
    parts = [p for p in pure.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar:
            rel = _safe_name(member.name, archive)
            if rel is None:
                continue
            if member.isdir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
            elif member.isfile():  # links, devices and fifos are skipped: a dataset needs none
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                with src, open(dest / rel, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = _safe_name(info.filename, archive)
            mode = info.external_attr >> 16
            if rel is None or stat.S_ISLNK(mode):
                continue
            if info.is_dir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest / rel, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def unpack(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpack a tar (any compression) or zip into `dest`, safely; skipped when `dest` is complete.

    Members go to `<dest>.partial` first, renamed to `dest` at the end, so an interrupted unpack is
    redone rather than half-used. Absolute or `..` paths are refused; links and devices are skipped.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, tmp)
        else:
            head = archive.read_bytes()[:200].lower()
            hint = " (it is an HTML page: the server refused the download)" if b"<html" in head else ""
            raise DataError(f"{archive} is neither a tar nor a zip archive{hint}; download it by hand "
                            "and pass its path (or unpack it yourself)")
        os.replace(tmp, dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{archive}: corrupt archive ({exc})") from None
    except OSError as exc:  # a full disk while unpacking: one line naming the destination
        raise_output_error(exc, dest)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
