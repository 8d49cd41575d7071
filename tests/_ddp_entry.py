"""Entry for tests/test_ddp.py: `torchrun --nproc_per_node 2 tests/_ddp_entry.py OUT_DIR`.

Runs the toy tasks under DDP and writes each rank's final weights (`<name>_rank<r>.pt`) and rank 0's
result (`<name>.json`) for the test to compare with single-process runs. The scenarios live in DDP_RUNS so
the test builds the single-process references from the very same configs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import _toy_task as T
import torch

from vgs_cli.config.train import TrainConfig
from vgs_cli.train import distributed as D
from vgs_cli.train.trainer import Trainer


def toy(kind: str = "regression", augment: float = 0.0, **train) -> T.ToyConfig:
    base = dict(steps=6, batch_size=4, grad_accum=2, lr=0.05, eval_every=3, log_every=1)
    return T.ToyConfig(train=TrainConfig(**{**base, **train}), kind=kind,
                       data=T.ToyDataConfig(n_train=64, n_valid=21, augment=augment))


# name -> (config per process, stop_at for a first interrupted invocation or None)
DDP_RUNS = {
    "accum": (toy(), None),
    "gan": (toy(kind="gan", grad_accum=1, steps=3), None),
    "aug_full": (toy(augment=0.1), None),
    "aug_resumed": (toy(augment=0.1), 3),
}


def main(out: Path) -> None:
    env = D.init_distributed("cpu")  # one process group for all runs; the trainers leave it alone
    rank = env.rank
    for name, (cfg, stop_at) in DDP_RUNS.items():
        run_dir = out / name
        if stop_at is not None:
            Trainer(T.make_task(cfg), run_dir, device="cpu").fit(stop_at=stop_at)
        trainer = Trainer(T.make_task(cfg), run_dir, device="cpu")
        result = trainer.fit()
        weights = {f"{m}.{k}": v.clone() for m, mod in trainer.bare.items() for k, v in mod.state_dict().items()}
        torch.save(weights, out / f"{name}_rank{rank}.pt")
        if rank == 0:
            (out / f"{name}.json").write_text(json.dumps(result))
    D.destroy()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
