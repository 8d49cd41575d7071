"""The audio-visual metric networks of the av-benchmark protocol on this machine's CPU: seconds per 10-s clip.

Synchformer (DeSync) at its published size (237 M parameters, random weights: speed does not depend on
them) on a synthetic 10-s clip (320 x 240 at 30 fps, 22.05-kHz audio), everything `vgs eval` runs per clip:
decoding at 25 fps, resizing, 16-kHz resampling, the 30 video and audio segments, the two 4.8-s windows.
The second row is an evaluation whose video features are already cached (another set of generated audio
for the same videos): the audio branch and the head only.
ImageBind-huge (IB-score) at its published size (vision 633 M + audio 86 M parameters, random weights) on the
same clip: decoding at 0.5 fps, resizing, the 4 two-frame clips x 3 crops through the vision path, and the
audio (three 2-s clips for the score, three per 8-s window for the two windows); then with the video
embeddings cached (the audio path only).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.timing import seconds
from vgs_cli.audio.io import write_wav
from vgs_cli.data.video import write_video
from vgs_cli.metrics.av_metrics import AVPair, desync_one, ib_one
from vgs_cli.metrics.feature_cache import FeatureCache
from vgs_cli.models.imagebind import ImageBind, ImageBindConfig
from vgs_cli.models.synchformer import Synchformer, SynchformerConfig


def _clip(folder: Path, seconds_: float = 10.0) -> AVPair:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (int(seconds_ * 30), 240, 320, 3), dtype=np.uint8)
    video = write_video(folder / "clip.mp4", frames, fps=30)
    audio = write_wav(folder / "clip.wav", rng.standard_normal(int(seconds_ * 22050)).astype(np.float32) * 0.1, 22050)
    return AVPair("clip", "clip.wav", video, audio)


def rows() -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    model = Synchformer(SynchformerConfig()).eval()
    with tempfile.TemporaryDirectory(prefix="vgs_bench_av_") as tmp:
        pair = _clip(Path(tmp))
        uncached = FeatureCache("bench-synchformer", "0" * 64, enabled=False)
        cold = seconds(lambda: desync_one(model, uncached, pair, "cpu", 8), repeats=1, warmup=False)
        cache = FeatureCache("bench-synchformer", "0" * 64, root=Path(tmp) / "features")  # not the user's cache
        desync_one(model, cache, pair, "cpu", 8)  # fills the cache
        warm = seconds(lambda: desync_one(model, cache, pair, "cpu", 8), repeats=1, warmup=False)
        ib = ImageBind(ImageBindConfig()).eval()
        uncached = FeatureCache("bench-imagebind", "0" * 64, enabled=False)
        ib_cold = seconds(lambda: ib_one(ib, uncached, pair, "cpu", 8), repeats=1, warmup=False)
        cache = FeatureCache("bench-imagebind", "0" * 64, root=Path(tmp) / "features")
        ib_one(ib, cache, pair, "cpu", 8)  # fills the cache
        ib_warm = seconds(lambda: ib_one(ib, cache, pair, "cpu", 8), repeats=1, warmup=False)
    return [("Synchformer (DeSync), 10-s clip, batch 8 segments", cold, "s/clip"),
            ("Synchformer (DeSync), 10-s clip, video features cached", warm, "s/clip"),
            ("ImageBind-huge (IB-score), 10-s clip, batch 8 inputs", ib_cold, "s/clip"),
            ("ImageBind-huge (IB-score), 10-s clip, video embeddings cached", ib_warm, "s/clip")]


if __name__ == "__main__":
    for row in rows():
        print(row)
