"""Splitting a shard split's clips among workers, resumably, and the final check of the output folder.

A worker is one process of one invocation: `torchrun` rank r of W inside scheduler shard s of N
(`--shard-index s --num-shards N`) is worker `s * W + r` of `N * W`. The clip list (the split's order,
cut by `--limit`) is cut into units of `batch_size` consecutive clips; unit u belongs to worker
`u % workers` and is sampled with its own seed derived from (`--seed`, u). So a clip's samples do not
depend on how many workers there are or on which run (first or resumed) made them: one process, two ranks
or three array jobs write the same files (bit-identical on CPU; on GPU up to kernel nondeterminism).

Resume: a unit whose clips all have every sample file is skipped; a unit cut short is sampled again in
full (same seed, same result) and only its missing clips are written. Every clip written is logged in
`<OUT>/.parts/worker_<i>-of-<n>.jsonl` (hidden: `vgs eval` skips it), which the final check uses to tell
that no clip was generated twice. The check (`check_outputs`) writes `<OUT>/samples.json`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vgs_cli.errors import VgsError
from vgs_cli.fsutil import write_json

PARTS = ".parts"
MANIFEST = "samples.json"
# generation.json fields that must agree between the invocations writing one folder (paths may differ
# between machines; the files' hashes may not)
_SAME_RUN_KEYS = ("split", "transformer.sha256", "codebook.sha256", "vocoder.kind", "vocoder.sha256")
_IGNORED_OPTIONS = ("use_cache",)  # speed only: the samples are the same


@dataclass(frozen=True)
class Worker:
    """Rank `rank` of `world` (torchrun) inside scheduler shard `shard` of `shards`."""

    rank: int = 0
    world: int = 1
    shard: int = 0
    shards: int = 1

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise VgsError(f"--num-shards must be at least 1, got {self.shards}")
        if not 0 <= self.shard < self.shards:
            raise VgsError(f"--shard-index {self.shard} is outside 0..{self.shards - 1} (--num-shards {self.shards})")

    @property
    def index(self) -> int:
        return self.shard * self.world + self.rank

    @property
    def count(self) -> int:
        return self.shards * self.world

    @property
    def name(self) -> str:
        return f"worker_{self.index}-of-{self.count}"

    def units(self, n_units: int) -> list[int]:
        """The unit numbers this worker owns (round robin, so every worker gets within one of the others)."""
        return list(range(self.index, n_units, self.count))


def unit_clips(n_clips: int, batch_size: int, unit: int) -> range:
    """Clip positions of unit `unit`: `batch_size` consecutive clips (the last unit may be shorter)."""
    return range(unit * batch_size, min(n_clips, (unit + 1) * batch_size))


def n_units(n_clips: int, batch_size: int) -> int:
    return -(-n_clips // batch_size)


def unit_seed(seed: int, unit: int) -> int:
    """A well-mixed 63-bit seed per (run seed, unit): neighbouring units get unrelated random streams."""
    digest = hashlib.sha256(f"vgs-generate:{seed}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_paths(out_dir: Path, clip_id: str, n: int) -> list[tuple[Path, Path]]:
    """(wav, mel) paths of every sample of one clip."""
    return [(out_dir / f"{clip_id}_sample_{k}.wav", out_dir / f"{clip_id}_sample_{k}.npy") for k in range(n)]


def is_done(out_dir: Path, clip_id: str, n: int) -> bool:
    """Every sample of the clip is on disk (the wav is written last, atomically)."""
    return all(w.is_file() and m.is_file() for w, m in sample_paths(out_dir, clip_id, n))


def log_written(out_dir: Path, worker: Worker, clip_id: str, unit: int) -> None:
    """Append one line to this worker's log (one writer per file: no locking needed)."""
    path = out_dir / PARTS / f"{worker.name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": clip_id, "unit": unit}) + "\n")


def _get(d: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        d = d.get(key) if isinstance(d, dict) else None
    return d


def check_same_run(out_dir: Path, provenance: dict[str, Any]) -> None:
    """An output folder holds one run: refuse to add samples of other models or options to it. Samples without
    a readable generation.json cannot be checked, so they are refused too (they may be another run's)."""
    path = out_dir / "generation.json"
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        if not has_samples(out_dir):
            return  # a new folder (or nothing in it yet): generation.json is written next
        why = "is missing" if not path.exists() else f"is unreadable ({type(exc).__name__})"
        raise VgsError(f"{out_dir} holds samples but its generation.json {why}, so they cannot be checked "
                       "against this run; put that file back, use another --out folder, or delete the "
                       "folder to start over") from None
    diffs = [k for k in _SAME_RUN_KEYS if _get(old, k) != _get(provenance, k)]
    old_opts, new_opts = old.get("options") or {}, provenance.get("options") or {}
    diffs += [f"options.{k}" for k in sorted(set(old_opts) | set(new_opts))
              if k not in _IGNORED_OPTIONS and old_opts.get(k) != new_opts.get(k)]
    if diffs:
        raise VgsError(f"{out_dir} holds samples of another run ({', '.join(diffs[:4])} differ); "
                       "use another --out folder, or delete that one to start over")


def has_samples(out_dir: Path) -> bool:
    """Any sample file or worker log in the folder (clip ids with `/` put samples in sub-folders)."""
    if not out_dir.is_dir():
        return False
    logs = (out_dir / PARTS).glob("worker_*.jsonl")
    samples = (p for pattern in ("*_sample_*.wav", "*_sample_*.npy") for p in out_dir.rglob(pattern))
    return next(logs, None) is not None or next(samples, None) is not None


def logged_counts(out_dir: Path) -> Counter:
    """How many times each clip id was written, over every worker log in the folder."""
    counts: Counter = Counter()
    for path in sorted((out_dir / PARTS).glob("worker_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                counts[json.loads(line)["id"]] += 1
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill mid-write
    return counts


def check_outputs(out_dir: Path, ids: list[str], samples: int, split: str) -> dict[str, Any]:
    """Check that every clip of `ids` has all its samples, each clip written once; write `samples.json`.

    Returns the manifest: `complete`, `clips`, `samples_per_clip`, `files`, `missing` (count) and
    `missing_ids` (the first 20), `written_twice` (clip ids logged more than once), `logged` (clips logged)."""
    missing = [cid for cid in ids if not is_done(out_dir, cid, samples)]
    counts = logged_counts(out_dir)
    wanted = set(ids)
    twice = sorted(cid for cid, c in counts.items() if c > 1 and cid in wanted)
    manifest = {
        "complete": not missing,
        "split": split,
        "clips": len(ids),
        "samples_per_clip": samples,
        "files": (len(ids) - len(missing)) * samples,
        "missing": len(missing),
        "missing_ids": missing[:20],
        "written_twice": twice,
        "logged": sum(1 for cid in counts if cid in wanted),
        "naming": "<clip_id>_sample_<k>.wav / .npy",
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest
