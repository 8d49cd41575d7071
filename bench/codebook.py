"""Codebook training and coding speed on this machine.

Paper size = the VAS codebook (71.9M parameters) with a paper-size LPAPS (VGG16-style, 14.7M) and PatchGAN
(2.8M), batch 2 of 80x848 mels, both optimiser steps (discriminator, then autoencoder with the adversarial
term): one warm-up step and the mean of 2 timed steps of `CodebookTask.train_step`. Random weights: timing
does not depend on the values.
"""

from __future__ import annotations

import contextlib
import time

import torch

from vgs_cli.config.base import apply_overrides
from vgs_cli.config.codebook import PRESETS
from vgs_cli.config.vggishish import VGGishishModelConfig
from vgs_cli.models.lpaps import LPAPS
from vgs_cli.models.vggishish import VGGishish
from vgs_cli.train.codebook import CodebookTask

TIMED_STEPS = 2


class _Ctx:
    """The trainer's StepContext reduced to one process: backward, step and zero each optimiser."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        self.opts, self.step, self.device, self.world_size, self.boundary = optimizers, 10**9, torch.device("cpu"), 1, True

    def autocast(self):
        return contextlib.nullcontext()

    def backward(self, name: str, loss: torch.Tensor) -> None:
        params = [p for g in self.opts[name].param_groups for p in g["params"]]
        torch.autograd.backward(loss, inputs=params)
        self.opts[name].step()
        self.opts[name].zero_grad(set_to_none=True)

    def unwrap(self, model):
        return model


def _step_seconds(task: CodebookTask, batch: int, frames: int, timed: int = TIMED_STEPS) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per step; CPU time stays meaningful on a shared machine."""
    models = task.build_models()
    for name, m in models.items():
        m.train(name != "lpaps")
    ctx = _Ctx(task.build_optimizers(models))
    x = {"mel": torch.rand(batch, 1, 80, frames) * 2 - 1}
    task.train_step(models, x, ctx)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(timed):
        task.train_step(models, x, ctx)
    return (time.perf_counter() - t0) / timed, (time.process_time() - c0) / timed


def rows() -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    out: list[tuple[str, float, str]] = []
    tiny = apply_overrides(PRESETS["tiny"], ["loss.disc_start=0"])
    wall, cpu = _step_seconds(CodebookTask(tiny, None), 4, tiny.train_frames, timed=5)
    out.append(("tiny preset train step (batch 4, 256 frames, PatchGAN on)", wall, "s/step"))
    out.append(("  same, process CPU time", cpu, "cpu s/step"))

    paper = apply_overrides(PRESETS["vas"], ["loss.disc_start=0"])
    lpaps = LPAPS.from_vggishish(VGGishish(VGGishishModelConfig()))
    task = CodebookTask(paper, None, lpaps=lpaps, lpaps_source="random (timing only)")
    model = task.build_models()["model"].eval()
    out.append(("paper codebook parameters (VAS)", sum(p.numel() for p in model.parameters()) / 1e6, "M"))
    x = torch.rand(1, 1, 80, 848) * 2 - 1
    with torch.no_grad():
        model(x)  # warm-up
        t0 = time.perf_counter()
        model(x)
        out.append(("paper codebook encode+decode, one 10 s mel (no grad)", time.perf_counter() - t0, "s"))
    wall, cpu = _step_seconds(task, 2, 848)
    out.append(("paper codebook train step (batch 2, LPAPS + PatchGAN, D then G)", wall, "s/step"))
    out.append(("  same, process CPU time", cpu, "cpu s/step"))
    return out
