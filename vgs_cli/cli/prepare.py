"""`vgs prepare folder|synthetic|manifest`: videos -> HDF5 shards (`vgs_cli.prepare.folder` does the work).

Re-running a command resumes it. On a cluster, give every machine `--shard-index i --num-shards n`, gather
the shards in one folder and run `vgs prepare manifest OUT`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vgs_cli.cli.prepare_config import folder_kwargs, prepare_config
from vgs_cli.cli.prepare_options import (
    DEVICE,
    EXTRACTOR,
    FEATURE_PRECISION,
    IMAGE_SIZE,
    JOBS,
    MODE,
    NUM_SHARDS,
    QUIET,
    RANDOM,
    SET,
    SHARD_INDEX,
    WEIGHTS,
)

app = typer.Typer(no_args_is_help=True)

OUT = typer.Option(..., "--out", "-o", help="Output dataset folder (shards, manifest.json, failures.jsonl).")
PRESET = typer.Option(None, "--preset", "-p", help="vas, vggsound (ResNet-50, 224 px) or tiny (EfficientNet-Lite0, 128 px).")


@app.command("folder")
def folder(src: Path = typer.Argument(..., help="Folder of videos (searched recursively)."), out: Path = OUT,
           labels: Optional[Path] = typer.Option(None, "--labels", help="CSV with columns path,label,split (label/split optional)."),
           preset: Optional[str] = PRESET, extractor: list[str] = EXTRACTOR, visual_weights: list[str] = WEIGHTS,
           random_visual_weights: bool = RANDOM, image_size: Optional[int] = IMAGE_SIZE, jobs: int = JOBS,
           shard_index: Optional[int] = SHARD_INDEX, num_shards: Optional[int] = NUM_SHARDS,
           mode: Optional[str] = MODE, overrides: list[str] = SET, quiet: bool = QUIET,
           device: Optional[str] = DEVICE, feature_precision: Optional[str] = FEATURE_PRECISION) -> None:
    """Any folder of videos -> shards. Labels from --labels or the parent folder name; split by hash if none."""
    from vgs_cli.cli.info import print_shards
    from vgs_cli.prepare.folder import prepare_folder

    cfg = prepare_config(preset or "vas", extractor, image_size, mode, overrides, feature_precision)
    manifest = prepare_folder(src, out, cfg, labels_csv=labels,
                              **folder_kwargs(cfg, visual_weights, random_visual_weights, jobs, shard_index, num_shards, quiet, device))
    print_shards(out, manifest)


@app.command("synthetic")
def synthetic(out: Path = OUT, clips: int = typer.Option(18, "--clips", min=1, help="Number of clips (6 classes, round robin)."),
              duration: float = typer.Option(10.0, "--duration", min=0.1, help="Seconds per clip (shorter clips are looped/padded to 10 s)."),
              seed: int = typer.Option(0, "--seed"), size: int = typer.Option(96, "--size", min=16, help="Frame size in pixels."),
              preset: Optional[str] = PRESET, extractor: list[str] = EXTRACTOR, visual_weights: list[str] = WEIGHTS,
              random_visual_weights: bool = RANDOM, image_size: Optional[int] = IMAGE_SIZE, jobs: int = JOBS,
              shard_index: Optional[int] = SHARD_INDEX, num_shards: Optional[int] = NUM_SHARDS,
              mode: Optional[str] = MODE, overrides: list[str] = SET, quiet: bool = QUIET,
              device: Optional[str] = DEVICE, feature_precision: Optional[str] = FEATURE_PRECISION) -> None:
    """Make the procedural audio-visual dataset (real mp4 files in OUT/source), then prepare it like `folder`."""
    from vgs_cli.cli.info import print_shards
    from vgs_cli.prepare.folder import prepare_synthetic

    cfg = prepare_config(preset or "tiny", extractor, image_size, mode, overrides, feature_precision)
    manifest = prepare_synthetic(out, cfg, n_clips=clips, duration_s=duration, seed=seed, size=size,
                                 **folder_kwargs(cfg, visual_weights, random_visual_weights, jobs, shard_index, num_shards, quiet, device))
    print_shards(out, manifest)


@app.command("manifest")
def manifest(root: Path = typer.Argument(..., help="Dataset folder whose shards to summarise.")) -> None:
    """Rebuild manifest.json and failures.jsonl from the shards present (after gathering shards of several machines)."""
    from vgs_cli.cli.info import print_shards
    from vgs_cli.data.shards import build_manifest

    print_shards(root, build_manifest(root))

# vgs prepare vas / vggsound (datasets work)
from vgs_cli.cli import prepare_datasets  # noqa: E402

prepare_datasets.register(app)
