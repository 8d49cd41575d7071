"""The protocol at scale: one invocation's share of a shard split (all its torchrun ranks), then the check.

    torchrun --nproc_per_node 8 -m vgs_cli generate DATA --split test --samples 10 -o OUT --model M
    vgs generate DATA --split test --samples 10 -o OUT --model M --shard-index $I --num-shards 16
    vgs generate DATA -o OUT --merge        # after every shard: check the folder, write OUT/samples.json

Rank 0 checks OUT against its generation.json and the ranks meet (a barrier, before any sample is written);
each rank samples its units (generate/workers.py), then the ranks meet again (`all_gather`, so the process
group needs a timeout longer than the slowest rank's lead) and rank 0 checks the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from vgs_cli.errors import VgsError
from vgs_cli.generate.batch import generate_shards, shard_ids
from vgs_cli.generate.engine import Bundle, GenerateOptions
from vgs_cli.generate.workers import Worker, check_outputs

Log = Callable[[str], None]


def generate_split(bundle: Bundle, root: Path, out_dir: Path, opts: GenerateOptions, *, split: str = "test",
                   batch_size: int = 8, limit: int | None = None, worker: Worker = Worker(),
                   log: Log = print) -> dict[str, Any]:
    """Generate this worker's clips; rank 0 returns the invocation's totals and the folder's check
    (`complete`, `missing`: clips of the whole split still lacking samples, e.g. other shards' share)."""
    from vgs_cli import dist

    mine = generate_shards(bundle, root, out_dir, opts, split=split, batch_size=batch_size, limit=limit,
                           worker=worker, log=log)
    every = dist.all_gather_objects(mine)  # also waits for every rank of this invocation
    if worker.rank != 0:
        return mine
    ids = shard_ids(root, split, limit)
    manifest = check_outputs(out_dir, ids, opts.samples, split)
    summary = {k: sum(s[k] for s in every) for k in ("generated", "skipped")}
    return {"clips": len(ids), **summary, "missing": manifest["missing"], "complete": manifest["complete"],
            "written_twice": manifest["written_twice"]}


def merge(root: Path, out_dir: Path, limit: int | None = None) -> dict[str, Any]:
    """Check a finished folder against its split (read from OUT/generation.json, as is the run's `--limit`
    unless `limit` is given): every clip has all its samples. Writes OUT/samples.json; missing clips are an
    error that says how to finish them."""
    try:
        prov = json.loads((out_dir / "generation.json").read_text())
        split, samples = prov["split"], int(prov["options"]["samples"])
        limit = limit if limit is not None else prov.get("limit")
    except (OSError, ValueError, KeyError, TypeError):
        raise VgsError(f"{out_dir} has no readable generation.json: nothing generated there yet "
                       "(run `vgs generate DATA -o OUT ...` first)") from None
    if split is None:
        raise VgsError(f"{out_dir} holds a folder-of-videos run; --merge checks shard splits")
    ids = shard_ids(root, split, limit)
    manifest = check_outputs(out_dir, ids, samples, split)
    if not manifest["complete"]:
        raise VgsError(f"{out_dir}: {manifest['missing']} of {len(ids)} {split} clips lack samples (e.g. "
                       f"{manifest['missing_ids'][0]}); rerun the shards that own them (finished clips are "
                       "skipped), then --merge again")
    return manifest
