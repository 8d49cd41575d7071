"""What `vgs serve` finds on its own: the demo's models and its held-out videos as the page's examples.

`make demo` writes `<out>/runs/{codebook,transformer_feats,vocoder}/checkpoints/best.ckpt` and the videos
with their splits in `<out>/data/source/labels.csv` (`path,label,split`); `vgs serve --model <out>` loads
the feature-conditioned model and offers the test split's videos.
"""

from __future__ import annotations

import csv
from pathlib import Path

from vgs_cli.data.video import list_videos

MAX_EXAMPLES = 8
DEMO_RUNS = {"transformer": "transformer_feats", "codebook": "codebook", "vocoder_ckpt": "vocoder"}


def demo_models(folder: Path | None) -> dict[str, Path] | None:
    """`{transformer, codebook, vocoder_ckpt}` of a `make demo` output folder, else None."""
    if folder is None or not (folder / "runs").is_dir():
        return None
    found = {key: folder / "runs" / run / "checkpoints" / "best.ckpt" for key, run in DEMO_RUNS.items()}
    return found if all(p.is_file() for p in found.values()) else None


def _held_out(labels_csv: Path) -> list[Path]:
    try:
        with open(labels_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error):
        return []
    base = labels_csv.parent
    test = [base / r["path"] for r in rows if r.get("split") == "test" and r.get("path")]
    return [p for p in test if p.is_file()]


def find_examples(examples: Path | None, near: list[Path]) -> list[Path]:
    """The page's example videos: `--examples DIR`, else the held-out videos of a demo-like data folder
    (`data/source/labels.csv`) in or above any of the `near` paths (the model folder, the checkpoints)."""
    if examples is not None:
        return list_videos(examples)[:MAX_EXAMPLES]
    seen: set[Path] = set()
    for start in near:
        for folder in [start, *list(start.resolve().parents)[:4]]:
            labels = folder / "data" / "source" / "labels.csv"
            if labels in seen:
                continue
            seen.add(labels)
            if labels.is_file():
                videos = _held_out(labels)
                if videos:
                    return videos[:MAX_EXAMPLES]
    return []
