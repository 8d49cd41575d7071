"""Process-group plumbing shared by training and batch generation: one code path for one process and `torchrun`.

`torchrun --nproc_per_node N` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; we read them,
pick gloo on CPU and nccl on CUDA, and pin each process to `cuda:LOCAL_RANK`. Without those variables
everything below degrades to no-ops, so callers never branch on "am I distributed" beyond asking
`world_size > 1`. (Shared level: `train/` and `generate/` both use it and must not import each other.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from vgs_cli.errors import VgsError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    created: bool = False  # this call started the process group, so its caller should destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise VgsError(f"environment variable {name}={raw!r} is not an integer") from None


def available_devices() -> list[str]:
    """The devices `--device` accepts here: "cpu", then "cuda:0".. for each visible GPU."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(n))]


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """`None` -> cuda when available else cpu; "cuda" -> this process's GPU; bad names -> VgsError."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise VgsError(f"unknown device {device!r} (this machine has: {', '.join(available_devices())})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise VgsError(f"device {device!r} requested but this machine has no usable CUDA GPU "
                           f"(it has: {', '.join(available_devices())}; use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise VgsError(f"device {device!r} does not exist (this machine has: {', '.join(available_devices())})")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise VgsError(f"unsupported device {device!r} (this machine has: {', '.join(available_devices())})")
    return dev


def init_distributed(device: str | torch.device | None = None, timeout: timedelta | None = None) -> DistEnv:
    """Join the process group described by the torchrun environment (idempotent) and pick the device.

    Whoever gets `created=True` owns the group and destroys it when done. Create it once per process:
    re-initialising after a destroy under torchrun can meet stale rendezvous keys in the agent's store.
    `timeout` bounds every collective (torch's default otherwise: 10-30 min); a rank waiting for slower
    ones at a final barrier needs more."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    dev = resolve_device(device, local_rank)
    created = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend, "rank": rank, "world_size": world}
        if timeout is not None:
            kwargs["timeout"] = timeout
        if dev.type == "cuda":
            kwargs["device_id"] = dev  # lets nccl bind eagerly; avoids a warning on the first barrier
        dist.init_process_group(**kwargs)
        created = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev, created=created)


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order; `[obj]` without a process group."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on any rank: every rank takes the same branch (no one hangs in a collective)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
