"""Config of `vgs prepare`: which visual features, how short clips are fitted to 10 s, how shards are cut.

Presets: `vas` / `vggsound` use the paper's ResNet-50 features at 224 px; `tiny` (the demo and tests) uses
EfficientNet-Lite0 at 128 px, whose real ImageNet weights install offline and run ~10x faster on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vgs_cli.config.base import Config
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import ConfigError

EXTRACTOR_NAMES = ("resnet50", "efficientnet_lite0")  # keep in step with pipeline.features.REGISTRY


@dataclass(frozen=True)
class PrepareConfig(Config):
    extractors: tuple[str, ...] = ("resnet50",)
    image_size: int = 224  # centre crop fed to every extractor (short side resized to 256/224 of it first)
    mode: Literal["loop", "pad"] = "loop"  # short clips: repeat from the start (the reference) or hold/zero-pad
    clips_per_shard: int = 512  # sets the shard count when --num-shards is not given
    wav_dtype: Literal["int16", "float32"] = "int16"
    feature_batch: int = 64  # frames per forward pass of the extractor
    # fp32 (default: the official features' way), bf16 or int8 (loading/feature_paths.py): recorded in the
    # shards' extractor settings, so a transformer trained on one kind refuses the others
    feature_precision: Literal["fp32", "bf16", "int8"] = "fp32"

    def __post_init__(self) -> None:
        if not self.extractors:
            raise ConfigError("prepare.extractors: at least one visual feature extractor is needed")
        unknown = [e for e in self.extractors if e not in EXTRACTOR_NAMES]
        if unknown:
            raise ConfigError(f"prepare.extractors: unknown {unknown} (available: {', '.join(EXTRACTOR_NAMES)})")
        if len(set(self.extractors)) != len(self.extractors):
            raise ConfigError("prepare.extractors: each extractor once")
        if self.image_size < 32:
            raise ConfigError(f"prepare.image_size must be >= 32, got {self.image_size}")
        if self.clips_per_shard < 1 or self.feature_batch < 1:
            raise ConfigError("prepare.clips_per_shard and prepare.feature_batch must be positive")

    @property
    def resize_short(self) -> int:
        """Short side frames are decoded at before the centre crop (the ImageNet 256/224 ratio)."""
        return int(round(self.image_size * 256 / 224))

    @property
    def num_frames(self) -> int:
        """Visual frames stored per clip (215 = 10 s at 21.5 fps)."""
        return SPEC.num_video_frames

    def num_shards_for(self, n_clips: int) -> int:
        """Shard count when the user gives none."""
        return max(1, -(-n_clips // self.clips_per_shard))


PRESETS: dict[str, PrepareConfig] = {
    "vas": PrepareConfig(),
    "vggsound": PrepareConfig(),
    "tiny": PrepareConfig(extractors=("efficientnet_lite0",), image_size=128, clips_per_shard=64),
}
