"""`vgs train vggishish`: the VGG16-style mel classifier whose conv features LPAPS compares.

The model (`models.vggishish.VGGishish`, the codebook work's) takes mels on [-1, 1] and standardises them
with its `scaling_layer` buffers, which this task fills from the training shards' per-bin statistics, so
they are saved in the checkpoint's state_dict. The class count always comes from the training shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vgs_cli.audio.spec import to_model_range
from vgs_cli.config.vggishish import PRESETS, VGGishishConfig
from vgs_cli.models.vggishish import VGGishish
from vgs_cli.train.classify import ClassificationTask, data_classes, mel_stats, reject_cli_opts

__all__ = ["PRESETS", "CONFIG_CLASS", "make_task", "VGGishishTask"]

CONFIG_CLASS = VGGishishConfig
NORM_CLIPS = 4000  # training clips sampled for the per-bin statistics (the config has no field for it)
NORM_MIN_STD = 0.01


class VGGishishTask(ClassificationTask):
    stage = "vggishish"

    def __init__(self, config: VGGishishConfig, data_dir: Path | None, classes: list[str],
                 stats: tuple[np.ndarray, np.ndarray] | None = None, **kwargs: Any) -> None:
        super().__init__(config, data_dir, classes, **kwargs)
        self.stats = stats

    def build_model(self) -> nn.Module:
        model = VGGishish(self.config.model)
        if self.stats is not None:
            model.scaling_layer.set_stats(torch.from_numpy(self.stats[0]).float(),
                                          torch.from_numpy(self.stats[1]).float())
        return model

    def _shards(self, split: str, crop: str):
        if split == "train" and not self.config.random_crop:
            crop = "center"
        return super()._shards(split, crop)

    def forward(self, model: nn.Module, mel01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return model(to_model_range(mel01)), None

    def checkpoint_extra(self) -> dict[str, Any]:
        extra = {**super().checkpoint_extra(), "input": "mel [80, 848] on [-1, 1]"}
        if self.stats is not None:
            extra["mel_mean"] = [float(v) for v in self.stats[0]]
            extra["mel_std"] = [float(v) for v in self.stats[1]]
        return extra


def make_task(cfg: VGGishishConfig, data_dir: Path, **cli_opts: Any) -> VGGishishTask:
    reject_cli_opts("vggishish", cli_opts)
    data_dir = Path(data_dir)
    classes = data_classes(data_dir)
    cfg = cfg.replace(model=cfg.model.replace(num_classes=len(classes)))
    stats = mel_stats(data_dir, NORM_CLIPS, cfg.train.seed, NORM_MIN_STD)
    return VGGishishTask(cfg, data_dir, classes, stats=stats)
