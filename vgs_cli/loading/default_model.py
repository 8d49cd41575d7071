"""The default model: what `vgs generate video.mp4 -o out.wav` (no model flag), `vgs serve` and `vgs models`
use, and the models vgs knows.

    resolve(model=None, ...) -> ModelPaths   # model_folder.resolve_models with the default when none is named
    default_source() -> ModelChoice       # $VGS_MODEL, else the recorded default, else a one-line VgsError
    set_default("demo_out/model", how="make demo")   # checks the folder resolves, records absolute paths
    known_models([folder, ...]) -> rows   # the default's files, the official cache folder, the folders given

The record is `cache_dir()/default_model.json` (written atomically): `{"model", "transformer", "codebook",
"vocoder", "classifier", "how", "name", "set_at"}` with absolute paths, so it works from any working directory. It is set
by `make demo` (scripts/demo.sh), `vgs download NAME --default`, `vgs import ... --default` and
`vgs models default PATH`. `$VGS_MODEL` (a model folder or run folder) wins over it for one shell.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vgs_cli.cache import cache_path
from vgs_cli.errors import VgsError
from vgs_cli.fsutil import write_json
from vgs_cli.loading.model_folder import ModelPaths, resolve_models
from vgs_cli.loading.models import peek_checkpoint, peek_stage

ENV = "VGS_MODEL"
RECORD = "default_model.json"
HOW_TO = ("run `make demo` (it makes its models the default), or `vgs download vas_c_212feats_resnet50 --default` "
          "(the paper's VAS model), or pass --model DIR")


@dataclass(frozen=True)
class ModelChoice:
    model: Path | None  # a folder or checkpoint resolve_models searches
    transformer: Path | None = None  # pinned files (the record holds all three)
    codebook: Path | None = None
    vocoder: Path | None = None
    how: str = ""  # "$VGS_MODEL", "make demo", "vgs download ...", "vgs models default"
    name: str = ""

    def describe(self) -> str:
        """The phrase each run prints: `model: <this>`."""
        what = self.model or self.transformer
        return f"{what} ({self.how})" if self.how else str(what)


def record_path() -> Path:
    return cache_path(RECORD)


def read_record() -> dict[str, Any] | None:
    """The recorded default, or None (no record, or one that is not JSON: said at use, not here)."""
    path = record_path()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("transformer") else None


def default_source() -> ModelChoice:
    """$VGS_MODEL, else the recorded default (its files must still exist), else a VgsError saying how to get one."""
    env = os.environ.get(ENV, "").strip()
    if env:
        if not Path(env).exists():
            raise VgsError(f"${ENV} is {env}, which does not exist: point it at a model folder or unset it")
        return ModelChoice(Path(env), how=f"${ENV}")
    rec = read_record()
    if rec is None:
        raise VgsError(f"no model given and no default model set: {HOW_TO}")
    files = {k: Path(rec[k]) if rec.get(k) else None for k in ("transformer", "codebook", "vocoder")}
    gone = [str(p) for p in files.values() if p is not None and not p.is_file()]
    if gone:
        raise VgsError(f"the default model ({record_path()}) names {gone[0]}, which no longer exists: set another "
                       f"with `vgs models default PATH`, or {HOW_TO}")
    return ModelChoice(Path(rec["model"]) if rec.get("model") else None, **files,
                       how=f"default model, set by {rec.get('how') or 'hand'}", name=str(rec.get("name") or ""))


def resolve(model: str | os.PathLike | None = None, *, transformer: str | os.PathLike | None = None,
            codebook: str | os.PathLike | None = None, vocoder_ckpt: str | os.PathLike | None = None,
            vocoder: str = "melgan") -> ModelPaths:
    """`model_folder.resolve_models`, with the default model when neither `model` nor `transformer` is given
    (explicit --codebook/--vocoder-ckpt still win over the default's). `.source` says which was used."""
    if model is not None or transformer is not None:
        return resolve_models(model, transformer=transformer, codebook=codebook, vocoder_ckpt=vocoder_ckpt,
                              vocoder=vocoder)
    chosen = default_source()
    paths = resolve_models(chosen.model if chosen.transformer is None else None,
                           transformer=chosen.transformer, codebook=codebook or chosen.codebook,
                           vocoder_ckpt=vocoder_ckpt or chosen.vocoder, vocoder=vocoder)
    return replace(paths, source=chosen.describe())


def default_classifier() -> Path | None:
    """The Melception `vgs eval` scores with when no --classifier is given: the default model's (recorded with
    `vgs models default ... --classifier`, as `make demo` does), else the official one in the cache folder
    (`vgs download melception`), else None."""
    rec = read_record() or {}
    official = cache_path("official")
    for path in (rec.get("classifier"), official / "melception" / "melception.ckpt", official / "melception.ckpt"):
        if path and Path(path).is_file():
            return Path(path)
    return None


def set_default(model: str | os.PathLike | None, *, how: str, transformer: str | os.PathLike | None = None,
                codebook: str | os.PathLike | None = None, vocoder: str | os.PathLike | None = None,
                name: str = "", classifier: str | os.PathLike | None = None) -> dict[str, Any]:
    """Resolve `model` (+ explicit files) as `vgs generate --model` would and record the result as the default."""
    if model is None and transformer is None:
        raise VgsError("name the model folder (or --transformer) to make the default")
    paths = resolve_models(model, transformer=transformer, codebook=codebook, vocoder_ckpt=vocoder,
                           vocoder="melgan" if vocoder or model is not None else "griffinlim")
    rec = {"model": str(Path(model).resolve()) if model is not None else None,
           "transformer": str(paths.transformer.resolve()), "codebook": str(paths.codebook.resolve()),
           "vocoder": str(paths.vocoder.resolve()) if paths.vocoder else None,
           "classifier": _classifier(classifier), "how": how, "name": name,
           "set_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    record_path().parent.mkdir(parents=True, exist_ok=True)
    write_json(record_path(), rec)
    return rec


def _classifier(path: str | os.PathLike | None) -> str | None:
    if path is None:
        return None
    path = Path(path)
    if peek_stage(path) not in ("melception", "vggishish"):
        raise VgsError(f"--classifier {path} is not a Melception or VGGish-ish checkpoint")
    return str(path.resolve())


# ------------------------------------------------------------------------------------------- listing

def _run_preset(ckpt_path: Path) -> str:
    """The preset of the run a checkpoint belongs to (`<run>/config.json`), '' when not a vgs run's file."""
    cfg = ckpt_path.parent.parent / "config.json" if ckpt_path.parent.name == "checkpoints" else None
    try:
        return str(json.loads(cfg.read_text()).get("preset") or "") if cfg and cfg.is_file() else ""
    except (OSError, ValueError):
        return ""


def describe_checkpoint(path: Path) -> dict[str, Any] | None:
    """One row of `vgs models`: path, stage, preset, condition, source (None: not a vgs checkpoint)."""
    ckpt = peek_checkpoint(path)
    if ckpt is None or not ckpt.get("stage"):
        return None
    extra = ckpt.get("extra") or {}
    model_cfg = (ckpt.get("config") or {}).get("model") or {}
    official = extra.get("official")
    source = (f"official {official.get('run', '')}".strip() if isinstance(official, dict) else
              "LoRA adapter" if extra.get("adapter") else f"vgs {ckpt.get('vgs_version') or ''}".strip())
    condition = model_cfg.get("condition", "") if ckpt["stage"] == "transformer" else ""
    if condition and "feats" in condition:
        condition += f" ({model_cfg.get('feat_frames')} frames {extra.get('extractor') or ''})".rstrip()
    return {"path": str(path), "stage": ckpt["stage"], "preset": _run_preset(path) or ("paper" if official else ""),
            "condition": condition, "source": source}


def known_models(folders: list[Path] | None = None) -> list[dict[str, Any]]:
    """Every checkpoint vgs knows: the default model's files, the official cache folder and `folders`."""
    rec = read_record() or {}
    default = {str(Path(rec[k])) for k in ("transformer", "codebook", "vocoder") if rec.get(k)}
    roots = [cache_path("official"), *(folders or [])]
    files: list[Path] = [Path(p) for p in sorted(default)]
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.rglob("*.ckpt") if "downloads" not in p.parts)
    rows, seen = [], set()
    for path in files:
        key = str(path.resolve()) if path.exists() else str(path)
        if key in seen:
            continue
        seen.add(key)
        row = describe_checkpoint(path) if path.is_file() else None
        if row is not None:
            rows.append({**row, "default": key in default})
    return rows
