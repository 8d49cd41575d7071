"""The shared trainer: one loop for every trainable stage, single-process or under `torchrun` (DDP).

`Trainer(task, run_dir, device=None).fit() -> dict` does device placement, DDP wrapping (every model with
trainable parameters), DistributedSampler + an infinite loader cycling over epochs, mixed precision
(fp32 / bf16 autocast / fp16 autocast + GradScaler on CUDA), gradient accumulation (DDP `no_sync` on the
non-boundary micro-batches), clipping, a step-based LR schedule, validation averaged over the whole valid
split on all ranks, checkpoints (last / best / step_<N> with keep-last-N), exact resume (model, optimisers,
schedules, scalers, per-rank RNG, data position) and rank-0-only logging. See `train/task.py` for the task
side of the contract.

Run folder: `config.json`, `metrics.jsonl`, `checkpoints/{last,best,step_<N>}.ckpt`, `tb/` (if tensorboard
is installed), plus whatever the task's `on_validation_end` writes (samples/).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from vgs_cli import __version__
from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.train import TrainConfig
from vgs_cli.errors import Interrupted, VgsError
from vgs_cli.fsutil import write_json
from vgs_cli.train import distributed as D
from vgs_cli.train.checkpointing import restore, task_extra, train_state
from vgs_cli.train.evaluation import validate
from vgs_cli.train.init import InitSource, load_init
from vgs_cli.train.trainer_utils import (
    MetricsLog,
    StepSchedule,
    deferred_sigint,
    note,
    prune_step_checkpoints,
    seed_everything,
    to_device,
)
from vgs_cli.train.trainer_view import ValidSet


class NonFiniteLoss(VgsError):
    """Raised on every rank when a loss (or a logged term) is NaN/inf; nothing is saved after it."""


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DDP) else model


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class StepContext:
    """What `Task.train_step` receives (see `train/task.py`).

    `backward(name, loss)` accumulates gradients ONLY into the parameters of optimiser `name`
    (`torch.autograd.backward(inputs=...)`), so a generator loss never leaks gradients into the
    discriminator. Under DDP, a module whose weights are not being updated by this backward must be called
    through `ctx.unwrap(models[...])` in that forward (e.g. the discriminator inside the generator loss);
    calling it through its DDP wrapper would leave DDP waiting for gradients that never come.
    """

    def __init__(self, trainer: "Trainer") -> None:
        self._t = trainer
        self.step = 0
        self.device = trainer.env.device
        self.world_size = trainer.env.world_size
        self.boundary = True  # last micro-batch of the accumulation window

    def autocast(self) -> Any:
        return self._t.autocast()

    def unwrap(self, model: nn.Module) -> nn.Module:
        return unwrap(model)

    def backward(self, optimizer: str, loss: torch.Tensor) -> None:
        t = self._t
        if optimizer not in t.optimizers:
            raise KeyError(f"backward: unknown optimiser {optimizer!r} (have {sorted(t.optimizers)})")
        if D.any_rank(not bool(torch.isfinite(loss.detach()).all()), self.device):
            raise NonFiniteLoss(t.nonfinite_message(optimizer, self.step))
        scaler = t.scalers[optimizer]
        torch.autograd.backward(scaler.scale(loss / t.cfg.grad_accum), inputs=t.params[optimizer])
        if self.boundary:
            t.optimizer_step(optimizer)


class Trainer:
    def __init__(self, task: Any, run_dir: str | Path, device: str | torch.device | None = None,
                 meta: dict[str, Any] | None = None, init: InitSource | None = None) -> None:
        """`meta` (preset, data folder, stage options ...) is written into `config.json` as provenance;
        `init` (`--init`, train/init.py) gives a new run its starting weights."""
        self.task = task
        self.init = init
        self.run_dir = Path(run_dir)
        self.cfg: TrainConfig = task.config.train
        self.meta = dict(meta or {})
        self.env = D.init_distributed(device)
        self._check_precision()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.log = MetricsLog(self.run_dir, enabled=False)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: float | None = None
        self.stale = 0  # validations since the last improvement (early stopping: train.patience)
        self.last_valid: dict[str, float] = {}
        self.valid = ValidSet(task)  # the valid split, built at the first validation
        self.last_train: dict[str, float] = {}
        self.saved_last = False
        self.grad_norms: dict[str, list[torch.Tensor]] = {}

    # ----------------------------------------------------------------------------------------- set-up
    def _check_precision(self) -> None:
        p, dev = self.cfg.precision, self.env.device
        if p == "fp16" and dev.type != "cuda":
            raise VgsError("precision fp16 needs a CUDA GPU (loss scaling); use bf16 or fp32 on CPU")
        if p == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise VgsError("this GPU does not support bf16; use fp16 or fp32")
        if p == "bf16" and dev.type == "cpu" and self.env.is_main:
            from vgs_cli.cpu import cpu_info

            if not cpu_info().bf16:  # oneDNN emulates bf16 there: ~4x slower than fp32 (issue 28's probe)
                note(f"note: this CPU has no native bf16 ({cpu_info().summary()}): --precision bf16 runs "
                     "emulated, slower than fp32")

    def autocast(self) -> Any:
        p = self.cfg.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(device_type=self.env.device.type, dtype=dtype)

    def _build(self) -> None:
        seed_everything(self.cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.bare = {k: m.to(self.env.device) for k, m in self.task.build_models().items()}
        if "model" not in self.bare:
            raise VgsError(f"task {self.task.stage!r}: build_models() must return a 'model' entry")
        if self.init is not None:  # weights only: the optimisers below start fresh
            load_init(self.bare, self.init, getattr(self.task, "adapt_init_state", None))
        prepare = getattr(self.task, "prepare_models", None)  # e.g. LoRA wrapping, freezing (every run)
        if callable(prepare):
            prepare(self.bare)
        self.optimizers = dict(self.task.build_optimizers(self.bare))
        self.params = {n: [p for g in o.param_groups for p in g["params"] if p.requires_grad]
                       for n, o in self.optimizers.items()}
        self.schedules = {n: StepSchedule(o, self.cfg) for n, o in self.optimizers.items()}
        use_scaler = self.cfg.precision == "fp16"
        self.scalers = {n: torch.amp.GradScaler("cuda", enabled=use_scaler) for n in self.optimizers}
        self.trainable = {k for k, m in self.bare.items() if _trainable(m)}
        self.models: dict[str, nn.Module] = {}
        for name, m in self.bare.items():
            if name in self.trainable and self.env.distributed:
                ids = [self.env.device.index] if self.env.device.type == "cuda" else None
                m = DDP(m, device_ids=ids,
                        find_unused_parameters=bool(getattr(self.task, "find_unused_parameters", False)))
            self.models[name] = m
        self._set_train_mode()

    def _set_train_mode(self) -> None:
        """Trainable models train; frozen helpers (perceptual nets, a frozen codebook) stay in eval mode."""
        for name, m in self.bare.items():
            m.train(name in self.trainable)

    def _loader(self) -> Iterator[Any]:
        ds = self.task.train_dataset()
        env, cfg = self.env, self.cfg
        self.sampler = D.ResumableSampler(ds, num_replicas=env.world_size, rank=env.rank, seed=cfg.seed)
        if self.sampler.num_samples < cfg.batch_size:
            raise VgsError(f"the training split has {len(ds)} samples; one batch needs batch_size x processes = "
                           f"{cfg.batch_size} x {env.world_size} (lower --batch-size)")
        self.sampler.start = self.batch_in_epoch * cfg.batch_size
        # The loader draws its worker base seed from this generator, not from the global RNG, and we reseed it
        # per epoch: a resumed run then sees exactly the random stream of an uninterrupted one.
        seeds = torch.Generator()
        loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.num_workers,
                            drop_last=True, pin_memory=env.device.type == "cuda", generator=seeds)
        while True:
            self.sampler.set_epoch(self.epoch)
            seeds.manual_seed(cfg.seed * 1_000_003 + self.epoch * 1009 + env.rank)
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    # ----------------------------------------------------------------------------------------- resume
    def _resume(self) -> bool:
        path = self.ckpt_dir / "last.ckpt"
        found = path.is_file()
        D.barrier()  # every rank decided before rank 0 can write anything
        if not found:
            return False
        restore(self, path)
        return True

    # ----------------------------------------------------------------------------------------- fit
    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to `train.steps` (resuming from `checkpoints/last.ckpt` if present) and return
        `{"step": N, <final validation metrics>, "train/<term>": <last logged train value>}`.

        `stop_at` ends this invocation early at that global step, as if interrupted right after a
        checkpoint (tests use it; a later `fit()` resumes)."""
        try:
            return self._fit(stop_at)
        finally:
            self.log.close()
            if self.env.created:  # a group the runner (or a script) started is theirs to end
                D.destroy()

    def _fit(self, stop_at: int | None) -> dict[str, Any]:
        self._build()
        resumed = self._resume()
        main = self.env.is_main
        if main:  # temp files of a run killed mid-write (kill -9): only this run writes into its folder
            for stale in [*self.ckpt_dir.glob(".*.ckpt.*.tmp"), *self.run_dir.glob(".config.json.*.tmp")]:
                stale.unlink(missing_ok=True)
        if resumed and self.step >= self.cfg.steps:
            if main:
                note(f"{self.run_dir}: already trained for {self.step} steps (train.steps = {self.cfg.steps}); "
                     "nothing to do")
            return self._result()
        if not resumed:
            seed_everything(self.cfg.seed + self.env.rank)  # per-rank augmentation randomness
        if main:
            self._write_run_config()
            note(f"{'resuming' if resumed else 'training'} {self.task.stage} at step {self.step}/"
                 f"{self.cfg.steps} on {self.env.world_size} x {self.env.device.type} -> {self.run_dir}")
        self.log = MetricsLog(self.run_dir, enabled=main)
        target = self.cfg.steps if stop_at is None else min(self.cfg.steps, stop_at)
        self._loop(target)
        return self._result()

    def _loop(self, target: int) -> None:
        cfg, ctx = self.cfg, StepContext(self)
        batches = self._loader()
        bar = _progress(self.env.is_main, self.task.stage, self.step, cfg.steps)
        window: list[dict[str, float]] = []
        t0, steps0 = time.perf_counter(), self.step
        try:
            with deferred_sigint() as sigint:
                while self.step < target:
                    window.append(self._train_step(ctx, batches))
                    self.step += 1
                    bar.update(1)
                    if cfg.log_every > 0 and self.step % cfg.log_every == 0:
                        self._log_train(window, time.perf_counter() - t0, self.step - steps0, bar)
                        window, t0, steps0 = [], time.perf_counter(), self.step
                    if self.step == target or (cfg.eval_every > 0 and self.step % cfg.eval_every == 0):
                        self._validate_and_save()
                        if 0 < cfg.patience <= self.stale:
                            if self.env.is_main:
                                note(f"early stop at step {self.step}: no better valid {self.task.best_metric} "
                                     f"in {self.stale} validations (train.patience = {cfg.patience})")
                            break
                    if cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0:
                        self._save_step_checkpoint()
                    if D.any_rank(sigint.hit, self.env.device) and self.step < target:
                        self._save("last.ckpt", self._train_state())  # collective; then every rank stops
                        raise Interrupted(f"at step {self.step}/{cfg.steps}; {self.ckpt_dir / 'last.ckpt'} saved; "
                                          "re-run the same command to resume")
        finally:
            bar.close()

    def _train_step(self, ctx: StepContext, batches: Iterator[Any]) -> dict[str, float]:
        ctx.step = self.step
        for sched in self.schedules.values():
            sched.apply(self.step)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        ddp_models = [m for m in self.models.values() if isinstance(m, DDP)]
        for i in range(self.cfg.grad_accum):
            batch = to_device(next(batches), self.env.device)
            ctx.boundary = i == self.cfg.grad_accum - 1
            with contextlib.ExitStack() as stack:
                if not ctx.boundary:  # gradients are only all-reduced on the last micro-batch
                    for m in ddp_models:
                        stack.enter_context(m.no_sync())
                out = self.task.train_step(self.models, batch, ctx) or {}
            values = {k: float(v) for k, v in out.items()}
            bad = next((k for k, v in values.items() if not math.isfinite(v)), None)
            if D.any_rank(bad is not None, self.env.device):
                raise NonFiniteLoss(self.nonfinite_message(bad or "?", self.step))
            for k, v in values.items():
                totals[k] = totals.get(k, 0.0) + v / self.cfg.grad_accum
        return totals

    def optimizer_step(self, name: str) -> None:
        """Unscale, clip, step and zero one optimiser (called by `StepContext.backward` on the boundary)."""
        opt, scaler = self.optimizers[name], self.scalers[name]
        if self.cfg.grad_clip > 0:
            scaler.unscale_(opt)
            norm = torch.nn.utils.clip_grad_norm_(self.params[name], self.cfg.grad_clip)
            self.grad_norms.setdefault(name, []).append(norm.detach())
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    def nonfinite_message(self, what: str, step: int) -> str:
        last = self.ckpt_dir / "last.ckpt"
        where = str(last) if last.is_file() else "none written yet"
        return f"non-finite loss {what!r} at step {step}; last good checkpoint: {where}"

    # ----------------------------------------------------------------------------------------- logging
    def _log_train(self, window: list[dict[str, float]], seconds: float, steps: int, bar: Any) -> None:
        keys = sorted({k for row in window for k in row})
        local = {k: [sum(r[k] for r in window if k in r), sum(1 for r in window if k in r)] for k in keys}
        merged: dict[str, list[float]] = {}
        for part in D.all_gather_objects(local):
            for k, (s, n) in part.items():
                acc = merged.setdefault(k, [0.0, 0])
                acc[0], acc[1] = acc[0] + s, acc[1] + n
        terms = {k: s / max(n, 1) for k, (s, n) in merged.items()}
        for name, norms in self.grad_norms.items():
            terms[f"grad_norm_{name}"] = float(torch.stack(norms).float().mean())
        self.grad_norms = {}
        lrs = {n: o.param_groups[0]["lr"] for n, o in self.optimizers.items()}
        samples = steps * self.cfg.effective_batch * self.env.world_size
        row = {"step": self.step, "split": "train", **terms, "lr": next(iter(lrs.values()), 0.0),
               **({f"lr_{n}": v for n, v in lrs.items()} if len(lrs) > 1 else {}),
               "samples_per_s": samples / max(seconds, 1e-9), "epoch": self.epoch}
        self.last_train = terms
        self.log.write(row)
        shown = {k: f"{v:.4g}" for k, v in list(terms.items())[:3]}
        bar.set_postfix(**shown, sps=f"{row['samples_per_s']:.1f}")

    # ----------------------------------------------------------------------------------------- eval/ckpt
    def _validate_and_save(self) -> None:
        metrics = validate(self)
        self._set_train_mode()
        self.last_valid = metrics
        improved = self._is_improvement(metrics)
        if metrics and self.env.is_main:
            self.log.write({"step": self.step, "split": "valid", **metrics, "best": improved})
            note(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        state = self._train_state()  # collective (gathers RNG): every rank takes part
        if improved:
            self.best = float(metrics[self.task.best_metric])
            state["best"] = self.best
        self.stale = 0 if improved or not metrics else self.stale + 1
        self._save("last.ckpt", state)
        if improved:
            self._save("best.ckpt", None)

    def _is_improvement(self, metrics: dict[str, float]) -> bool:
        key = getattr(self.task, "best_metric", "")
        if not key or key not in metrics or not math.isfinite(metrics[key]):
            return False
        if self.best is None:
            return True
        return metrics[key] > self.best if getattr(self.task, "best_mode", "min") == "max" else metrics[key] < self.best

    def _save_step_checkpoint(self) -> None:
        self._save(f"step_{self.step}.ckpt", self._train_state())
        if self.env.is_main:
            prune_step_checkpoints(self.ckpt_dir, self.cfg.keep_last)

    def _train_state(self) -> dict[str, Any]:
        return train_state(self)  # collective (gathers every rank's RNG)

    def _save(self, name: str, train_state: dict[str, Any] | None) -> None:
        """Rank 0 writes atomically; weights that went non-finite are never written over a good file."""
        model = self.bare["model"]
        bad = any(not bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point())
        if D.any_rank(bad, self.env.device):
            raise NonFiniteLoss(self.nonfinite_message("weights", self.step))
        if not self.env.is_main:
            return
        extra = {**task_extra(self.task), "step": self.step, "metrics": dict(self.last_valid)}
        if self.init is not None:
            extra["init"] = self.init.record
        save_checkpoint(self.ckpt_dir / name, stage=self.task.stage, config=self.task.config.to_dict(),
                        state_dict=model.state_dict(), extra=extra, train_state=train_state)

    def _write_run_config(self) -> None:
        write_json(self.run_dir / "config.json", {
            "stage": self.task.stage, "vgs_version": __version__, "config": self.task.config.to_dict(),
            "provenance": task_extra(self.task), "world_size": self.env.world_size, **self.meta,
            **({"init": self.init.record} if self.init is not None else {}),
        })

    def _result(self) -> dict[str, Any]:
        return {"step": self.step, **self.last_valid, **{f"train/{k}": v for k, v in self.last_train.items()}}


def _progress(enabled: bool, stage: str, initial: int, total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=stage, disable=not enabled, dynamic_ncols=True,
                mininterval=0.5, leave=True)
