"""VAS (Visually Aligned Sounds, RegNet; 8 classes, 12,541 clips): fetch the video archive, unpack it
safely, and list its clips with the official SpecVQGAN splits and labels.

The archive is RegNet's `VAS.zip` (Google Drive; no published checksum, so pass `--md5` or `--sha256`
once you have pinned one: the digests of what was fetched are returned and printed). Any tar or zip
works, whatever its name: videos are found anywhere below the unpacked folder, their class being the
nearest enclosing folder named after one of the 8 classes, their id the file stem (`video_02677`). A copy
already on disk is used with `--videos DIR` (same discovery; e.g. `DIR/<class>/<video_id>.mp4`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vgs_cli.data.archive import unpack
from vgs_cli.data.download import Progress, download, file_digests
from vgs_cli.errors import DataError
from vgs_cli.prepare.sources import (
    VAS_CLASSES,
    canonical_view,
    split_lookup,
    vas_label,
    videos_below,
    write_labels_csv,
)

# RegNet's VAS.zip (README of github.com/PeihaoChen/regnet, "Download Datasets"), via Google Drive's direct
# download endpoint (`confirm=t` skips the "cannot scan for viruses" page of large files).
VAS_URL = ("https://drive.usercontent.google.com/download?id=14birixmH7vwIWKxCHI0MIWCcZyohF59g"
           "&export=download&confirm=t")
ARCHIVE_NAME = "VAS.archive"
UNPACKED_NAME = "VAS"


@dataclass(frozen=True)
class VasVideo:
    """One VAS video with its official split and label."""

    name: str  # <class>/<video_id>, as in the split lists
    path: Path
    split: str
    label: int


def fetch_archive(work_dir: str | os.PathLike, url: str = VAS_URL, *, md5: str | None = None,
                  sha256: str | None = None, progress: Progress | None = None) -> tuple[Path, dict[str, str]]:
    """Download (resuming) the archive into `work_dir`; returns (path, {"md5", "sha256"} of the file)."""
    path = download(url, Path(work_dir) / ARCHIVE_NAME, md5=md5, sha256=sha256, progress=progress)
    return path, file_digests(path)


def find_videos(root: str | os.PathLike) -> dict[str, Path]:
    """`{"<class>/<video_id>": path}` for every video below `root` inside a folder named after a class.

    When a clip appears twice (e.g. an original and a re-encoded copy) the shortest path wins, ties by
    name, so the choice is stable.
    """
    root, paths = videos_below(root)
    found: dict[str, Path] = {}
    for path in paths:
        cls = next((p for p in reversed(path.relative_to(root).parts[:-1]) if p in VAS_CLASSES), None)
        if cls is not None:
            found.setdefault(f"{cls}/{path.stem}", path)
    return found


def plan_videos(videos: dict[str, Path], unlisted: str | None = None) -> tuple[list[VasVideo], list[str], int]:
    """(videos with official splits, official clips that are missing, videos skipped as unlisted)."""
    splits = split_lookup("vas")
    planned, skipped = [], 0
    for name in sorted(videos):
        split = splits.get(name, unlisted)
        if split is None:
            skipped += 1
            continue
        planned.append(VasVideo(name, videos[name], split, vas_label(name.split("/", 1)[0])))
    missing = sorted(set(splits) - set(videos))
    return planned, missing, skipped


def prepare_vas(out: str | os.PathLike, cfg, *, videos: str | os.PathLike | None = None, url: str = VAS_URL,
                md5: str | None = None, sha256: str | None = None, work_dir: str | os.PathLike | None = None,
                unlisted: str | None = None, log: Callable[[str], None] = print,
                download_progress: Progress | None = None, **folder_kwargs) -> dict:
    """`vgs prepare vas`: fetch + unpack the archive (or use `videos`), then the folder pipeline with the
    official splits and class indices. `folder_kwargs` go to `pipeline.prepare.prepare_folder` (jobs,
    shard_index, num_shards, visual weights, ...). Returns the manifest plus what was missing/skipped."""
    from vgs_cli.prepare.folder import prepare_folder

    out = Path(out)
    work = Path(work_dir) if work_dir is not None else out / "source"
    extra: dict = {}
    if videos is None:
        archive, digests = fetch_archive(work, url, md5=md5, sha256=sha256, progress=download_progress)
        log(f"archive {archive} md5 {digests['md5']} sha256 {digests['sha256']}")
        extra["archive"] = {"path": str(archive), **digests}
        root = unpack(archive, work / UNPACKED_NAME)
    else:
        root = Path(videos)
    planned, missing, skipped = plan_videos(find_videos(root), unlisted)
    if not planned:
        raise DataError(f"{root}: no VAS videos of the official splits found (expected <class>/<video_id>.mp4 "
                        f"with classes {', '.join(VAS_CLASSES)})")
    if missing:
        log(f"{len(missing)} clips of the official splits are not in {root} (e.g. {missing[0]})")
    src = canonical_view({v.name: v.path for v in planned}, root.resolve(), (work / "videos").resolve())
    by_name = {v.name: v for v in planned}
    rows = [(src / f"{name}{by_name[name].path.suffix.lower()}", name.split("/", 1)[0], by_name[name].split)
            for name in sorted(by_name)]
    labels = write_labels_csv(work / "vas_labels.csv", src, rows)
    manifest = prepare_folder(src, out, cfg, labels_csv=labels, classes=list(VAS_CLASSES), log=log,
                              **folder_kwargs)
    return {**manifest, **extra, "missing_videos": len(missing), "skipped_unlisted": skipped}
