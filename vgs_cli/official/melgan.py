"""The official MelGAN generator (`best_netG.pt` / `netG.pt` + `args.yml`) -> a vgs `vocoder` checkpoint.

The file is a bare state_dict whose convolutions are weight-normalised as `weight_g` / `weight_v` (+ `bias`).
Our generator uses torch's parametrisation API with the same g / v tensors under other names
(`models.melgan.official_to_parametrized`), so the tensors are carried over unchanged. Sizes come from the
tensors (ngf, mel bins, upsampling ratios from the transposed-conv kernels 2r, residual layers per stage);
`args.yml`, when it sits next to the file, is read as plain data and must agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vgs_cli.config.vocoder import PRESETS, DiscriminatorConfig, MelGANConfig
from vgs_cli.errors import CheckpointError, ConfigError
from vgs_cli.models.melgan import official_to_parametrized
from vgs_cli.official.convert import Converted, State, disagree
from vgs_cli.official.yaml_args import read_yaml

ARGS_FILE = "args.yml"


def is_generator(obj: Any) -> bool:
    return isinstance(obj, dict) and "model.1.weight_v" in obj and not any(str(k).startswith("model.disc_") for k in obj)


def is_discriminator(obj: Any) -> bool:
    return isinstance(obj, dict) and any(str(k).startswith("model.disc_") for k in obj)


def read_args(weights: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """`args.yml` next to the weights (argparse dump, python tags ignored), if present."""
    path = weights.parent / ARGS_FILE
    if not path.is_file():
        return None, None
    return read_yaml(path, ignore_python_tags=True), path


def _indices(state: State, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))})


def infer_generator_config(state: State, args: dict[str, Any] | None, *, where: str) -> MelGANConfig:
    """Sizes from the tensors: `model.<i>.weight_v` of the Sequential's own convs are the input conv,
    the transposed convs (kernel 2r for ratio r) and the output conv; residual blocks sit between."""
    convs = _indices(state, r"model\.(\d+)\.weight_v")
    if len(convs) < 3:
        raise CheckpointError(f"{where}: expected an input conv, upsampling convs and an output conv "
                              f"(model.<i>.weight_v), found {len(convs)}")
    first, *ups, last = convs
    blocks = _indices(state, r"model\.(\d+)\.block\.2\.weight_v")
    stage_end = ups[1] if len(ups) > 1 else last
    kwargs = dict(
        n_mels=int(state[f"model.{first}.weight_v"].shape[1]),
        ngf=int(state[f"model.{last}.weight_v"].shape[1]),
        ratios=tuple(int(state[f"model.{i}.weight_v"].shape[2]) // 2 for i in ups),
        n_residual_layers=sum(ups[0] < b < stage_end for b in blocks),
    )
    if args:
        for yaml_key, ours in (("n_mel_channels", "n_mels"), ("ngf", "ngf"), ("n_residual_layers",
                                                                            "n_residual_layers")):
            if yaml_key in args and int(args[yaml_key]) != kwargs[ours]:
                raise disagree(where, yaml_key, kwargs[ours], args[yaml_key])
    try:
        return MelGANConfig(**kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: the generator's sizes do not form a valid vocoder ({exc})") from None


def _disc_config(args: dict[str, Any] | None) -> DiscriminatorConfig:
    """The discriminator the generator was trained with (kept in the config for fine-tuning)."""
    base = PRESETS["vggsound"].disc
    if not args:
        return base
    keys = {"num_D": "num_d", "ndf": "ndf", "n_layers_D": "n_layers", "downsamp_factor": "downsampling_factor"}
    try:
        return base.replace(**{ours: int(args[k]) for k, ours in keys.items() if k in args})
    except (ConfigError, TypeError, ValueError):
        return base


def convert_generator(state: State, args: dict[str, Any] | None, *, where: str,
                      provenance: dict[str, Any]) -> Converted:
    """Official generator state_dict -> vgs `vocoder` checkpoint content (same g / v tensors, renamed)."""
    model = infer_generator_config(state, args, where=where)
    cfg = PRESETS["vggsound"].replace(model=model, disc=_disc_config(args))
    notes = [] if args else [f"no {ARGS_FILE} next to the weights: sizes read from the tensors alone"]
    return Converted("vocoder", cfg.to_dict(), official_to_parametrized(state), {"official": provenance}, notes)
