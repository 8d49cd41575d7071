"""What the trainer puts into `train_state` and how a resumed run gets every piece of it back.

    train_state = {step, epoch, batch_in_epoch, world_size, best,
                   optimizers: {name: state_dict}, schedulers: {name: {base_lrs}}, scalers: {name: state_dict},
                   rng: [per-rank {torch, numpy, python, cuda?}], models: {name: state_dict}}

`models` holds the trainable models other than "model" (discriminators); frozen helpers are rebuilt by the
task. Everything is tensors / numbers / strings, so `torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vgs_cli.checkpoint import load_checkpoint
from vgs_cli.errors import CheckpointError
from vgs_cli.loading.models import load_state_strict
from vgs_cli.train import distributed as D
from vgs_cli.train.trainer_utils import note, rng_state, seed_everything, set_rng_state
from vgs_cli.train.trainer_view import TrainerView


def task_extra(task: Any) -> dict[str, Any]:
    """The task's provenance (`checkpoint_extra()`, optional)."""
    fn = getattr(task, "checkpoint_extra", None)
    return dict(fn() or {}) if callable(fn) else {}


def train_state(t: TrainerView) -> dict[str, Any]:
    """Trainer `t`'s resumable state. Collective: every rank must call it (RNG states are gathered)."""
    return {
        "step": t.step, "epoch": t.epoch, "batch_in_epoch": t.batch_in_epoch,
        "world_size": t.env.world_size, "best": t.best,
        "optimizers": {n: o.state_dict() for n, o in t.optimizers.items()},
        "schedulers": {n: s.state_dict() for n, s in t.schedules.items()},
        "scalers": {n: s.state_dict() for n, s in t.scalers.items()},
        "rng": D.all_gather_objects(rng_state()),
        "models": {n: m.state_dict() for n, m in t.bare.items() if n != "model" and n in t.trainable},
    }


def restore(t: TrainerView, path: Path) -> None:
    """Load `path` (a last.ckpt of the task's stage) into trainer `t`: weights, optimisers, schedules,
    scalers, best value, position in the data and this rank's RNG streams."""
    ckpt = load_checkpoint(path, stage=t.task.stage)
    ts = ckpt.get("train_state")
    if not isinstance(ts, dict):
        raise CheckpointError(f"{path}: has no training state to resume from (an inference-only checkpoint?)")
    load_state_strict(t.bare["model"], ckpt["state_dict"], f"{path} (model)")
    for name, sd in ts.get("models", {}).items():
        if name in t.bare:
            load_state_strict(t.bare[name], sd, f"{path} ({name})")
    missing = sorted(set(t.optimizers) - set(ts["optimizers"]))
    if missing:
        raise CheckpointError(f"{path}: no state for optimiser(s) {', '.join(missing)}")
    for name, opt in t.optimizers.items():
        opt.load_state_dict(ts["optimizers"][name])
        t.schedules[name].load_state_dict(ts["schedulers"][name])
        if ts["scalers"].get(name):
            t.scalers[name].load_state_dict(ts["scalers"][name])
    t.step, t.best = int(ts["step"]), ts.get("best")
    t.last_valid = dict(ckpt.get("extra", {}).get("metrics", {}))
    rngs = ts["rng"]
    if int(ts.get("world_size", 1)) == t.env.world_size and len(rngs) == t.env.world_size:
        set_rng_state(rngs[t.env.rank])
        t.epoch, t.batch_in_epoch = int(ts["epoch"]), int(ts["batch_in_epoch"])
        return
    # another process count: the data order cannot be continued, so start the next epoch afresh
    seed_everything(t.cfg.seed + t.env.rank + t.step)
    t.epoch, t.batch_in_epoch = int(ts["epoch"]) + 1, 0
    if t.env.is_main:
        note(f"resuming with {t.env.world_size} processes instead of {ts.get('world_size')}: "
             "the data order restarts at a new epoch")
