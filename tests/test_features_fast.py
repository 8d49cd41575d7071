"""The CPU fast path of the visual extractors (channels-last, frozen TorchScript graph with oneDNN fusions)
gives the eager network's features on real VAS frames: cosine >= 0.999 (the issue's bound; measured 0.99999+)."""

from __future__ import annotations

import pytest
import torch

from vgs_cli.data.video import read_frames
from vgs_cli.loading.extractors import FeatureExtractor, extractor_settings


@pytest.mark.parametrize("name,size", [pytest.param("resnet50", 224, marks=pytest.mark.slow),  # > 10 s on 2 cores
                                       ("efficientnet_lite0", 128)])
def test_fast_path_matches_eager_on_real_frames(reference_dir, name, size):
    video = sorted((reference_dir / "vas" / "videos").glob("*/*.mp4"))[0]
    settings, _ = extractor_settings(name, image_size=size, random_weights=True)
    frames = read_frames(video, short_side=settings["resize_short"])[::20]  # 11 frames across the clip
    eager = FeatureExtractor(name, settings, None, device="cpu", fast=False)
    fast = FeatureExtractor(name, settings, None, device="cpu", batch_size=4, fast=True)  # batches of 4, then the rest
    assert fast.fast and not eager.fast
    fast(frames[:2])
    assert fast._graph is None  # a few frames: not worth tracing
    fast.fast_min_frames = 4
    a, b = torch.from_numpy(eager(frames)), torch.from_numpy(fast(frames))
    assert fast._graph is not None and a.shape == b.shape == (len(frames), settings["dim"])
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert cos.min() >= 0.999, cos
    # and the features still tell frames apart (a wrong layout would not)
    assert torch.nn.functional.cosine_similarity(b[:1], b[-1:]).item() < cos.min()
