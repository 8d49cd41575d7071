"""Prepare throughput: synthetic mp4 clips -> shards, the extractors alone, and reading shards back."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

N_CLIPS = 6


def _extractor_fps(name: str, image_size: int, random: bool, n_frames: int = 32) -> float:
    from vgs_cli.loading.extractors import FeatureExtractor, extractor_settings

    settings, path = extractor_settings(name, image_size, random_weights=random)
    ex = FeatureExtractor(name, settings, path)
    side = settings["resize_short"]
    frames = np.random.default_rng(0).integers(0, 255, (n_frames, side, side, 3), dtype=np.uint8)
    ex(frames[:4])  # warm-up
    t0 = time.perf_counter()
    ex(frames)
    return n_frames / (time.perf_counter() - t0)


def rows() -> list[tuple[str, float, str]]:
    from vgs_cli.config.prepare import PRESETS
    from vgs_cli.data.dataset import ShardDataset
    from vgs_cli.data.synthetic import write_synthetic_dataset
    from vgs_cli.prepare.folder import prepare_folder

    out: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="vgs_bench_prepare_") as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "shards"
        write_synthetic_dataset(src, N_CLIPS, duration_s=10.0, seed=0, size=96)
        t0 = time.perf_counter()
        prepare_folder(src, dst, PRESETS["tiny"], labels_csv=src / "labels.csv", progress=False, log=lambda m: None)
        dt = time.perf_counter() - t0
        out.append((f"prepare folder, {N_CLIPS} x 10 s 96px mp4, tiny preset (lite0 128px), -j 1", N_CLIPS / dt, "clips/s"))
        ds = ShardDataset(dst, "train", fields=("mel", "feats", "wav", "label", "id"), feat_frames=212,
                          require_audio=False)
        t0 = time.perf_counter()
        for _ in range(3):
            for k in range(len(ds)):
                ds[k]
        out.append(("ShardDataset read (mel+feats+wav)", 3 * len(ds) / (time.perf_counter() - t0), "items/s"))
    out.append(("efficientnet_lite0 128px features", _extractor_fps("efficientnet_lite0", 128, False), "frames/s"))
    out.append(("efficientnet_lite0 224px features", _extractor_fps("efficientnet_lite0", 224, False), "frames/s"))
    out.append(("resnet50 224px features (paper setting)", _extractor_fps("resnet50", 224, True, 16), "frames/s"))
    return out


if __name__ == "__main__":
    for row in rows():
        print(row)
