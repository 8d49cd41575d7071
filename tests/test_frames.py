"""The reference's frame path (ResNet-50): frames picked as ffmpeg's `fps=21.5` filter picks them (checked
against ffmpeg's own re-encode, as the reference made it, on 24/25/29.97/30/60 fps and a variable-rate clip,
by frame numbers drawn into the pixels), torchvision's Resize(256) (Pillow bilinear, antialiased) and
CenterCrop(224), and the frame count of the 6.01-s VAS clip."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vgs_cli.audio.io import ffmpeg_exe, probe
from vgs_cli.data.video import read_frames, write_video
from vgs_cli.errors import DataError

BITS = 8  # frame number as 8 black/white bars, 8 px wide each: survives H.264


def _numbered(n: int) -> np.ndarray:
    """`uint8[n, 64, 64, 3]`: frame i shows i in binary (bar b white when bit b is set)."""
    frames = np.zeros((n, 64, 64, 3), np.uint8)
    for i in range(n):
        for b in range(BITS):
            if (i >> b) & 1:
                frames[i, :, b * 8 : (b + 1) * 8] = 255
    return frames


def _numbers(frames: np.ndarray) -> list[int]:
    """Frame numbers read back from `[N, H, W(, 3)]` frames (each bar's centre)."""
    gray = frames.mean(axis=-1) if frames.ndim == 4 else frames.astype(np.float64)
    bars = [gray[:, 16:48, b * 8 + 2 : b * 8 + 6].mean(axis=(1, 2)) > 128 for b in range(BITS)]
    return [sum(int(bars[b][k]) << b for b in range(BITS)) for k in range(len(frames))]


def _ffmpeg(*args: str) -> bytes:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
    return proc.stdout


def _reference_numbers(clip: Path, tmp: Path) -> list[int]:
    """What the reference got: `ffmpeg -i clip -filter:v fps=fps=21.5 out.mp4` (libx264), all frames read back."""
    out = tmp / f"{clip.stem}_21.5.mp4"
    _ffmpeg("-i", str(clip), "-filter:v", "fps=fps=21.5", "-c:v", "libx264", "-crf", "10", str(out))
    info = probe(out)
    raw = _ffmpeg("-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1")
    return _numbers(np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """3-s numbered clips at the common rates, and a variable-frame-rate one (irregular gaps)."""
    root = tmp_path_factory.mktemp("rates")
    out = {}
    for fps in (24, 25, 29.97, 30, 60):
        out[str(fps)] = write_video(root / f"fps{fps}.mp4", _numbered(int(3 * fps)), fps=fps)
    vfr = root / "vfr.mp4"  # gaps of 0.7, 1, 1.3 and 1.5 frame periods at 25 fps
    _ffmpeg("-i", str(out["25"]), "-vf", "setpts=(N+0.5*floor(N/7)+0.3*not(mod(N\\,3)))/25/TB", "-fps_mode", "vfr",
            "-c:v", "libx264", "-crf", "10", "-video_track_timescale", "90000", str(vfr))
    out["vfr"] = vfr
    return out


def test_frames_are_the_ones_ffmpegs_fps_filter_picks(clips, tmp_path):
    differs_from_round_up = []
    for name, clip in clips.items():
        want = _reference_numbers(clip, tmp_path)
        got = _numbers(read_frames(clip, frame_path="reference"))
        assert got == want, (name, got, want)
        old = _numbers(read_frames(clip, frame_path="ffmpeg"))  # vgs's own path: round=up
        differs_from_round_up.append(old != want)
    assert sum(differs_from_round_up) >= 5  # vgs's round=up path picks other frames at every rate
    shown = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(clips["vfr"]), "-vf", "showinfo", "-f", "null",
                            "-"], capture_output=True, text=True).stderr
    gaps = np.diff([float(t) for t in re.findall(r"pts_time:([\d.]+)", shown)])
    assert len(gaps) == 74 and gaps.max() - gaps.min() > 0.025  # the variable-rate clip really is irregular


def _torchvision_resize_crop(frame: np.ndarray, size: int = 256, crop: int = 224) -> np.ndarray:
    """torchvision's PIL path written out: Resize(size) (short side; long side int(size * long / short), bilinear)
    then CenterCrop(crop) (offsets int(round((h - crop) / 2)))."""
    from PIL import Image

    h, w = frame.shape[:2]
    oh, ow = (int(size * h / w), size) if w <= h else (size, int(size * w / h))
    img = np.asarray(Image.fromarray(frame).resize((ow, oh), Image.BILINEAR))
    top, left = int(round((oh - crop) / 2.0)), int(round((ow - crop) / 2.0))
    return img[top : top + crop, left : left + crop]


@pytest.mark.reference
def test_real_frames_resize_and_crop_as_torchvision_pil(reference_dir):
    """Real VAS frames: a 1280x720 clip (downscaled: antialiasing matters) and a 398x224 one (upscaled)."""
    from vgs_cli.loading.extractors import center_crop, extractor_settings, frame_path

    settings, _ = extractor_settings("resnet50", random_weights=True)
    assert frame_path(settings) == "reference" and settings["resize_short"] == 256
    for clip in ("gun/video_00819", "dog/video_02677"):
        path = reference_dir / "vas" / "videos" / f"{clip}.mp4"
        full = read_frames(path, frame_path="reference", max_duration_s=0.5)  # source size
        ours = read_frames(path, short_side=256, frame_path="reference", max_duration_s=0.5)
        assert len(full) == len(ours) == 11
        want = np.stack([_torchvision_resize_crop(f) for f in full]).astype(np.int16)
        got = center_crop(ours, 224, frame_path(settings))
        assert got.shape == want.shape and np.abs(got - want).max() <= 1, clip  # within 1/255 of Pillow
        old = read_frames(path, short_side=256, frame_path="ffmpeg", max_duration_s=0.5)  # ffmpeg bicubic
        assert np.abs(center_crop(old, 224).astype(np.int16) - want).max() > 1, clip


@pytest.mark.reference
def test_the_601_s_clip_has_the_references_frame_count(reference_dir, tmp_path):
    clip = reference_dir / "vas" / "videos" / "dog" / "video_02677.mp4"
    want = _ffmpeg("-i", str(clip), "-vf", "fps=21.5", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1")
    info = probe(clip)
    n_ref = len(want) // (info.width * info.height)
    ours = read_frames(clip, short_side=256, frame_path="reference", max_duration_s=10.0)
    assert len(ours) == n_ref == 129  # vgs's round=up path gives 130
    assert len(read_frames(clip, short_side=32, frame_path="ffmpeg", max_duration_s=10.0)) == 130


def test_the_frame_path_follows_the_features_origin():
    """resnet50 settings record the reference path; official features/transformers (no key) get it too;
    EfficientNet-Lite0 and shards made before the key existed keep vgs's ffmpeg path."""
    from vgs_cli.loading.extractors import extractor_settings, frame_path

    assert extractor_settings("resnet50", random_weights=True)[0]["frame_path"] == "reference"
    lite = extractor_settings("efficientnet_lite0", 128, random_weights=True)[0]
    assert "frame_path" not in lite and frame_path(lite) == "ffmpeg"
    assert frame_path({"source": "official SpecVQGAN features"}) == "reference"  # `prepare vas --from-features`
    assert frame_path({"image_size": 224, "resize_short": 256}) == "ffmpeg"
    with pytest.raises(DataError, match="unknown frame path"):
        read_frames("missing.mp4", frame_path="bicubic")
