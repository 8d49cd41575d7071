"""The typed view of the trainer that its helpers (`checkpointing.py`, `evaluation.py`) work on.

`Trainer` is split over several files to keep each small; the helpers read and set only what this protocol
lists, instead of taking `Any` and reaching into (or adding) private attributes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from vgs_cli.config.train import TrainConfig
from vgs_cli.dist import DistEnv
from vgs_cli.train.task import Task
from vgs_cli.train.trainer_utils import StepSchedule


class ValidSet:
    """The task's valid split, built at the first validation and kept for the run (like the training set);
    None when the task has no `valid_dataset`."""

    def __init__(self, task: Task) -> None:
        self._task, self._built, self._ds = task, False, None

    def get(self) -> Dataset | None:
        if not self._built:
            make = getattr(self._task, "valid_dataset", None)
            self._ds, self._built = (make() if callable(make) else None), True
        return self._ds


class TrainerView(Protocol):
    """What `train_state` / `restore` / `validate` use: the task and its models, optimisation state, the
    position in the data, and where the run is written."""

    task: Task
    env: DistEnv
    cfg: TrainConfig
    run_dir: Path
    bare: dict[str, nn.Module]  # the task's models, unwrapped (no DDP)
    trainable: set[str]  # names of the models with trainable parameters
    optimizers: dict[str, torch.optim.Optimizer]
    schedules: dict[str, StepSchedule]
    scalers: dict[str, torch.amp.GradScaler]
    valid: ValidSet
    step: int
    epoch: int
    batch_in_epoch: int
    best: float | None
    last_valid: dict[str, float]

    def autocast(self) -> AbstractContextManager[Any]: ...
