"""`vgs download NAME... -o DIR`: fetch published SpecVQGAN files, check them, unpack and import them.

Downloads go to `DIR/downloads/` through `pipeline.download` (resumable `.part` files, MD5 check: a mismatch
deletes the bad file and is an error). Run tarballs are unpacked safely (no absolute or `..` paths, links
skipped) into a scratch folder next to them, imported into DIR, and the scratch folder is removed (the
tarball stays, so a re-run needs no network). Classifiers also fetch the per-bin statistics file they need.
The MelGAN files are published without an MD5: their SHA-256 is reported instead. The base URL can point at
a mirror (`base_url` / VGS_OFFICIAL_BASE_URL).
"""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vgs_cli.data.download import NetworkUnreachable, Progress, download, file_digests
from vgs_cli.errors import VgsError
from vgs_cli.official import registry
from vgs_cli.official.importer import ImportOptions, Written, import_specvqgan

Log = Callable[[str], None]
IMPORTABLE = ("codebook", "transformer")
NOT_IMPORTED = {"melgan_netD.pt", "melgan_optG.pt", "melgan_optD.pt"}  # only for resuming vocoder training


@dataclass
class Fetched:
    name: str
    file: Path
    written: list[Written] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fetch_file(entry: registry.Entry, downloads: Path, *, base_url: str | None = None,
               progress: Progress | None = None) -> tuple[Path, list[str]]:
    """Download (resuming, MD5-checked when the list has one) into `downloads`; returns (path, notes)."""
    try:
        path = download(entry.url_from(base_url), downloads / entry.filename, md5=entry.md5, progress=progress)
    except NetworkUnreachable as exc:
        raise NetworkUnreachable(f"{exc}, or pass --base-url with a mirror (a URL, or a folder holding the "
                                 "official files)") from None
    notes = []
    if entry.md5 is None:
        notes.append(f"{entry.filename} is published without an MD5; its SHA-256 is {file_digests(path)['sha256']}")
    return path, notes


def _run_folder(root: Path) -> Path:
    """The unpacked run: the folder holding `checkpoints/` (the tarball's top folder, or `root` itself)."""
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    for cand in candidates:
        if (cand / "checkpoints").is_dir():
            return cand
    raise VgsError(f"{root}: the archive holds no <run>/checkpoints folder")


def _unpack(archive: Path, dest: Path) -> Path:
    from vgs_cli.data.archive import unpack

    if not tarfile.is_tarfile(archive):
        raise VgsError(f"{archive} is not a tar archive (delete it and download again)")
    return unpack(archive, dest)


def _import_archive(entry: registry.Entry, archive: Path, out: Path, options: ImportOptions, log: Log) -> list[Written]:
    scratch = archive.with_name(archive.name.removesuffix(".tar.gz") + ".unpacked")
    shutil.rmtree(scratch, ignore_errors=True)  # a previous run may have died mid-import
    try:
        run = _run_folder(_unpack(archive, scratch))
        return import_specvqgan(run, out, ImportOptions(**{**options.__dict__, "entry": entry}), log=log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_one(name: str, out: Path, options: ImportOptions, *, base_url: str | None = None,
              progress: Progress | None = None, log: Log = print) -> Fetched:
    """Fetch and import one published file into `out`."""
    entry = registry.find(name)
    downloads = out / "downloads"
    path, notes = fetch_file(entry, downloads, base_url=base_url, progress=progress)
    result = Fetched(entry.run, path, notes=notes)
    if entry.kind in IMPORTABLE:
        result.written = _import_archive(entry, path, out, options, log)
    elif entry.run in NOT_IMPORTED:
        result.notes.append(f"{entry.filename} is only needed to resume vocoder training; kept, not imported")
    elif entry.run == registry.stats_entry().run:
        shutil.copyfile(path, out / entry.filename)
        result.notes.append(f"statistics copied to {out / entry.filename}")
    else:  # a classifier or the MelGAN generator: one plain file
        opts = ImportOptions(**{**options.__dict__, "entry": entry})
        if entry.kind == "classifier_or_stats" and opts.stats is None:
            stats, more = fetch_file(registry.stats_entry(), downloads, base_url=base_url, progress=progress)
            result.notes += more
            opts.stats = stats
        result.written = import_specvqgan(path, out, opts, log=log)
    return result


def download_official(names: list[str], out: str | Path, options: ImportOptions | None = None, *,
                      base_url: str | None = None, progress: Progress | None = None,
                      log: Log = print) -> list[Fetched]:
    """Fetch and import each of `names` (run names, file names or aliases) into `out`."""
    if not names:
        raise VgsError("name at least one file to download (see `vgs download --list`)")
    entries = [registry.find(n) for n in names]  # unknown names fail before any download starts
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [fetch_one(e.run, out, options or ImportOptions(), base_url=base_url, progress=progress, log=log)
            for e in entries]
