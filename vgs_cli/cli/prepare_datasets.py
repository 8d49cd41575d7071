"""`vgs prepare vas` and `vgs prepare vggsound`: argument parsing only (vgs_cli.prepare.sources works).

Registered on the `vgs prepare` app by `register(app)` (see cli/prepare.py).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import typer

from vgs_cli.cli.prepare_config import folder_kwargs, prepare_config
from vgs_cli.cli.prepare_options import (
    EXTRACTOR,
    IMAGE_SIZE,
    JOBS,
    MODE,
    NUM_SHARDS,
    QUIET,
    RANDOM,
    SET,
    SHARD_INDEX,
    WEIGHTS,
)
from vgs_cli.errors import VgsError

OUT = typer.Option(..., "--out", "-o", help="Shard folder to write (re-running resumes).")
FROM_FEATURES = typer.Option(None, "--from-features", help="Ingest the official precomputed features in DIR "
                             "(mels + feature pickles; no video is read, no waveforms are stored).")
FEATURES = typer.Option(None, "--features", help="With --from-features: comma list of resnet50,bninception "
                        "(default: every one present).")
UNLISTED = typer.Option(None, "--unlisted", help="Split for clips in no official list (default: skip them).")
WORK_DIR = typer.Option(None, "--work-dir", help="Where downloads and unpacked videos go (default OUT/source).")
# The video path takes the same extraction options as `vgs prepare folder` (same names, same meaning).
PRESET = typer.Option(None, "--preset", "-p", help="vas, vggsound (ResNet-50, 224 px) or tiny (EfficientNet-Lite0, "
                      "128 px); default: the dataset's.")


@dataclass
class VideoOpts:
    """The `vgs prepare folder` options of the video path, handed on unchanged."""

    preset: Optional[str]
    extractor: list[str]
    weights: list[str]
    random_weights: bool
    image_size: Optional[int]
    mode: Optional[str]
    overrides: list[str]

    def used(self) -> bool:
        return bool(self.preset or self.extractor or self.weights or self.random_weights or self.image_size
                    or self.mode or self.overrides)

    def resolve(self, dataset: str, jobs: int, shard_index: Optional[int], num_shards: Optional[int],
                quiet: bool) -> tuple[object, dict]:
        """(PrepareConfig, folder-pipeline keyword arguments), exactly as `vgs prepare folder` builds them."""
        cfg = prepare_config(self.preset or dataset, self.extractor, self.image_size, self.mode, self.overrides)
        return cfg, folder_kwargs(cfg, self.weights, self.random_weights, jobs, shard_index, num_shards, quiet)


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def _command() -> str:
    return shlex.join(["vgs", *sys.argv[1:]])


def _csv_list(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _progress_bar(desc: str, unit: str = "B") -> Callable[[int, Optional[int]], None]:
    """A tqdm bar on stderr, opened at the first update (an early error prints no empty bar), closed at 100%."""
    from tqdm.auto import tqdm

    state: dict = {}

    def update(done: int, total: Optional[int]) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(desc=desc, total=total, unit=unit, unit_scale=unit == "B", leave=False,
                                      file=sys.stderr)
        bar.n = done
        bar.refresh()
        if total is not None and done >= total:
            bar.close()
            state.clear()

    return update


def _check_split(unlisted: Optional[str]) -> None:
    if unlisted is not None and unlisted not in ("train", "valid", "test"):
        raise VgsError(f"--unlisted must be train, valid or test, got {unlisted!r}")


def _summary(out: Path, man: dict, quiet: bool = False) -> None:
    """The folder table of `vgs prepare folder`, then what was downloaded, missing or skipped."""
    from vgs_cli.cli.info import print_shards

    if "clips" in man and not quiet:
        print_shards(out, {k: v for k, v in man.items() if k not in _EXTRA})
    for key, text in _EXTRA.items():
        if man.get(key):
            _echo(f"{man[key]} {text}")
    if man.get("note"):
        _echo(man["note"])
    if man.get("settings", {}).get("waveforms") is False:
        _echo("note: no waveforms here (official features): fine for codebook/transformer/classifier training, "
              "the vocoder needs a folder prepared from videos")


_EXTRA = {"downloaded": "clips downloaded", "already_present": "clips were already downloaded",
          "download_failed": "downloads failed (see download_failures.jsonl)",
          "missing_videos": "clips of the official lists have no video",
          "skipped_unlisted": "clips skipped: in no official split list (--unlisted SPLIT keeps them)"}


def _ingest(fn: Callable[..., dict], src: Path, out: Path, video: VideoOpts, features: Optional[str],
            shard_index: Optional[int], num_shards: Optional[int], quiet: bool, **kwargs) -> None:
    if video.used():
        raise VgsError("--from-features reads no video: extraction options (--preset, -e, --image-size, --mode, "
                       "--set, --visual-weights) do not apply; choose features with --features")
    man = fn(src, out, extractors=_csv_list(features), num_shards=num_shards, shard_index=shard_index,
             command=_command(), progress=None if quiet else _progress_bar("ingest", unit="clip"), **kwargs)
    _summary(out, man, quiet)


def vas(
    out: Path = OUT,
    from_features: Optional[Path] = FROM_FEATURES,
    videos: Optional[Path] = typer.Option(None, "--videos", help="Use an already downloaded copy: "
                                          "DIR/<class>/<video_id>.mp4 (any depth; class = nearest class folder)."),
    url: Optional[str] = typer.Option(None, "--url", help="VAS archive URL or local path (default: RegNet's VAS.zip)."),
    md5: Optional[str] = typer.Option(None, "--md5", help="Expected MD5 of the archive (mismatch = error)."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected SHA-256 of the archive."),
    features: Optional[str] = FEATURES, unlisted: Optional[str] = UNLISTED, work_dir: Optional[Path] = WORK_DIR,
    preset: Optional[str] = PRESET, extractor: list[str] = EXTRACTOR, visual_weights: list[str] = WEIGHTS,
    random_visual_weights: bool = RANDOM, image_size: Optional[int] = IMAGE_SIZE, jobs: int = JOBS,
    shard_index: Optional[int] = SHARD_INDEX, num_shards: Optional[int] = NUM_SHARDS,
    mode: Optional[str] = MODE, overrides: list[str] = SET, quiet: bool = QUIET,
) -> None:
    """VAS (8 classes) with the official train/valid splits: from the video archive, a local copy, or the
    official precomputed features."""
    _check_split(unlisted)
    video = VideoOpts(preset, extractor, visual_weights, random_visual_weights, image_size, mode, overrides)
    if from_features is not None:
        if videos is not None or url is not None or md5 or sha256:
            raise VgsError("--from-features reads no video: drop --videos/--url/--md5/--sha256")
        from vgs_cli.prepare.sources.ingest import ingest_vas

        _ingest(ingest_vas, from_features, out, video, features, shard_index, num_shards, quiet, unlisted=unlisted)
        return
    if features is not None:
        raise VgsError("--features only applies to --from-features (videos: --preset/--extractor)")
    if videos is not None and (url is not None or md5 or sha256):
        raise VgsError("--videos uses a local copy: drop --url/--md5/--sha256")
    from vgs_cli.prepare.sources.vas import VAS_URL, prepare_vas

    cfg, kwargs = video.resolve("vas", jobs, shard_index, num_shards, quiet)
    man = prepare_vas(out, cfg, videos=videos, url=url or VAS_URL, md5=md5, sha256=sha256, work_dir=work_dir,
                      unlisted=unlisted, download_progress=None if quiet else _progress_bar("VAS archive"), **kwargs)
    _summary(out, man, quiet)


def vggsound(
    out: Path = OUT,
    csv: Optional[Path] = typer.Option(None, "--csv", help="The official vggsound.csv (ytid, start s, label, "
                                       "split; no header). Needed unless --from-features without labels."),
    from_features: Optional[Path] = FROM_FEATURES,
    videos: Optional[Path] = typer.Option(None, "--videos", help="Use already downloaded clips named "
                                          "<ytid>_<start_ms>_<end_ms>.mp4 (any depth)."),
    url_template: str = typer.Option("https://www.youtube.com/watch?v={ytid}", "--url-template",
                                     help="Where a clip's video is, {ytid} replaced (plain file URLs work too)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="yt-dlp format selector (default: <=480p video+audio)."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, help="Seconds per clip download before it is abandoned."),
    retries: int = typer.Option(3, "--retries", min=0, help="Retries per clip (exponential backoff) for transient errors."),
    backoff: float = typer.Option(5.0, "--backoff", min=0.0, help="First retry delay in seconds (doubles each time)."),
    download_jobs: int = typer.Option(4, "--download-jobs", min=1, help="Clips downloaded at once."),
    features: Optional[str] = FEATURES, unlisted: Optional[str] = UNLISTED, work_dir: Optional[Path] = WORK_DIR,
    preset: Optional[str] = PRESET, extractor: list[str] = EXTRACTOR, visual_weights: list[str] = WEIGHTS,
    random_visual_weights: bool = RANDOM, image_size: Optional[int] = IMAGE_SIZE, jobs: int = JOBS,
    shard_index: Optional[int] = SHARD_INDEX, num_shards: Optional[int] = NUM_SHARDS,
    mode: Optional[str] = MODE, overrides: list[str] = SET, quiet: bool = QUIET,
) -> None:
    """VGGSound (309 classes): download each 10-s segment with yt-dlp (resumable; failures listed, never
    fatal), or use local clips, or ingest the official precomputed features."""
    _check_split(unlisted)
    video = VideoOpts(preset, extractor, visual_weights, random_visual_weights, image_size, mode, overrides)
    if from_features is not None:
        if videos is not None:
            raise VgsError("--from-features reads no video: drop --videos")
        from vgs_cli.prepare.sources.ingest import ingest_vggsound

        if csv is None:
            _echo("note: no --csv: labels are -1 and the test split comes from the vendored list")
        _ingest(ingest_vggsound, from_features, out, video, features, shard_index, num_shards, quiet,
                csv_path=csv, unlisted=unlisted)
        return
    if csv is None:
        raise VgsError("--csv vggsound.csv is required (it lists the clips, their labels and the test split)")
    if features is not None:
        raise VgsError("--features only applies to --from-features (videos: --preset/--extractor)")
    from vgs_cli.prepare.sources.vggsound import DEFAULT_FORMAT, FetchOptions, prepare_vggsound

    fetch = FetchOptions(url_template=url_template, timeout_s=timeout, retries=retries, backoff_s=backoff,
                         format=fmt or DEFAULT_FORMAT)
    cfg, kwargs = video.resolve("vggsound", jobs, shard_index, num_shards, quiet)
    man = prepare_vggsound(out, cfg, csv_path=csv, videos=videos, work_dir=work_dir, fetch=fetch,
                           download_jobs=download_jobs, unlisted=unlisted,
                           download_progress=None if quiet else _progress_bar("download", unit="clip"), **kwargs)
    _summary(out, man, quiet)


def register(app: typer.Typer) -> None:
    """Add `vas` and `vggsound` to the `vgs prepare` app."""
    app.command("vas", help="VAS: download + prepare with the official splits, or --videos DIR, "
                            "or --from-features DIR.")(vas)
    app.command("vggsound", help="VGGSound: yt-dlp download + prepare with the official splits, or --videos DIR, "
                                 "or --from-features DIR.")(vggsound)
