"""Generation runs the visual network only on the frames the transformer reads (1/5-frame models: 1 or 5 per
window, as their training data), and those frames get the same features as the full 215-frame path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vgs_cli.config.transformer import GPTConfig
from vgs_cli.data.condition import condition_frames
from vgs_cli.data.video import write_video
from vgs_cli.generate.engine import (
    Bundle,
    ModelPaths,
    condition_features,
    condition_start,
    extend_features,
    video_features,
)
from vgs_cli.loading.extractors import extractor_settings
from vgs_cli.models.gpt import GPT


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """12 s of distinct random frames (no dedup shortcut), 40x56 px."""
    frames = np.random.default_rng(0).integers(0, 255, (300, 40, 56, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("cf") / "v.mp4", frames, 25.0)


def _bundle(feat_frames: int) -> Bundle:
    settings, _ = extractor_settings("efficientnet_lite0", image_size=32, random_weights=True)
    cfg = GPTConfig(vocab_size=8, n_layer=1, n_head=2, n_embd=16, feat_frames=feat_frames, feat_dim=1280)
    extra = {"extractor": "efficientnet_lite0", "extractor_settings": settings}
    return Bundle(GPT(cfg).eval(), None, None, extra, ModelPaths(Path("t"), Path("c"), None), torch.device("cpu"))


@pytest.mark.parametrize("feat_frames", [1, 5])
def test_few_frame_models_extract_only_their_frames(video, feat_frames):
    bundle = _bundle(feat_frames)
    cfg = bundle.gpt.cfg
    for num_steps, windows in ((53, 1), (65, 13)):  # 10 s: one window; 12 s: the window slides 12 columns
        fast = condition_features(bundle, video, num_steps)
        ran = bundle._extractor.last_unique
        full = extend_features(video_features(bundle, video), num_steps, cfg)
        assert bundle._extractor.last_unique > 215  # the full path ran every frame (all distinct)
        # one frame is the window centre, which moves 4 frames per column: a new frame for every window;
        # 5 frames per window overlap the next windows' picks only where 4-frame steps land on them
        assert ran == feat_frames * windows if feat_frames == 1 else feat_frames <= ran <= feat_frames * windows
        assert fast.shape == full.shape
        for s in range(windows):
            a = condition_frames(fast, feat_frames, cfg.feat_window, condition_start(cfg, s))
            b = condition_frames(full, feat_frames, cfg.feat_window, condition_start(cfg, s))
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
            assert np.abs(a).sum() > 0
