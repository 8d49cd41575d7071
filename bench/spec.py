"""Mel spectrogram throughput: our batched torch implementation vs librosa, on the same 8 ten-second clips.

Also the cost of decoding a clip's audio and 21.5 fps frames through ffmpeg (what `prepare` pays per video)
and of generating + encoding one synthetic clip (what the demo dataset pays).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.timing import seconds
from vgs_cli.audio import spec
from vgs_cli.config.spec import SPEC

N_CLIPS = 8


def _seconds(fn, repeats: int = 3) -> float:
    return seconds(fn, repeats=repeats)  # warm-up first: imports, mel basis cache, allocator


def _clips() -> np.ndarray:
    """`float32[8, 220500]`: the synthetic dataset's sounds (one or two per class)."""
    from vgs_cli.data.synthetic import CLASSES, make_clip

    return np.stack([make_clip(i % len(CLASSES), seed=i)[1] for i in range(N_CLIPS)])


def _media_rows() -> list[tuple[str, float, str]]:
    from vgs_cli.audio.io import load_audio
    from vgs_cli.data.synthetic import make_clip
    from vgs_cli.data.video import read_frames, write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"

        def synth() -> None:
            frames, wav = make_clip(3, seed=0)
            write_video(path, frames, wav=wav, aac_coder="fast")

        t_synth = _seconds(synth)
        t_audio = _seconds(lambda: load_audio(path))
        t_frames = _seconds(lambda: read_frames(path))
    return [
        ("synthetic clip: generate + encode (10 s, 96x96)", t_synth, "s/clip"),
        ("ffmpeg audio decode (10 s -> 22.05 kHz mono)", t_audio, "s/clip"),
        ("ffmpeg frame decode (10 s -> 215 frames, 96x96)", t_frames, "s/clip"),
    ]


def rows() -> list[tuple[str, float, str]]:
    clips = _clips()
    batch = torch.from_numpy(clips)
    t_torch = _seconds(lambda: spec.clip_mel(batch))
    t_librosa = _seconds(lambda: [spec.mel_spectrogram_librosa(c) for c in clips], repeats=2)
    ref = np.stack([spec.mel_spectrogram_librosa(c)[:, : SPEC.stored_frames] for c in clips])
    max_diff = float(np.abs(spec.clip_mel(batch).numpy() - ref).max())
    return [
        ("mel torch batched (8 x 10 s, float64, CPU)", N_CLIPS / t_torch, "clips/s"),
        ("mel librosa (8 x 10 s, one by one)", N_CLIPS / t_librosa, "clips/s"),
        ("mel torch speed-up over librosa", t_librosa / t_torch, "x"),
        ("mel torch vs librosa max abs difference", max_diff, "[0,1] units"),
        *_media_rows(),
    ]


if __name__ == "__main__":
    for name, value, unit in rows():
        print(f"{name:55s} {value:10.4g} {unit}")
