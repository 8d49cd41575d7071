"""Validation for the shared trainer: per-sample metrics averaged over the whole valid split on all ranks.

Each rank evaluates a disjoint slice (rank r takes samples r, r+W, ...; no padding, so nothing is counted
twice), sums per-sample values and counts, and the sums are added across ranks: the result equals a
single-process average over the same samples. Keys starting with "_" are concatenated instead and handed
to `task.summarize_eval`. Models are called unwrapped (no DDP collectives inside eval, so ranks may run
different numbers of batches) and the RNG streams are restored afterwards.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from vgs_cli.train import distributed as D
from vgs_cli.train.trainer_utils import preserved_rng, to_device
from vgs_cli.train.trainer_view import TrainerView


def validate(trainer: TrainerView) -> dict[str, float]:
    """Run `task.eval_step` over the valid split (its first `train.eval_batches` batches when > 0, split
    over the ranks) and return the metrics, identical on every rank. `{}` without validation data."""
    task, env, cfg = trainer.task, trainer.env, trainer.cfg
    ds = trainer.valid.get()
    if ds is None or len(ds) == 0:
        return {}
    # eval_batches counts batches of the whole split, so N processes see the same samples as one process
    limit = -(-cfg.eval_batches // env.world_size) if cfg.eval_batches > 0 else 0
    loader = DataLoader(ds, batch_size=cfg.batch_size,
                        sampler=D.ShardSampler(len(ds), num_replicas=env.world_size, rank=env.rank),
                        num_workers=cfg.num_workers, pin_memory=env.device.type == "cuda")
    models = trainer.bare
    for m in models.values():
        m.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    collected: dict[str, list[torch.Tensor]] = {}
    with preserved_rng(), torch.no_grad():
        for i, batch in enumerate(loader):
            if limit and i >= limit:
                break
            with trainer.autocast():
                out = task.eval_step(models, to_device(batch, env.device))
            for key, value in out.items():
                value = torch.as_tensor(value).detach()
                if key.startswith("_"):
                    collected.setdefault(key, []).append(value.cpu())
                    continue
                flat = value.double().reshape(-1)
                sums[key] = sums.get(key, 0.0) + float(flat.sum())
                counts[key] = counts.get(key, 0) + flat.numel()
        local = {k: torch.cat(v) for k, v in collected.items()}
        parts = D.all_gather_objects((sums, counts, local))
        metrics = _merge(task, parts)
        hook = getattr(task, "on_validation_end", None)
        if env.is_main and callable(hook):
            metrics.update({k: float(v) for k, v in (hook(models, trainer.run_dir, trainer.step, metrics) or {}).items()})
    return D.broadcast_object(metrics)


def _merge(task: Any, parts: list[tuple[dict, dict, dict]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    collected: dict[str, list[torch.Tensor]] = {}
    for s, c, col in parts:
        for k, v in s.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + c[k]
        for k, v in col.items():
            collected.setdefault(k, []).append(v)
    metrics = {k: sums[k] / counts[k] for k in sums if counts[k] > 0}
    summarize = getattr(task, "summarize_eval", None)
    if collected and callable(summarize):
        cat = {k: torch.cat(v) for k, v in collected.items()}
        metrics.update({k: float(v) for k, v in (summarize(cat) or {}).items()})
    return metrics
