"""What the `vgs prepare` commands (folder, synthetic, vas, vggsound) share after parsing: the prepare config
from a preset and the common options, and the folder pipeline's keyword arguments. Its own module so that
`cli/prepare.py` and `cli/prepare_datasets.py` both import it and neither imports the other's helpers."""

from __future__ import annotations

import shlex
import sys
from typing import Any, Optional

import typer

from vgs_cli.errors import VgsError


def prepare_config(preset: str, extractors: list[str], image_size: Optional[int], mode: Optional[str],
                   overrides: list[str], feature_precision: Optional[str] = None) -> Any:
    """The `PrepareConfig` of `preset` with --extractor / --image-size / --mode / --feature-precision / --set
    applied (strictly)."""
    from vgs_cli.config.base import apply_overrides, preset_names
    from vgs_cli.config.prepare import PRESETS

    if preset not in PRESETS:
        raise VgsError(f"unknown preset {preset!r} (choose {preset_names(PRESETS)})")
    sets = list(overrides)
    if extractors:
        sets.append("extractors=" + "[" + ",".join(f'"{e}"' for e in extractors) + "]")
    if image_size is not None:
        sets.append(f"image_size={image_size}")
    if mode is not None:
        sets.append(f'mode="{mode}"')
    if feature_precision is not None:
        sets.append(f'feature_precision="{feature_precision}"')
    return apply_overrides(PRESETS[preset], sets)


def visual_weights(items: list[str], extractors: tuple[str, ...]) -> dict[str, str]:
    """--visual-weights PATH (one extractor) or NAME=PATH items -> {extractor: path}."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            if len(extractors) != 1:
                raise VgsError("with several extractors write --visual-weights NAME=PATH")
            name, path = extractors[0], item
        out[name] = path
    return out


def folder_kwargs(cfg: Any, weights: list[str], random_weights: bool, jobs: int, shard_index: Optional[int],
                  num_shards: Optional[int], quiet: bool, device: Optional[str] = None) -> dict[str, Any]:
    """Keyword arguments of `prepare.folder`'s pipeline, as every prepare command passes them."""
    return dict(visual_weights=visual_weights(weights, cfg.extractors), random_visual_weights=random_weights,
                jobs=jobs, shard_index=shard_index, num_shards=num_shards, progress=not quiet, device=device,
                command=shlex.join(["vgs", *sys.argv[1:]]), log=typer.echo)
