"""The official spectrogram classifiers -> vgs `melception` / `vggishish` checkpoints.

Both files are `torch.save({"model": state_dict, "optimizer": ..., "epoch", "loss", "metrics"})`; only
`model` is kept. Neither holds its input standardisation: the reference's data loader standardised mels per
bin with `train_means_stds_melspec_10s_22050hz.txt` (80 lines `mean std`, VGGSound training mels on [0, 1]),
so the importer needs that file (`--stats`, or found next to the classifier; `vgs download` fetches it).
Melception keeps the statistics in its config (its state_dict stays the official key set); VGGish-ish in
its `scaling_layer` buffers, in the [-1, 1] convention the official LPAPS used, so `--lpaps` reuses them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from vgs_cli.config.melception import PRESETS as MELCEPTION_PRESETS
from vgs_cli.config.melception import MelceptionModelConfig
from vgs_cli.config.vggishish import MP, VGGishishModelConfig
from vgs_cli.config.vggishish import PRESETS as VGGISHISH_PRESETS
from vgs_cli.errors import CheckpointError, ConfigError, VgsError
from vgs_cli.models.vggishish import ScalingLayer
from vgs_cli.official.convert import Converted, State

STATS_FILE = "train_means_stds_melspec_10s_22050hz.txt"
OFFICIAL_STEM = 32  # Conv2d_1a_3x3 output channels of the official Melception (width 1.0)


def classifier_kind(obj: Any) -> str | None:
    """"melception" / "vggishish" for a `{"model": state_dict, ...}` file, else None."""
    model = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(model, dict):
        return None
    if "fc.weight" in model and any(str(k).startswith("Mixed_") for k in model):
        return "melception"
    if "features.0.weight" in model and any(str(k).startswith("classifier.") for k in model):
        return "vggishish"
    return None


def find_stats(weights: Path, given: str | Path | None) -> Path:
    """The per-bin statistics file: `given`, else next to the classifier."""
    path = Path(given) if given else weights.parent / STATS_FILE
    if not path.is_file():
        raise VgsError(f"{weights.name} needs the per-mel-bin statistics {STATS_FILE} (not found at {path}); "
                       f"get it with `vgs download {STATS_FILE}` and pass --stats PATH")
    return path


def read_stats(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(means, stds) per mel bin from the 2-column text file."""
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as exc:
        raise VgsError(f"{path}: not a table of 'mean std' lines ({exc})") from None
    if table.shape[1] != 2 or table.shape[0] < 1:
        raise VgsError(f"{path}: expected lines of 'mean std', got a {table.shape[0]}x{table.shape[1]} table")
    if not np.all(np.isfinite(table)) or np.any(table[:, 1] <= 0):
        raise VgsError(f"{path}: statistics must be finite with positive standard deviations")
    return tuple(float(x) for x in table[:, 0]), tuple(float(x) for x in table[:, 1])


def _provenance_note(stats: Path) -> str:
    return f"input standardisation from {stats.name} (per-bin mean/std of VGGSound training mels)"


def convert_melception(state: State, stats: Path, *, where: str, provenance: dict[str, Any]) -> Converted:
    """Official Melception weights (+ statistics) -> vgs `melception` checkpoint content."""
    stem = state.get("Conv2d_1a_3x3.conv.weight")
    if stem is None or stem.dim() != 4 or stem.shape[1] != 1:
        raise CheckpointError(f"{where}: Conv2d_1a_3x3.conv.weight must be a 1-channel [C, 1, 3, 3] conv")
    means, stds = read_stats(stats)
    try:
        model = MelceptionModelConfig(
            num_classes=int(state["fc.weight"].shape[0]), width=int(stem.shape[0]) / OFFICIAL_STEM,
            n_mels=len(means), aux_logits=any(k.startswith("AuxLogits.") for k in state),
            norm_mean=means, norm_std=stds)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    cfg = MELCEPTION_PRESETS["vggsound"].replace(model=model)
    notes = [_provenance_note(stats)]
    return Converted("melception", cfg.to_dict(), dict(state), {"official": provenance, "stats": stats.name}, notes)


def _conv_layers(state: State, where: str) -> tuple[int | str, ...]:
    """VGG `features` layout from the conv indices: +2 = conv, ReLU; +3 = a max-pool in between."""
    if any(k.endswith("running_mean") for k in state):
        raise CheckpointError(f"{where}: a VGGish-ish with BatchNorm is not the official layout")
    idx = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(r"features\.(\d+)\.weight", k))})
    layers: list[int | str] = []
    for prev, cur in zip([None, *idx], idx, strict=False):
        step = cur if prev is None else cur - prev
        if step == 3:
            layers.append(MP)
        elif step not in (0, 2):
            raise CheckpointError(f"{where}: features.{cur} does not follow the conv/ReLU/max-pool layout")
        layers.append(int(state[f"features.{cur}.weight"].shape[0]))
    return tuple(layers)


def convert_vggishish(state: State, stats: Path, *, where: str, provenance: dict[str, Any]) -> Converted:
    """Official VGGish-ish weights (+ statistics as `scaling_layer`) -> vgs `vggishish` checkpoint content."""
    for key in ("classifier.0.weight", "classifier.2.weight", "classifier.4.weight"):
        if key not in state:
            raise CheckpointError(f"{where}: missing {key}; not the official VGGish-ish classifier")
    means, stds = read_stats(stats)
    try:
        model = VGGishishModelConfig(conv_layers=_conv_layers(state, where), n_mels=len(means),
                                     num_classes=int(state["classifier.4.weight"].shape[0]),
                                     hidden=int(state["classifier.0.weight"].shape[0]))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if state["classifier.0.weight"].shape[1] != model.feature_dim:
        raise CheckpointError(f"{where}: classifier.0 takes {state['classifier.0.weight'].shape[1]} inputs, the "
                              f"conv stack pooled to {model.pool} gives {model.feature_dim}")
    scaling = ScalingLayer(len(means))
    scaling.set_stats(np.asarray(means, dtype=np.float32), np.asarray(stds, dtype=np.float32))
    weights = dict(state)
    weights.update({f"scaling_layer.{k}": v for k, v in scaling.state_dict().items()})
    cfg = VGGISHISH_PRESETS["vggsound"].replace(model=model)
    return Converted("vggishish", cfg.to_dict(), weights, {"official": provenance, "stats": stats.name},
                     [_provenance_note(stats)])
