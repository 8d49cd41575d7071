"""`vgs train melception`: the Inception-v3 spectrogram classifier behind FID / KID / ISc / MKL.

Cross-entropy on the main logits plus `aux_weight` x cross-entropy on the auxiliary head (torchvision's
Inception recipe; the reference computed that sum but then overwrote it with the main loss alone, so its
aux head stayed untrained: `--set aux_weight=0` reproduces that). The number of classes and the per-mel-bin
input statistics come from the training shards and are written into the model config, so the checkpoint
rebuilds the standardising classifier on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vgs_cli.config.melception import PRESETS, MelceptionConfig
from vgs_cli.models.melception import Melception
from vgs_cli.train.classify import ClassificationTask, data_classes, mel_stats, reject_cli_opts

__all__ = ["PRESETS", "CONFIG_CLASS", "make_task", "MelceptionTask", "finalize_config"]

CONFIG_CLASS = MelceptionConfig


class MelceptionTask(ClassificationTask):
    stage = "melception"

    def __init__(self, config: MelceptionConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.aux_weight = config.aux_weight

    def build_model(self) -> nn.Module:
        return Melception(self.config.model)

    def forward(self, model: nn.Module, mel01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = model(mel01)
        return out["logits"], out.get("aux_logits")

    def checkpoint_extra(self) -> dict[str, Any]:
        return {**super().checkpoint_extra(), "input": "mel [80, 848] on [0, 1]"}


def finalize_config(cfg: MelceptionConfig, data_dir: Path, classes: list[str]) -> MelceptionConfig:
    """Fill the data-derived model fields: class count and (unless already given) the input statistics."""
    model = cfg.model.replace(num_classes=len(classes))
    if not model.has_norm:
        mean, std = mel_stats(data_dir, cfg.norm_clips, cfg.train.seed, cfg.norm_min_std)
        model = model.replace(norm_mean=tuple(float(v) for v in mean), norm_std=tuple(float(v) for v in std))
    return cfg.replace(model=model)


def make_task(cfg: MelceptionConfig, data_dir: Path, **cli_opts: Any) -> MelceptionTask:
    reject_cli_opts("melception", cli_opts)
    classes = data_classes(Path(data_dir))
    return MelceptionTask(finalize_config(cfg, Path(data_dir), classes), data_dir, classes)
