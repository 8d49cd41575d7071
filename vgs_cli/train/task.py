"""The contract between the shared trainer and a stage. A stage writes a `Task`; the trainer does the rest.

The trainer owns: device placement, DDP wrapping, DistributedSampler, DataLoaders, mixed precision,
gradient accumulation, clipping, LR schedule, validation cadence, checkpoints (last/best/every-N,
keep-last-N, resume with RNG), metrics.jsonl, progress bar, rank-0-only writing.

A task owns: its config, its models and optimisers, what one step computes, and what validation measures.

Rules the trainer (`train/trainer.py`) relies on:
- `train_step` receives the models as the trainer holds them: trainable ones DDP-wrapped under torchrun.
  `ctx.backward(name, loss)` puts gradients ONLY into optimiser `name`'s parameters (autograd `inputs=`),
  so a generator loss never leaks into the discriminator. Under DDP, a module that the current backward
  does not update must be called through `ctx.unwrap(models[...])` in that forward (e.g. the discriminator
  inside the generator loss), otherwise DDP waits for gradients that never come. Call `ctx.backward` at
  most once per optimiser per micro-batch. Losses are divided by `grad_accum` by the trainer, not by you.
- Models without trainable parameters (frozen perceptual nets, a frozen codebook) are kept in eval mode
  and never saved in the train state; the others are switched to train mode before each step.
- `eval_step` and `on_validation_end` receive the UNWRAPPED models already in eval mode, under
  `torch.no_grad()` and the configured autocast; the RNG streams are restored after validation.
- Optional hooks/attributes (missing = default): `valid_dataset` (None: no validation), `summarize_eval`,
  `on_validation_end`, `checkpoint_extra` ({}), `best_metric` ("" = no best.ckpt), `best_mode` ("min"),
  `find_unused_parameters` (False), `adapt_init_state(name, state, model) -> state` (`--init`: reshape a
  checkpoint's weights before they are loaded, e.g. a new class table), `prepare_models(models)` (after the
  `--init` weights, before the optimisers, on every run incl. resumed ones: LoRA wrapping, freezing).
- The learning rate of every param group is `initial_lr * schedule(step)`, set before each step; build
  each optimiser with its base lr (`train.lr` or your own per-optimiser value).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset


class StepContext(Protocol):
    """Passed to `Task.train_step`. Implemented by the trainer."""

    step: int  # optimiser steps completed so far
    device: torch.device
    world_size: int
    boundary: bool  # True on the last micro-batch of an accumulation window (when backward steps)

    def autocast(self) -> Any:
        """Context manager for the forward pass in the configured precision."""

    def backward(self, optimizer: str, loss: torch.Tensor) -> None:
        """Backward `loss` for optimiser `optimizer`. On the last micro-batch of an accumulation window this
        also unscales, clips, steps the optimiser and its scheduler and zeroes its grads. GAN tasks call it
        twice per step in the order they need (discriminator first, then generator)."""

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The bare module under a DDP wrapper."""


class Task(Protocol):
    stage: str  # checkpoint stage name: "codebook", "transformer", "vocoder", "melception", "vggishish"
    config: Any  # the stage's frozen Config; must have `.train` (TrainConfig) and `.model`
    best_metric: str  # a key returned by eval_step, e.g. "loss"; "" disables `best.ckpt`
    best_mode: str  # "min" or "max"
    find_unused_parameters: bool  # for DDP

    def build_models(self) -> dict[str, nn.Module]:
        """All modules. `"model"` is the inference model whose weights go to `state_dict`; the others
        (discriminators, frozen helpers) are saved in the train state only if they have trainable params."""

    def build_optimizers(self, models: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name (the names `StepContext.backward` receives)."""

    def train_dataset(self) -> Dataset: ...

    def valid_dataset(self) -> Dataset | None: ...

    def train_step(self, models: dict[str, nn.Module], batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """One micro-batch: forward, call `ctx.backward(...)` per optimiser, return scalars to log."""

    def eval_step(self, models: dict[str, nn.Module], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-sample metrics `Tensor[B]`, averaged by the trainer over the whole valid split (all ranks).
        Keys starting with "_" (e.g. "_logits" `Tensor[B, C]`, "_target" `Tensor[B]`) are instead
        concatenated over the split and handed to `summarize_eval`. Runs under `torch.no_grad()`, eval mode."""

    def summarize_eval(self, collected: dict[str, torch.Tensor]) -> dict[str, float]:
        """Split-level metrics from the concatenated "_" outputs (top-1, top-5, mAP ...); may return {}."""

    def on_validation_end(self, models: dict[str, nn.Module], run_dir: Any, step: int,
                          metrics: dict[str, float]) -> dict[str, float]:
        """Rank 0 only: write samples/images into run_dir; may return extra metrics (e.g. top-1, mAP)."""

    def checkpoint_extra(self) -> dict[str, Any]:
        """Provenance stored in every checkpoint's `extra` (data manifest hash, codebook hash, classes...)."""
