"""The trainer under `torchrun --nproc_per_node 2` (gloo, CPU) against single-process runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import _ddp_entry as E
import _toy_task as T
import pytest
import torch

from vgs_cli.train.trainer import Trainer

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single(cfg: T.ToyConfig, run: Path) -> tuple[dict, dict]:
    """The same run in one process with the same global batch (per-process batch x 2)."""
    one = cfg.replace(train=cfg.train.replace(batch_size=cfg.train.batch_size * 2))
    trainer = Trainer(T.make_task(one), run, device="cpu")
    result = trainer.fit()
    return result, {f"{m}.{k}": v for m, mod in trainer.bare.items() for k, v in mod.state_dict().items()}


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "_ddp_entry.py"), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for name in E.DDP_RUNS:
        r0, r1 = (torch.load(out / f"{name}_rank{r}.pt", weights_only=True) for r in (0, 1))
        assert all(torch.equal(r0[k], r1[k]) for k in r0), f"{name}: ranks disagree"

    for name in ("accum", "gan"):  # DDP averages gradients: equal to one process with the global batch
        result, single = _single(E.DDP_RUNS[name][0], tmp_path / f"single_{name}")
        ddp = torch.load(out / f"{name}_rank0.pt", weights_only=True)
        for k, v in single.items():
            assert (ddp[k] - v).abs().max() < 1e-5, (name, k)
        ddp_result = json.loads((out / f"{name}.json").read_text())
        # validation covers the whole 21-sample split across both ranks (11 + 10), each sample once
        assert ddp_result["n_collected"] == 21
        assert ddp_result["loss"] == pytest.approx(result["loss"], rel=1e-5)
        assert ddp_result["mse_collected"] == pytest.approx(result["loss"], rel=1e-5)

    full = torch.load(out / "aug_full_rank1.pt", weights_only=True)
    resumed = torch.load(out / "aug_resumed_rank1.pt", weights_only=True)
    assert all(torch.equal(full[k], resumed[k]) for k in full), "resumed DDP run differs"
    rows = [json.loads(line) for line in (out / "accum/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "valid"] == [3, 6]
    assert not (out / "accum/samples/step_3.txt").read_text() == ""  # rank 0 ran on_validation_end
