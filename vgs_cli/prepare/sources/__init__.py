"""The paper's datasets: VAS and VGGSound downloaded, prepared with the official splits, or ingested
from the official precomputed features. Shared here: class lists, vendored split lists, clip names.

Class index = position in the sorted list of class names, as in the reference (`sorted(set(...))` in
specvqgan/data/vas.py and vggsound.py). VAS: baby 0, cough 1, dog 2, drum 3, fireworks 4, gun 5, hammer 6,
sneeze 7. VGGSound: the 309 sorted unique labels of vggsound.csv.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from importlib import resources
from pathlib import Path

import numpy as np

from vgs_cli.config.spec import SPEC
from vgs_cli.data.labels import VAS_CLASSES
from vgs_cli.data.video import VIDEO_EXTS
from vgs_cli.errors import DataError

SPLIT_FILES = ("vas_train", "vas_valid", "vggsound_train", "vggsound_valid", "vggsound_test")
CLIP_NAME_RE = re.compile(r"^(?P<ytid>.+)_(?P<start>\d+)_(?P<end>\d+)$")


def videos_below(root: str | os.PathLike) -> tuple[Path, list[Path]]:
    """(resolved root, every video file below it) in a stable order: shallowest first, then by name, so
    "first one wins" choices between duplicate clips are the same on every run."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"videos folder not found: {root}")
    root = root.resolve()
    paths = sorted(root.rglob("*"), key=lambda p: (len(p.parts), str(p)))
    return root, [p for p in paths if p.suffix.lower() in VIDEO_EXTS and p.is_file()]


@functools.lru_cache(maxsize=8)
def load_split(name: str) -> tuple[str, ...]:
    """A vendored official split list (`vas_train`, ..., `vggsound_test`), one clip name per entry.

    VAS names look like `dog/video_02677`, VGGSound names like `--0PQM4-hqg_30000_40000`.
    """
    if name not in SPLIT_FILES:
        raise DataError(f"unknown split list {name!r} (known: {', '.join(SPLIT_FILES)})")
    ref = resources.files("vgs_cli.resources").joinpath("splits", f"{name}.txt.gz")
    with ref.open("rb") as fh:
        text = gzip.decompress(fh.read()).decode("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def split_lookup(dataset: str, splits: tuple[str, ...] = ("train", "valid")) -> dict[str, str]:
    """`{clip name: split}` from the vendored lists of `dataset` ("vas" or "vggsound")."""
    table: dict[str, str] = {}
    for split in splits:
        for name in load_split(f"{dataset}_{split}"):
            table[name] = split
    return table


def vas_label(cls: str) -> int:
    """VAS class name -> index (sorted order, as the reference)."""
    try:
        return VAS_CLASSES.index(cls)
    except ValueError:
        raise DataError(f"unknown VAS class {cls!r} (known: {', '.join(VAS_CLASSES)})") from None


def clip_name(ytid: str, start_s: float, duration_s: float = SPEC.duration_s) -> str:
    """VGGSound clip name `<ytid>_<start_ms>_<end_ms>` (the official features' file stem)."""
    start_ms = int(round(float(start_s) * 1000))
    return f"{ytid}_{start_ms}_{start_ms + int(round(duration_s * 1000))}"


def parse_clip_name(name: str) -> tuple[str, int, int]:
    """`<ytid>_<start_ms>_<end_ms>` -> (ytid, start_ms, end_ms); YouTube ids may contain `_` themselves."""
    m = CLIP_NAME_RE.match(name)
    if m is None:
        raise DataError(f"{name!r} is not a VGGSound clip name like <ytid>_<start_ms>_<end_ms>")
    return m.group("ytid"), int(m.group("start")), int(m.group("end"))


def fit_rows(feats: np.ndarray, n: int = SPEC.num_video_frames) -> np.ndarray:
    """`[T, D] -> float32[n, D]`: trim extra rows, or pad by repeating the last row.

    The official pickles hold 214-216 rows for a 10 s clip (frame rounding of the extractors). Repeating
    the last row keeps the padded frames looking like video. The reference's dataset zero-padded at load
    time instead; for 214 rows that only changes frame 214, outside the centre 212 the transformer sees.
    """
    feats = np.asarray(feats)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise DataError(f"expected features shaped [frames, dim], got {list(feats.shape)}")
    if feats.shape[0] >= n:
        return np.ascontiguousarray(feats[:n], dtype=np.float32)
    pad = np.repeat(feats[-1:], n - feats.shape[0], axis=0)
    return np.concatenate([feats, pad], axis=0).astype(np.float32)


def canonical_view(entries: dict[str, Path], root: Path, view: Path) -> Path:
    """A folder where clip `id` is the file `<id><ext>`: `root` itself when that already holds, else `view`
    filled with hard links (copies across file systems), so the folder pipeline derives the official ids.

    `entries` maps clip id -> video path. Links are made only once; an existing view is completed.
    """
    import shutil

    if all(p.parent == root / Path(cid).parent and p.stem == Path(cid).name for cid, p in entries.items()):
        return root
    for cid, src in entries.items():
        dst = view / f"{cid}{src.suffix.lower()}"
        if dst.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return view


def write_labels_csv(path: Path, root: Path, rows: list[tuple[Path, str, str]]) -> Path:
    """The folder pipeline's `path,label,split` file (paths relative to `root`), written atomically."""
    import csv
    import io

    from vgs_cli.fsutil import atomic_path

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "label", "split"])
    for video, label, split in rows:
        writer.writerow([video.relative_to(root).as_posix(), label, split])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path
