"""What `vgs serve` finds on its own: the demo's models and its held-out videos as the page's examples.

`make demo` writes `<out>/runs/{codebook,transformer_feats,vocoder}/checkpoints/best.ckpt` and the videos
with their splits in `<out>/data/source/labels.csv` (`path,label,split`); `vgs serve --model <out>` loads
the feature-conditioned model and offers the test split's videos.

Examples are published: anyone who reaches the server can fetch them. So only files that ffmpeg reads as
videos are taken (`--examples` names videos or folders of videos, never a folder's other files), a
labels.csv row must stay inside the folder holding labels.csv (no absolute path, no `..`, no symlink out),
and the server serves copies (hard links where possible) in its own `--out/examples/`, never the originals'
folders.
"""

from __future__ import annotations

import csv
import itertools
import os
import shutil
from pathlib import Path, PurePath

from vgs_cli.audio.io import probe
from vgs_cli.data.video import list_videos
from vgs_cli.errors import DataError, VgsError
from vgs_cli.fsutil import atomic_path

MAX_EXAMPLES = 8
DEMO_RUNS = {"transformer": "transformer_feats", "codebook": "codebook", "vocoder_ckpt": "vocoder"}


def demo_models(folder: Path | None) -> dict[str, Path] | None:
    """`{transformer, codebook, vocoder_ckpt}` of a `make demo` output folder, else None."""
    if folder is None or not (folder / "runs").is_dir():
        return None
    found = {key: folder / "runs" / run / "checkpoints" / "best.ckpt" for key, run in DEMO_RUNS.items()}
    return found if all(p.is_file() for p in found.values()) else None


def is_video(path: Path) -> bool:
    """A regular file that ffmpeg reads as having a video stream."""
    try:
        return path.is_file() and probe(path).has_video
    except DataError:
        return False


def _inside(path: Path, folder: Path) -> Path | None:
    """`path` with symlinks resolved if it stays inside `folder` (resolved), else None."""
    real = path.resolve()
    return real if real.is_relative_to(folder.resolve()) else None


def _held_out(labels_csv: Path) -> list[Path]:
    """The test split's videos of a labels.csv, each resolved inside the folder holding the file."""
    try:
        with open(labels_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    base, found = labels_csv.parent, []
    for row in rows:
        rel = PurePath(row.get("path") or "")
        if row.get("split") != "test" or not rel.parts or rel.is_absolute() or ".." in rel.parts:
            continue
        real = _inside(base / rel, base)
        if real is not None and is_video(real):
            found.append(base / rel)
            if len(found) == MAX_EXAMPLES:
                break
    return found


def _given(paths: list[Path]) -> list[Path]:
    """`--examples`: video files, and the videos in folders (their other files are never looked at)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            # probed one by one up to MAX_EXAMPLES: a big folder (a home folder) costs no more than that
            videos = [v for v in list_videos(path) if _inside(v, path) is not None]
            videos = list(itertools.islice((v for v in videos if is_video(v)), MAX_EXAMPLES))
            if not videos:
                raise VgsError(f"--examples {path}: no videos in this folder (mp4, mov, webm, ...); give video "
                               "files or a folder of videos")
            found += videos
        elif not path.exists():
            raise VgsError(f"--examples {path}: no such file or folder")
        elif not is_video(path):
            raise VgsError(f"--examples {path} is not a video that ffmpeg can read; --examples takes video files "
                           "or folders of videos")
        else:
            found.append(path)
    return found[:MAX_EXAMPLES]


def find_examples(examples: list[Path] | None, near: list[Path]) -> list[Path]:
    """The page's example videos: `--examples` (video files or folders of videos), else the held-out videos of
    a demo-like data folder (`data/source/labels.csv`) in or above any of the `near` paths (the model
    folder, the checkpoints)."""
    if examples:
        return _given(examples)
    seen: set[Path] = set()
    for start in near:
        for folder in [start, *list(start.resolve().parents)[:4]]:
            labels = folder / "data" / "source" / "labels.csv"
            if labels in seen:
                continue
            seen.add(labels)
            if labels.is_file():
                videos = _held_out(labels)
                if videos:
                    return videos
    return []


def publish_examples(videos: list[Path], dest: Path) -> list[Path]:
    """Hard-link (else copy) `videos` into `dest` (the server's own `--out/examples`, emptied first):
    -> the published paths, the only example files the server hands out."""
    for old in dest.iterdir():
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    published = []
    for k, video in enumerate(videos):
        names = {p.name for p in published}
        name = video.name if video.name not in names and not video.name.startswith(".") else f"{k + 1}-{video.name}"
        target = dest / name
        try:
            os.link(video.resolve(), target)
        except OSError:  # another file system, or links not allowed: a copy
            with atomic_path(target) as tmp:
                shutil.copyfile(video, tmp)
        published.append(target)
    return published
