"""VGGSound: the official CSV, the official splits, and a resumable yt-dlp downloader of 10-s segments.

`vggsound.csv` (no header): `YouTube id, start second, label, split` with split `train` or `test`; a
label may contain commas (quoted). Splits: `test` comes from the CSV; the CSV's train rows are split
into train/valid by the vendored lists of the reference (`vggsound_train.txt`, `vggsound_valid.txt`);
train rows in neither list (clips the authors could not download) are skipped unless `unlisted` names a
split. Labels: class index = position in the sorted list of the CSV's unique labels (309 for the full
CSV; a partial CSV gives other indices, so always pass the full one). Unlike the reference, which keyed
labels by YouTube id, each 10-s segment keeps its own row's label.

Downloading: one `python -m yt_dlp` process per clip (a hard per-clip timeout that can really kill a
stuck download, and no yt-dlp import in our process), fetching only the segment (`--download-sections`,
re-encoded at the cut so the clip starts on time) into `<dir>/<ytid>_<start_ms>_<end_ms>.mp4`, written
under a temporary name and renamed when complete. Clips already there are skipped (resume). Transient
failures are retried with exponential backoff; permanent ones (unavailable/private video, HTTP 404) are
not. Nothing stops the job: each failure becomes one JSON line in `download_failures.jsonl`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vgs_cli.audio.io import ffmpeg_exe
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import DataError
from vgs_cli.prepare.sources import (
    CLIP_NAME_RE,
    canonical_view,
    clip_name,
    split_lookup,
    videos_below,
    write_labels_csv,
)

YOUTUBE_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"
DEFAULT_FORMAT = "bv*[height<=480]+ba/b[height<=480]/b"
FAILURES_FILE = "download_failures.jsonl"
# stderr fragments of yt-dlp that no retry will fix
_PERMANENT = ("HTTP Error 404", "HTTP Error 410", "Video unavailable", "Private video", "This video is not available",
              "has been removed", "account associated with this video has been terminated", "copyright",
              "Sign in to confirm your age", "members-only", "Unsupported URL")


@dataclass(frozen=True)
class CsvRow:
    ytid: str
    start_s: int
    label: str
    split: str  # "train" | "test"


@dataclass(frozen=True)
class PlannedClip:
    """One VGGSound segment with its official split and label index."""

    name: str  # <ytid>_<start_ms>_<end_ms>
    ytid: str
    start_s: int
    label: int
    split: str


def read_csv(path: str | os.PathLike) -> list[CsvRow]:
    """Parse vggsound.csv strictly (a bad line is an error naming its number)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"VGGSound CSV not found: {path}")
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for n, rec in enumerate(csv.reader(fh, quotechar='"', skipinitialspace=True), start=1):
            if not rec or all(not c.strip() for c in rec):
                continue
            if len(rec) != 4:
                raise DataError(f"{path.name}:{n}: expected 4 columns (ytid, start, label, split), got {len(rec)}")
            ytid, start, label, split = (c.strip() for c in rec)
            if not start.isdigit() or split not in ("train", "test") or not ytid or not label:
                raise DataError(f"{path.name}:{n}: bad row {rec!r} (start must be whole seconds, split train|test)")
            rows.append(CsvRow(ytid, int(start), label, split))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def classes_of(rows: list[CsvRow]) -> list[str]:
    """Sorted unique labels (the reference's class order)."""
    return sorted({r.label for r in rows})


def plan(rows: list[CsvRow], unlisted: str | None = None) -> tuple[list[PlannedClip], list[str], int]:
    """(clips with official splits, class names, number of train rows skipped as unlisted)."""
    classes = classes_of(rows)
    index = {c: i for i, c in enumerate(classes)}
    lists = split_lookup("vggsound", ("train", "valid"))
    clips, seen, skipped = [], set(), 0
    for r in rows:
        name = clip_name(r.ytid, r.start_s)
        if name in seen:
            continue
        split = "test" if r.split == "test" else lists.get(name, unlisted)
        if split is None:
            skipped += 1
            continue
        seen.add(name)
        clips.append(PlannedClip(name, r.ytid, r.start_s, index[r.label], split))
    return clips, classes, skipped


# ------------------------------------------------------------------------------------------ download

@dataclass(frozen=True)
class FetchOptions:
    url_template: str = YOUTUBE_TEMPLATE
    timeout_s: float = 300.0
    retries: int = 3
    backoff_s: float = 5.0
    format: str = DEFAULT_FORMAT
    duration_s: float = SPEC.duration_s


def _yt_dlp_cmd(clip: PlannedClip, out_template: str, opts: FetchOptions) -> list[str]:
    end = clip.start_s + opts.duration_s
    return [
        sys.executable, "-m", "yt_dlp", "--no-playlist", "--no-progress", "--no-warnings", "--quiet",
        "--ffmpeg-location", ffmpeg_exe(), "--format", opts.format, "--merge-output-format", "mp4",
        "--download-sections", f"*{clip.start_s}-{end:g}", "--force-keyframes-at-cuts",
        "--socket-timeout", str(int(min(opts.timeout_s, 60))), "--no-mtime", "--no-part",
        "--output", out_template,
        # A plain file mirror needs no site extractor; matching 1,700 of them costs ~1 s a clip.
        *([] if "youtube" in opts.url_template.lower() else ["--force-generic-extractor"]),
        opts.url_template.format(ytid=clip.ytid),
    ]


def _run_killable(cmd: list[str], timeout_s: float) -> tuple[int | None, str]:
    """Run `cmd` in its own process group; (exit code, stderr or stdout), or (None, "") after `timeout_s`
    with the whole group killed: yt-dlp's ffmpeg child must not outlive an abandoned clip."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except BaseException:  # the timeout, or Ctrl-C: take the group down, then re-raise the latter
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if sys.exc_info()[0] is subprocess.TimeoutExpired:
            return None, ""
        raise
    return proc.returncode, err or out or ""


def _one_attempt(clip: PlannedClip, dest: Path, opts: FetchOptions) -> str | None:
    """Run yt-dlp once; None on success, else the reason (one line)."""
    with tempfile.TemporaryDirectory(prefix=f".{clip.name}.", dir=dest.parent) as tmp:
        cmd = _yt_dlp_cmd(clip, os.path.join(tmp, "clip.%(ext)s"), opts)
        code, text = _run_killable(cmd, opts.timeout_s)
        if code is None:
            return f"timed out after {opts.timeout_s:g} s"
        made = sorted(Path(tmp).glob("clip.*"))
        if code != 0 or not made:
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            errors = [ln for ln in lines if "ERROR" in ln]
            return ((errors or lines or [f"yt-dlp exited with {code}"])[-1])[:300]
        os.replace(made[0], dest)  # same folder: atomic; a crash before this leaves no partial clip
    return None


def fetch_clip(clip: PlannedClip, out_dir: Path, opts: FetchOptions,
               sleep: Callable[[float], None] = time.sleep) -> tuple[str, str | None]:
    """Download one segment to `out_dir/<name>.mp4` with retries; returns (status, reason).

    status: "present" (already there), "downloaded", or "failed" (reason set).
    """
    dest = out_dir / f"{clip.name}.mp4"
    if dest.is_file() and dest.stat().st_size > 0:
        return "present", None
    reason = None
    for attempt in range(opts.retries + 1):
        reason = _one_attempt(clip, dest, opts)
        if reason is None:
            return "downloaded", None
        if any(p.lower() in reason.lower() for p in _PERMANENT) or attempt == opts.retries:
            break
        sleep(opts.backoff_s * (2 ** attempt))
    return "failed", reason


def download_clips(clips: list[PlannedClip], out_dir: str | os.PathLike, opts: FetchOptions, jobs: int = 4,
                   progress: Callable[[int, int], None] | None = None,
                   failures_path: str | os.PathLike | None = None) -> dict[str, list[PlannedClip]]:
    """Fetch every clip (`jobs` at a time); each failure is appended as one JSON line to `failures_path`
    (default `out_dir/download_failures.jsonl`). Returns `{"present", "downloaded", "failed": [clips]}`;
    never raises for one clip.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[PlannedClip]] = {"present": [], "downloaded": [], "failed": []}
    log = Path(failures_path) if failures_path is not None else out_dir / FAILURES_FILE
    log.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, open(log, "a", encoding="utf-8") as fh:
        futures = [(c, pool.submit(fetch_clip, c, out_dir, opts)) for c in clips]
        for done, (clip, fut) in enumerate(futures, start=1):
            try:
                status, reason = fut.result()
            except Exception as exc:  # e.g. a full disk for this clip: listed, the job goes on
                status, reason = "failed", f"{type(exc).__name__}: {exc}"[:300]
            result[status].append(clip)
            if status == "failed":
                fh.write(json.dumps({"id": clip.name, "source": opts.url_template.format(ytid=clip.ytid),
                                     "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
                fh.flush()
            if progress is not None:
                progress(done, len(futures))
    return result


def read_failures(folder: str | os.PathLike) -> dict[str, dict]:
    """Latest download failure per clip id in `folder/download_failures.jsonl` (append-only across runs)."""
    path = Path(folder) / FAILURES_FILE
    latest: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                latest[rec["id"]] = rec
    return latest


def find_clip_videos(root: str | os.PathLike) -> dict[str, Path]:
    """`{clip name: path}` for files named `<ytid>_<start_ms>_<end_ms>.<video ext>` anywhere below `root`."""
    found: dict[str, Path] = {}
    for path in videos_below(root)[1]:
        if CLIP_NAME_RE.match(path.stem):
            found.setdefault(path.stem, path)
    return found


def prepare_vggsound(out: str | os.PathLike, cfg, *, csv_path: str | os.PathLike,
                     videos: str | os.PathLike | None = None, work_dir: str | os.PathLike | None = None,
                     fetch: FetchOptions = FetchOptions(), download_jobs: int = 4, unlisted: str | None = None,
                     log: Callable[[str], None] = print, download_progress: Callable[[int, int], None] | None = None,
                     **folder_kwargs) -> dict:
    """`vgs prepare vggsound`: download the CSV's segments (or use `videos`), then the folder pipeline with
    the official splits and the 309 sorted class names. With `shard_index`/`num_shards` in `folder_kwargs`
    only that shard's clips are downloaded; clips of shards already written are not fetched again."""
    from vgs_cli.data.shards import shard_name, shard_of
    from vgs_cli.prepare.folder import prepare_folder

    out = Path(out)
    work = Path(work_dir) if work_dir is not None else out / "source"
    planned, classes, skipped = plan(read_csv(csv_path), unlisted)
    n, i = folder_kwargs.get("num_shards"), folder_kwargs.get("shard_index")
    if n:  # shards already written (or another machine's) need none of their clips
        planned = [c for c in planned if (i is None or shard_of(c.name, n) == i)
                   and not (out / shard_name(shard_of(c.name, n), n)).is_file()]
    stats = {"skipped_unlisted": skipped, "download_failed": 0}
    if videos is None:
        root = work / "videos"
        res = download_clips(planned, root, fetch, jobs=download_jobs, progress=download_progress,
                             failures_path=out / FAILURES_FILE)
        stats.update(downloaded=len(res["downloaded"]), already_present=len(res["present"]),
                     download_failed=len(res["failed"]))
        log(f"{len(res['downloaded'])} downloaded, {len(res['present'])} already there, "
            f"{len(res['failed'])} failed (see {out / FAILURES_FILE})")
    else:
        root = Path(videos)
    found = find_clip_videos(root)
    have = [c for c in planned if c.name in found]
    stats["missing_videos"] = len(planned) - len(have)
    if not have:
        if i is not None and not planned:
            return {**stats, "note": f"shard {i} is already written"}
        raise DataError(f"{root}: none of the CSV's clips are there (expected <ytid>_<start_ms>_<end_ms>.mp4)")
    src = canonical_view({c.name: found[c.name] for c in have}, root.resolve(), (work / "view").resolve())
    rows = [(src / f"{c.name}{found[c.name].suffix.lower()}", classes[c.label], c.split) for c in have]
    labels = write_labels_csv(work / "vggsound_labels.csv", src, rows)
    manifest = prepare_folder(src, out, cfg, labels_csv=labels, classes=classes, log=log,
                              **folder_kwargs)
    return {**manifest, **stats}
