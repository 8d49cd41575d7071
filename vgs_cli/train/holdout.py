"""A validation split for shards that have none, the same for every stage.

Small fine-tuning sets often come as one folder of videos: no valid split, so no valid loss, no best checkpoint
and no early stopping. Every train task then holds out ~15% of the training clips, chosen by a hash of the clip
id (`data.dataset.auto_valid_split`: the same clips on every rank, run and resume, and the same for the codebook,
vocoder, classifiers and transformer trained on one folder), validates on them and never trains on them. Below 8
training clips nothing is held out (there is no validation then). The run's log says which it did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset, Subset

from vgs_cli.data.dataset import AUTO_VALID_FRACTION, AUTO_VALID_MIN_CLIPS, auto_valid_split
from vgs_cli.train.trainer_utils import note


def say_held_out(data_dir: Path | str, ids: list[str]) -> tuple[list[int], list[int]]:
    """`auto_valid_split(ids)` plus the log line that tells the user (rank 0 only)."""
    train, valid = auto_valid_split(ids)
    if _is_main():
        if valid:
            note(f"{data_dir} has no valid split: validating on {len(valid)} of its {len(ids)} training clips, "
                 f"held out from training (~{AUTO_VALID_FRACTION:.0%} chosen by a hash of the clip id)")
        else:
            note(f"{data_dir} has no valid split and only {len(ids)} training clip(s) (< {AUTO_VALID_MIN_CLIPS} "
                 "to hold some out): no validation, so no best checkpoint and no early stopping")
    return train, valid


class ValidSplit:
    """One task's view of its shard splits: the folder's own, or the automatic hold-out (decided once).

    `dataset(split, make)`: `make(split_name) -> Dataset | None` builds a ShardDataset of a shard split; with a
    hold-out, "train" / "valid" are `Subset`s of `make("train")` (the same clips with audio in the same order,
    whatever fields `make` reads)."""

    def __init__(self, data_dir: Path, quiet: bool = False) -> None:
        self.data_dir, self.quiet = Path(data_dir), quiet
        self._decided = False
        self._held: tuple[list[int], list[int]] | None = None

    def held_out(self) -> tuple[list[int], list[int]] | None:
        """(train, valid) indices into the train split's clips with audio, or None (the folder's own splits)."""
        if not self._decided:
            self._decided = True
            from vgs_cli.data.dataset import ShardDataset

            data = ShardDataset(self.data_dir, "train", fields=("id",), require_audio=True)
            splits = data.manifest.get("splits", {})
            if not splits.get("valid") and len(data) > 0:
                ids = data.ids()
                train, valid = auto_valid_split(ids) if self.quiet else say_held_out(self.data_dir, ids)
                self._held = (train, valid) if valid else None
        return self._held

    def dataset(self, split: str, make: Callable[[str], Any]) -> Dataset | None:
        held = self.held_out() if split in ("train", "valid") else None
        if held is None:
            return make(split)
        base = make("train")
        return Subset(base, held[0] if split == "train" else held[1]) if base is not None else None


def _is_main() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
