"""VGGish-ish: the VGG16-style mel classifier whose conv features the LPAPS perceptual loss uses.

`VGGishishModelConfig` is the architecture (what `models.vggishish.VGGishish` and `models.lpaps.LPAPS` are
built from); `VGGishishConfig` is the training stage (`vgs train vggishish`, classification tasks).
Paper size = the official `vggishish16.pt`: 13 convs, 4 max-pools, 5x10 average pool, FC 4096-4096-C.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from vgs_cli.config.base import Config
from vgs_cli.config.train import TrainConfig

MP = "MP"  # a 2x2 max-pool in `conv_layers` (the reference's marker)

VGG16_LAYERS: tuple[Union[int, str], ...] = (
    64, 64, MP, 128, 128, MP, 256, 256, 256, MP, 512, 512, 512, MP, 512, 512, 512,
)
# Same structure (so LPAPS still has five stages), 8x narrower: for tests and CPU smoke runs.
TINY_LAYERS: tuple[Union[int, str], ...] = (8, 8, MP, 16, 16, MP, 32, 32, 32, MP, 64, 64, 64, MP, 64, 64, 64)


@dataclass(frozen=True)
class VGGishishModelConfig(Config):
    conv_layers: tuple[Union[int, str], ...] = VGG16_LAYERS  # channels of 3x3 conv+ReLU, "MP" = max-pool
    num_classes: int = 309
    n_mels: int = 80
    pool: tuple[int, int] = (5, 10)  # adaptive average pool before the classifier
    hidden: int = 4096
    use_bn: bool = False  # the official vggishish16 has no BatchNorm

    def __post_init__(self) -> None:
        from vgs_cli.errors import ConfigError

        for v in self.conv_layers:
            if not (v == MP or (isinstance(v, int) and v > 0)):
                raise ConfigError(f"vggishish conv_layers: {v!r} is neither a positive channel count nor 'MP'")
        if not self.conv_channels:
            raise ConfigError("vggishish conv_layers: needs at least one convolution")

    @property
    def conv_channels(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.conv_layers if v != MP)

    @property
    def feature_dim(self) -> int:
        """Inputs of the first fully connected layer: last conv width x pooled cells (25,600 at paper size)."""
        return self.conv_channels[-1] * self.pool[0] * self.pool[1]

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Channels at the end of each max-pool-separated stage (LPAPS taps relu1_2 ... relu5_3 there)."""
        stages: list[int] = []
        prev_was_conv = False
        for v in self.conv_layers:
            if v == MP:
                prev_was_conv = False
            elif prev_was_conv:
                stages[-1] = int(v)
            else:
                stages.append(int(v))
                prev_was_conv = True
        return tuple(stages)


@dataclass(frozen=True)
class VGGishishConfig(Config):
    """Stage config of `vgs train vggishish` (the training task itself belongs to the classification work)."""

    model: VGGishishModelConfig = field(default_factory=VGGishishModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    random_crop: bool = True  # training crops 848 of the 860 stored frames at a random offset


PRESETS: dict[str, VGGishishConfig] = {
    "vas": VGGishishConfig(
        model=VGGishishModelConfig(num_classes=8),
        train=TrainConfig(steps=20000, batch_size=32, lr=3e-4, weight_decay=1e-3, eval_every=500),
    ),
    "vggsound": VGGishishConfig(
        model=VGGishishModelConfig(num_classes=309),
        train=TrainConfig(steps=200000, batch_size=32, lr=3e-4, weight_decay=1e-3, eval_every=2000),
    ),
    "tiny": VGGishishConfig(
        model=VGGishishModelConfig(conv_layers=TINY_LAYERS, num_classes=8, hidden=64),
        train=TrainConfig(steps=40, batch_size=4, lr=1e-3, eval_every=20, log_every=5),
    ),
}
