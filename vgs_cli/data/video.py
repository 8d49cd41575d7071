"""Video frames in and out through ffmpeg pipes: constant-rate decoding, 10 s clip fitting, mp4 writing.

`read_frames` resamples any source (24, 25, 29.97, 60 fps or variable) to the paper's 21.5 fps with ffmpeg's
`fps` filter. Two frame paths (`frame_path`, recorded in the extractor settings of every shard):
- "ffmpeg" (vgs's own, EfficientNet-Lite0): `round=up`, so output frame k is the source frame on screen at
  k / 21.5 s; resized by ffmpeg's bicubic scaler inside the decoder.
- "reference" (ResNet-50, the paper's features): what the reference did. It re-encoded each video with
  `-vf fps=21.5` (default rounding, `round=near`; a 6.01-s 29.97-fps clip gives 129 frames, round=up 130),
  then torchvision's PIL path: `Resize(256)` = Pillow bilinear WITH antialiasing, short side to 256 and the
  long side `int(256 * long / short)`, then `CenterCrop` (done by the extractor). Frames are decoded at
  source size and resized one by one with Pillow itself, so they equal Pillow's output exactly.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from vgs_cli.audio.io import ffmpeg_exe, file_arg, last_error_line, muxer_for, probe, run_ffmpeg, write_wav
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import DataError
from vgs_cli.fsutil import atomic_path

FRAME_PATHS = ("ffmpeg", "reference")
# The file suffixes every stage treats as video (prepare folder/vas/vggsound, generate's batch mode).
VIDEO_EXTS = (".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")


def fps_fraction(fps: float) -> str:
    """`21.5 -> "43/2"`, `29.97 -> "2997/100"`: an exact rational ffmpeg accepts as a rate."""
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise DataError(f"frame rate must be a positive number, got {fps}")
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


def output_size(width: int, height: int, size: tuple[int, int] | None = None,
                short_side: int | None = None) -> tuple[int, int]:
    """Frame size `(H, W)` after resizing a `width x height` source to `size=(H, W)` or to a short side."""
    if size is not None and short_side is not None:
        raise DataError("give either size=(H, W) or short_side, not both")
    if size is not None:
        h, w = (int(v) for v in size)
    elif short_side is not None:
        scale = int(short_side) / min(width, height)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
    else:
        h, w = height, width
    if h < 1 or w < 1:
        raise DataError(f"frame size must be positive, got {h}x{w}")
    return h, w


def reference_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """`(H, W)` of torchvision's `Resize(short_side)`: the short side becomes `short_side`, the long side
    `int(short_side * long / short)` (truncated, where `output_size` rounds)."""
    if width <= height:
        return int(short_side * height / width), int(short_side)
    return int(short_side), int(short_side * width / height)


def pil_bilinear(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """`uint8[H0, W0, 3] -> uint8[h, w, 3]` with Pillow's bilinear filter (antialiased: its support widens by
    the downscale factor), i.e. torchvision's `Resize` on a PIL image."""
    from PIL import Image

    if frame.shape[:2] == (h, w):
        return frame
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))


def _read_exactly(stream, buf: memoryview) -> int:
    """Fill `buf` from `stream`; returns the bytes read (fewer only at end of stream)."""
    got = 0
    while got < len(buf):
        n = stream.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def _decode_raw(cmd: list[str], h: int, w: int, capacity: int,
                resize: tuple[int, int] | None = None) -> tuple[np.ndarray, int, str]:
    """Run an ffmpeg command writing `h x w` rgb24 frames to stdout: `-> (uint8[N, h, w, 3], returncode, stderr)`.

    Frames are read straight into a preallocated array (grown when the estimate was short), so a long
    clip costs one copy of its pixels, not two. `resize=(H, W)`: each frame is read into a scratch buffer
    and resized with Pillow (`pil_bilinear`) into `uint8[N, H, W, 3]`, so full-size frames never pile up.
    """
    frame_bytes = h * w * 3
    scratch = np.empty((h, w, 3), dtype=np.uint8) if resize else None
    out = np.empty((max(capacity, 1), *(resize or (h, w)), 3), dtype=np.uint8)
    n = 0
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty stderr cannot block the decoder
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        try:
            while True:
                if n == len(out):
                    out = np.concatenate([out, np.empty_like(out)])
                got = _read_exactly(proc.stdout, memoryview((out[n] if scratch is None else scratch).reshape(-1)))
                if got < frame_bytes:
                    break
                if scratch is not None:
                    out[n] = pil_bilinear(scratch, *resize)
                n += 1
        finally:
            proc.stdout.close()
            rc = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return out[:n], rc, stderr


def read_frames(path: str | os.PathLike, fps: float = SPEC.fps, size: tuple[int, int] | None = None,
                short_side: int | None = None, max_duration_s: float | None = None,
                frame_path: str = "ffmpeg") -> np.ndarray:
    """Decode the first video stream at a constant `fps`: `-> uint8[N, H, W, 3]` RGB.

    `size=(H, W)` resizes exactly, `short_side=s` keeps the aspect ratio, neither keeps the source size
    (after the display rotation). `max_duration_s` keeps only the first seconds: at most ceil(t * fps)
    frames. `frame_path`: "ffmpeg" or "reference" (frame choice and resizing; see the module docstring).
    """
    if frame_path not in FRAME_PATHS:
        raise DataError(f"unknown frame path {frame_path!r} (use {' or '.join(FRAME_PATHS)})")
    path = Path(path)
    info = probe(path)
    if not info.has_video or not info.width or not info.height:
        raise DataError(f"{path} has no video stream")
    resize = None
    if frame_path == "reference":  # decode at source size, Pillow resizes each frame
        h, w = info.height, info.width
        output_size(w, h, size, short_side)  # the same argument checks
        if size is not None:
            resize = (int(size[0]), int(size[1]))
        elif short_side is not None:
            resize = reference_size(w, h, int(short_side))
        vf = f"fps=fps={fps_fraction(fps)}"
    else:
        h, w = output_size(info.width, info.height, size, short_side)
        vf = f"fps=fps={fps_fraction(fps)}:round=up,scale={w}:{h}:flags=bicubic"
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", file_arg(path), "-map", "0:v:0",
           "-an", "-sn", "-dn", "-vf", vf]
    n_max = None
    if max_duration_s is not None:
        if max_duration_s <= 0:
            raise DataError(f"max_duration_s must be positive, got {max_duration_s}")
        n_max = math.ceil(max_duration_s * fps - 1e-6)
        cmd += ["-frames:v", str(n_max)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    estimate = n_max or math.ceil((info.duration_s or 10.0) * fps) + 2
    frames, rc, stderr = _decode_raw(cmd, h, w, estimate, resize)
    if rc != 0 and len(frames) == 0:
        raise DataError(f"cannot decode video {path}: {last_error_line(stderr)}")
    if len(frames) == 0:
        raise DataError(f"{path}: the video stream has no frames")
    return frames


def fit_clip(frames: np.ndarray | None, wav: np.ndarray | None, n_frames: int = SPEC.num_video_frames,
             n_samples: int = SPEC.num_samples, mode: str = "loop") -> tuple[np.ndarray | None, np.ndarray | None]:
    """Make a clip exactly `n_frames` frames and `n_samples` samples long (10 s at 21.5 fps / 22.05 kHz).

    Longer inputs keep their start. Shorter ones are repeated from the start (`mode="loop"`, what the
    reference pipeline did) or padded (`mode="pad"`: the last frame is held, audio gets zeros).
    `frames: uint8[N, H, W, 3]`, `wav: float32[S]`; either may be None (e.g. no audio track) and stays None.
    """
    if mode not in ("loop", "pad"):
        raise DataError(f"unknown clip fitting mode {mode!r} (use 'loop' or 'pad')")
    if frames is not None:
        if len(frames) == 0:
            raise DataError("cannot fit a clip with no video frames")
        if len(frames) >= n_frames:
            frames = frames[:n_frames]
        else:
            idx = np.arange(n_frames)
            idx = idx % len(frames) if mode == "loop" else np.minimum(idx, len(frames) - 1)
            frames = frames[idx]
    if wav is not None:
        wav = np.asarray(wav, dtype=np.float32)
        if len(wav) == 0:
            raise DataError("cannot fit a clip with an empty audio track")
        if len(wav) >= n_samples:
            wav = wav[:n_samples]
        elif mode == "loop":
            wav = np.resize(wav, n_samples)  # np.resize repeats the data cyclically
        else:
            wav = np.pad(wav, (0, n_samples - len(wav)))
    return frames, wav


def _even_frames(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: repeat the last row/column when H or W is odd. `[N,H,W,3] -> [N,H',W',3]`."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = SPEC.fps, wav: np.ndarray | None = None,
                sr: int = SPEC.sample_rate, crf: int = 18, preset: str = "ultrafast",
                audio_bitrate: str = "128k", aac_coder: str = "twoloop") -> Path:
    """Atomically write `frames: uint8[N, H, W, 3]` (RGB) as H.264/yuv420p (+ `wav: float32[S]` as AAC) mp4.

    Odd frame sizes are padded by one edge pixel (H.264 4:2:0 needs even sizes). `aac_coder="fast"` encodes
    audio ~2.5x faster at about twice the (still small) coding error; the synthetic dataset uses it.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise DataError(f"write_video expects uint8 frames [N, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    frames = np.ascontiguousarray(_even_frames(frames))
    _, h, w, _ = frames.shape
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="vgs_video_") as tmpdir, atomic_path(path) as tmp:
        args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", fps_fraction(fps),
                "-i", "pipe:0"]
        if wav is not None:
            wav_path = write_wav(Path(tmpdir) / "audio.wav", np.asarray(wav, dtype=np.float32), sr, subtype="FLOAT")
            args += ["-i", file_arg(wav_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", audio_bitrate,
                     "-aac_coder", aac_coder]
        args += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                 "-f", muxer_for(path), file_arg(tmp)]
        proc = run_ffmpeg(args, stdin=frames.tobytes())
        if proc.returncode != 0:
            raise DataError(f"cannot write video {path}: {last_error_line(proc.stderr)}")
    return path


def stream_duration(path: str | os.PathLike, fps: float | None = None) -> float | None:
    """Seconds of the first video stream, read by remuxing its packets to a list (no decoding, fast).

    Frame count / average frame rate `fps`, unless the timestamps' span (first frame's pts to the last one's
    pts + its duration) disagrees by more than half a frame: a variable frame rate (90 frames averaging
    28.48 fps over 3.00 s are 3.16 s by count), or frames the container skips (an AVI's empty chunks). At a
    constant rate both agree and the count is kept, exactly as before timestamps were read. Without frames the remux's last `time=` is the fallback: the start of the last packet in decode order, a
    few frames short with B-frames (a 3-s H.264 clip read as 2.92 s)."""
    import re

    proc = run_ffmpeg(["-i", file_arg(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"])
    frames, span = _packet_span(proc.stdout.decode("utf-8", "replace"))
    if frames and fps:
        by_rate = frames / fps
        return span if span is not None and abs(span - by_rate) > 0.5 / fps else by_rate
    if span:
        return span
    times = re.findall(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)", proc.stderr.decode("utf-8", "replace"))
    if not times:
        return None
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s) or None


_NOPTS = -(2**63)


def _packet_span(framecrc: str) -> tuple[int, float | None]:
    """(packets, seconds from the first pts to the last pts + its duration) of ffmpeg's `framecrc` listing
    (`#tb 0: num/den`, then `stream, dts, pts, duration, size, crc` per packet). A last packet without a
    duration lasts as long as the gap before it; None without usable timestamps."""
    tb, pts_dur = None, []
    for line in framecrc.splitlines():
        if line.startswith("#tb 0:"):
            num, _, den = line.split(":", 1)[1].strip().partition("/")
            tb = Fraction(int(num), int(den))
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            if len(fields) >= 4 and fields[0] == "0":
                pts_dur.append((int(fields[2]), int(fields[3])))
    timed = sorted(p for p in pts_dur if p[0] != _NOPTS)
    if tb is None or len(timed) < 2 or len(timed) != len(pts_dur):
        return len(pts_dur), None
    last_pts, last_dur = timed[-1]
    if last_dur <= 0:
        last_dur = last_pts - timed[-2][0]
    return len(pts_dur), float((last_pts + last_dur - timed[0][0]) * tb)


def list_videos(root: Path) -> list[Path]:
    """Video files under `root` (recursive, common suffixes, hidden folders skipped), sorted."""
    found = [p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
