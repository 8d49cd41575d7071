"""Settings of the shared trainer, embedded in every trainable stage's config as `train`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vgs_cli.config.base import Config


@dataclass(frozen=True)
class TrainConfig(Config):
    steps: int = 1000  # optimiser steps (after gradient accumulation)
    batch_size: int = 8  # per process and per micro-batch
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 0.0  # 0 disables; max global L2 norm otherwise
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    eval_every: int = 200
    eval_batches: int = 0  # 0 = the whole valid split
    ckpt_every: int = 0  # 0 = only last/best; N = also keep step checkpoints every N steps
    keep_last: int = 3  # how many step checkpoints to keep
    log_every: int = 10
    num_workers: int = 0
    seed: int = 0
    # early stopping: end the run after this many validations without a better best_metric (0 = never)
    patience: int = 0

    @property
    def effective_batch(self) -> int:
        """Samples per optimiser step in one process."""
        return self.batch_size * self.grad_accum
