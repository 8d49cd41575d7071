"""Toy stages for the trainer tests: linear regression and a two-optimiser GAN, on synthetic tensors.

Shaped like a real stage module (PRESETS, CONFIG_CLASS, make_task), so `train/runner.py` and
`loading/models.py` can be exercised without the real stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vgs_cli.config.base import Config
from vgs_cli.config.train import TrainConfig


@dataclass(frozen=True)
class ToyModelConfig(Config):
    in_dim: int = 4
    out_dim: int = 2


@dataclass(frozen=True)
class ToyDataConfig(Config):
    n_train: int = 64
    n_valid: int = 20
    noise: float = 0.01
    seed: int = 1234
    augment: float = 0.0  # std of input noise drawn from the global RNG in __getitem__


@dataclass(frozen=True)
class ToyConfig(Config):
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=20, batch_size=8, lr=0.05, eval_every=10,
                                                                   log_every=5))
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    kind: Literal["regression", "gan"] = "regression"
    optimizer: Literal["sgd", "adam"] = "sgd"
    nan_at_step: int = -1  # make the loss NaN at this step (tests the non-finite guard)


PRESETS = {"tiny": ToyConfig(), "vas": ToyConfig(model=ToyModelConfig(in_dim=8)),
           "vggsound": ToyConfig(model=ToyModelConfig(in_dim=16))}
CONFIG_CLASS = ToyConfig


class ToyModel(nn.Module):
    """`Tensor[B, in_dim] -> Tensor[B, out_dim]`."""

    def __init__(self, cfg: ToyModelConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(cfg.in_dim, cfg.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class ToyData(Dataset):
    """y = x W + b + noise, fixed by `seed`; items are dicts like the real shard datasets."""

    def __init__(self, cfg: ToyConfig, n: int, offset: int) -> None:
        g = torch.Generator().manual_seed(cfg.data.seed)
        w = torch.randn(cfg.model.in_dim, cfg.model.out_dim, generator=g)
        x = torch.randn(offset + n, cfg.model.in_dim, generator=g)[offset:]
        self.x = x
        self.y = x @ w + 0.5 + cfg.data.noise * torch.randn(n, cfg.model.out_dim, generator=g)
        self.augment = cfg.data.augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.x[i]
        if self.augment > 0:
            x = x + self.augment * torch.randn_like(x)
        return {"x": x, "y": self.y[i], "index": i}


class RegressionTask:
    stage = "toy"
    best_metric = "loss"
    best_mode = "min"
    find_unused_parameters = False

    def __init__(self, cfg: ToyConfig, data_dir: Path | None = None) -> None:
        self.config = cfg
        self.data_dir = data_dir
        self.validation_calls: list[int] = []

    def build_models(self) -> dict[str, nn.Module]:
        return {"model": ToyModel(self.config.model)}

    def _opt(self, params: Any) -> torch.optim.Optimizer:
        t = self.config.train
        if self.config.optimizer == "adam":
            return torch.optim.Adam(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay)

    def build_optimizers(self, models: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"main": self._opt(models["model"].parameters())}

    def train_dataset(self) -> Dataset:
        return ToyData(self.config, self.config.data.n_train, 0)

    def valid_dataset(self) -> Dataset | None:
        return ToyData(self.config, self.config.data.n_valid, self.config.data.n_train)

    def train_step(self, models: dict[str, nn.Module], batch: dict[str, Any], ctx: Any) -> dict[str, float]:
        with ctx.autocast():
            pred = models["model"](batch["x"])
        loss = F.mse_loss(pred.float(), batch["y"])
        if ctx.step == self.config.nan_at_step:
            loss = loss * float("nan")
        ctx.backward("main", loss)
        return {"loss": loss.item()}

    def eval_step(self, models: dict[str, nn.Module], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        pred = models["model"](batch["x"]).float()
        return {"loss": ((pred - batch["y"]) ** 2).mean(-1), "_pred": pred, "_target": batch["y"]}

    def summarize_eval(self, collected: dict[str, torch.Tensor]) -> dict[str, float]:
        # The same MSE from the concatenated outputs: must equal the trainer's per-sample average.
        return {"mse_collected": float(((collected["_pred"] - collected["_target"]) ** 2).mean()),
                "n_collected": float(len(collected["_pred"]))}

    def on_validation_end(self, models: dict[str, nn.Module], run_dir: Any, step: int,
                          metrics: dict[str, float]) -> dict[str, float]:
        self.validation_calls.append(step)
        (Path(run_dir) / "samples").mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "samples" / f"step_{step}.txt").write_text(f"{metrics['loss']}\n")
        return {}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"data_seed": self.config.data.seed, "classes": ["a", "b"]}


class GanTask(RegressionTask):
    """Generator = ToyModel, discriminator = Linear(out_dim -> 1), plus a frozen helper that must stay in
    eval mode and out of the train state. Discriminator first, then generator (the codebook/vocoder order)."""

    best_metric = "loss"

    def __init__(self, cfg: ToyConfig, data_dir: Path | None = None) -> None:
        super().__init__(cfg, data_dir)
        self.frozen_modes: list[bool] = []

    def build_models(self) -> dict[str, nn.Module]:
        frozen = nn.Sequential(nn.Linear(self.config.model.out_dim, 1), nn.Dropout(0.5))
        frozen.requires_grad_(False)
        return {"model": ToyModel(self.config.model), "disc": nn.Linear(self.config.model.out_dim, 1),
                "frozen": frozen}

    def build_optimizers(self, models: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"disc": self._opt(models["disc"].parameters()), "gen": self._opt(models["model"].parameters())}

    def train_step(self, models: dict[str, nn.Module], batch: dict[str, Any], ctx: Any) -> dict[str, float]:
        self.frozen_modes.append(models["frozen"].training)
        fake = models["model"](batch["x"])
        d_loss = gan_d_loss(models["disc"], batch["y"], fake.detach())
        ctx.backward("disc", d_loss)
        g_loss = gan_g_loss(ctx.unwrap(models["disc"]), batch["y"], fake)
        ctx.backward("gen", g_loss)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


def gan_d_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean()


def gan_g_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-disc(fake)).mean() + F.mse_loss(fake, real)


def make_task(cfg: ToyConfig, data_dir: Path | None = None, **opts: Any) -> RegressionTask:
    if opts:
        raise TypeError(f"unexpected stage options {sorted(opts)}")
    return GanTask(cfg, data_dir) if cfg.kind == "gan" else RegressionTask(cfg, data_dir)
