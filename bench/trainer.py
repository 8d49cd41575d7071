"""What the shared trainer costs on top of a bare training loop, and how long a checkpoint takes to write.

Overhead: the same tiny regression (Linear 256->256, batch 64, SGD) trained 300 steps by `Trainer` (no
validation, no logging rows beyond every 100 steps) and by a hand-written loop; the difference per step is
the trainer's bookkeeping (schedule, finite checks, no-op scaler, progress bar). Checkpoint: `last.ckpt` of a
25M-parameter model with Adam state (3 x 100 MB of tensors) through the atomic `save_checkpoint`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.base import Config
from vgs_cli.config.train import TrainConfig
from vgs_cli.train.trainer import Trainer

STEPS, DIM, BATCH = 200, 256, 64


@dataclass(frozen=True)
class _Cfg(Config):
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=STEPS, batch_size=BATCH, lr=1e-3, eval_every=0, log_every=100))


class _Task:
    stage, best_metric, best_mode, find_unused_parameters = "bench", "", "min", False

    def __init__(self) -> None:
        self.config = _Cfg()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(BATCH * 16, DIM, generator=g)
        self.y = torch.randn(BATCH * 16, DIM, generator=g)

    def build_models(self) -> dict[str, nn.Module]:
        return {"model": nn.Linear(DIM, DIM)}

    def build_optimizers(self, models: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.SGD(models["model"].parameters(), lr=1e-3)}

    def train_dataset(self) -> TensorDataset:
        return TensorDataset(self.x, self.y)

    def valid_dataset(self) -> None:
        return None

    def train_step(self, models: dict[str, nn.Module], batch: Any, ctx: Any) -> dict[str, float]:
        x, y = batch
        loss = F.mse_loss(models["model"](x), y)
        ctx.backward("main", loss)
        return {"loss": loss.item()}


def _bare_loop(task: _Task) -> float:
    model = nn.Linear(DIM, DIM)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(task.train_dataset(), batch_size=BATCH, shuffle=True, drop_last=True)
    t0, done = time.perf_counter(), 0
    while done < STEPS:
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            done += 1
            if done == STEPS:
                break
    return (time.perf_counter() - t0) / STEPS


def _trainer_step(task: _Task) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        Trainer(task, Path(tmp) / "run", device="cpu").fit()
        return (time.perf_counter() - t0) / STEPS  # includes set-up and the final last.ckpt


def _save_seconds() -> tuple[float, float]:
    big = nn.Sequential(*[nn.Linear(2500, 2500) for _ in range(4)])  # 25M params
    opt = torch.optim.Adam(big.parameters())
    big(torch.randn(2, 2500)).sum().backward()
    opt.step()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = save_checkpoint(Path(tmp) / "last.ckpt", stage="bench", config={}, state_dict=big.state_dict(),
                               train_state={"optimizers": {"main": opt.state_dict()}})
        return time.perf_counter() - t0, path.stat().st_size / 1e6


def rows() -> list[tuple[str, float, str]]:
    task = _Task()
    # Alternate and keep the best of 3: on a shared machine the minimum is the least disturbed estimate.
    bare, trained = min(_bare_loop(task) for _ in range(3)), min(_trainer_step(task) for _ in range(3))
    save_s, size_mb = _save_seconds()
    return [
        (f"bare loop step (Linear {DIM}, batch {BATCH})", bare * 1e3, "ms"),
        (f"Trainer step, same task ({STEPS} steps incl. set-up)", trained * 1e3, "ms"),
        ("Trainer overhead per step", (trained - bare) * 1e3, "ms"),
        (f"save last.ckpt, 25M params + Adam ({size_mb:.0f} MB)", save_s, "s"),
    ]


if __name__ == "__main__":
    for row in rows():
        print(row)
