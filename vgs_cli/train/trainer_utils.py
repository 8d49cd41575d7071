"""Small pieces of the trainer that are easiest to test on their own: the LR schedule, RNG capture and
restore (as plain tensors/lists so `torch.load(weights_only=True)` reads them back), the metrics log,
step-checkpoint pruning and the deferred Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from vgs_cli.config.train import TrainConfig
from vgs_cli.fsutil import raise_output_error


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base LR for the optimiser step that follows `step` completed steps.

    Linear warmup from 1/warmup to 1 over `warmup_steps`, then constant, cosine to 0 or linear to 0 at
    `cfg.steps`.
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


class StepSchedule:
    """Sets every param group's lr to `initial_lr * lr_factor(step)`; the state is just the base LRs.

    Unlike `torch.optim.lr_scheduler`, the LR is a pure function of the global step, so an optimiser that
    sits idle for a while (a discriminator before it starts) stays on the same schedule as the others.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.base_lrs = [float(g.setdefault("initial_lr", g["lr"])) for g in optimizer.param_groups]

    def apply(self, step: int) -> float:
        factor = lr_factor(step, self.cfg)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["initial_lr"] = base


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to `device`; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """torch (CPU + CUDA), numpy and python RNG states as tensors / numbers (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    pyst = state["python"]
    random.setstate((pyst["version"], tuple(int(x) for x in pyst["state"].tolist()), pyst["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (validation, sampling) without disturbing the training RNG streams, so how often one
    validates never changes the training trajectory (and resumed runs match uninterrupted ones)."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


class MetricsLog:
    """Appends one JSON object per event to `metrics.jsonl`; mirrors it to TensorBoard and, after each
    validation, the step's samples and `curves.png` (train/watch.py)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        from vgs_cli.train.watch import Watch

        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.watch = Watch(run_dir, enabled)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {k: finite_or_none(v) if isinstance(v, float) else v for k, v in row.items()}
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, default=_json_default) + "\n")
        except OSError as exc:  # a full disk: one line naming metrics.jsonl (the checkpoints are intact)
            raise_output_error(exc, self.path)
            raise
        self.watch.scalars(row)
        if row.get("split") == "valid":
            self.watch.after_validation(int(row["step"]))

    def close(self) -> None:
        self.watch.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN/inf: write them as null."""
    return value if math.isfinite(value) else None


_STEP_RE = re.compile(r"^step_(\d+)\.ckpt$")


def prune_step_checkpoints(ckpt_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` `step_<N>.ckpt` files (0 keeps all); returns the deleted paths."""
    if keep_last <= 0:
        return []
    found = sorted((int(m.group(1)), p) for p in ckpt_dir.glob("step_*.ckpt") if (m := _STEP_RE.match(p.name)))
    doomed = [p for _, p in found[: max(0, len(found) - keep_last)]]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def note(message: str) -> None:
    """A one-line status message on stderr (rank 0 decides whether to call it); tqdm.write keeps an active
    progress bar intact."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


class SigintFlag:
    """`hit` turns True on the first Ctrl-C (SIGINT); see `deferred_sigint`."""

    hit = False


@contextlib.contextmanager
def deferred_sigint() -> Iterator[SigintFlag]:
    """While inside, a first Ctrl-C only sets `flag.hit` (the training loop saves last.ckpt at the end of the
    step, so the weights are never caught half-updated); a second one interrupts at once. Outside the main
    thread (where signals cannot be caught) the flag simply stays False."""
    flag = SigintFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.hit:
            raise KeyboardInterrupt
        flag.hit = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
