"""`vgs import specvqgan PATH -o OUT`: official SpecVQGAN files -> vgs checkpoints in OUT.

    written = import_specvqgan("2021-07-29T13-34-39_vas_transformer/", "models/vas")
    # -> models/vas/codebook.ckpt, models/vas/transformer.ckpt

PATH is one official file or a folder: an unpacked run (`checkpoints/*.ckpt` + `configs/*-project.yaml`) or
a folder of official files / runs. Each file's kind comes from its content (Lightning codebook or transformer,
MelGAN generator, Melception, VGGish-ish), never from its name. Outputs are `OUT/<stage>.ckpt`
(codebook, transformer, vocoder, melception, vggishish), so OUT works directly as `vgs generate --model OUT`.

Guarantees: every converted tensor is checked against a model built from the converted config (same key
set, shapes and dtypes, else a CheckpointError naming the keys) before anything is written; files are
written atomically; an existing output with other weights is never replaced without `force`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from vgs_cli.checkpoint import FORMAT, save_checkpoint
from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.official import classifiers, lightning, melgan
from vgs_cli.official.convert import Converted
from vgs_cli.official.registry import Entry, by_run
from vgs_cli.official.safe_load import load_official

WEIGHT_SUFFIXES = (".ckpt", ".pt", ".pth")
Log = Callable[[str], None]


class NotImportable(VgsError):
    """A recognised official file that has no vgs counterpart (e.g. the MelGAN discriminator)."""


@dataclass
class ImportOptions:
    stats: Path | None = None  # per-bin statistics for the classifiers (default: next to the file)
    classes: list[str] | None = None  # class names of a class-conditioned transformer, in label order
    extractor: str | None = None  # resnet50 | bninception, when the run's config does not tell
    n_head: int | None = None  # a transformer's attention heads, when no project yaml tells (--n-head)
    force: bool = False  # replace existing outputs that hold other weights
    entry: Entry | None = None  # the published file this came from (`vgs download`)


@dataclass
class Written:
    stage: str
    path: Path
    source: Path
    status: str  # "written" or "unchanged"
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- sources

def _sources(path: Path) -> list[tuple[Path, bool]]:
    """(file, came from a folder scan) pairs to import."""
    if path.is_file():
        return [(path, False)]
    if not path.is_dir():
        raise VgsError(f"not found: {path}")
    if (path / "checkpoints").is_dir():
        return [(lightning.run_checkpoint(path), False)]
    found = [(p, True) for p in sorted(path.iterdir()) if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    found += [(lightning.run_checkpoint(p), True) for p in sorted(path.iterdir()) if (p / "checkpoints").is_dir()]
    if not found:
        raise VgsError(f"{path}: no official files (*.ckpt, *.pt, or run folders with checkpoints/) to import")
    return found


def _run_name(src: Path) -> str:
    return src.parent.parent.name if src.parent.name == "checkpoints" else src.name


def _provenance(src: Path, obj: dict[str, Any], entry: Entry | None) -> dict[str, Any]:
    prov: dict[str, Any] = {"source": str(src.resolve()), "run": entry.run if entry else _run_name(src)}
    for key in ("epoch", "global_step", "pytorch-lightning_version"):
        if isinstance(obj.get(key), (int, str)):
            prov[key] = obj[key]
    if entry is not None:
        prov.update({"url": entry.url, "md5": entry.md5, **entry.info})
    return prov


# ---------------------------------------------------------------------------------------- conversion

def convert_file(src: Path, options: ImportOptions) -> list[Converted]:
    """The vgs checkpoint contents one official file turns into (a transformer gives two)."""
    obj = load_official(src)
    where = str(src)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise NotImportable(f"{src} is already a vgs checkpoint; use it directly")
    entry = options.entry or by_run(_run_name(src))
    prov = _provenance(src, obj if isinstance(obj, dict) else {}, entry)
    if lightning.is_lightning(obj):
        state = obj["state_dict"]
        project, project_path = lightning.project_config(src)
        if project_path is not None:
            prov["project_yaml"] = project_path.name
        if lightning.lightning_kind(state) == "codebook":
            return [lightning.convert_codebook(state, project, where=where, provenance=prov)]
        return list(lightning.convert_transformer(state, project, where=where, provenance=prov,
                                                  entry={"condition": entry.info.get("condition"),
                                                         "features": entry.info.get("features")} if entry else None,
                                                  extractor=options.extractor, classes=options.classes,
                                                  n_head=options.n_head))
    kind = classifiers.classifier_kind(obj)
    if kind is not None:
        stats = classifiers.find_stats(src, options.stats)
        convert = classifiers.convert_melception if kind == "melception" else classifiers.convert_vggishish
        return [convert(obj["model"], stats, where=where, provenance=prov)]
    if melgan.is_generator(obj):
        args, _ = melgan.read_args(src)
        return [melgan.convert_generator(obj, args, where=where, provenance=prov)]
    if melgan.is_discriminator(obj):
        raise NotImportable(f"{src} is the MelGAN discriminator (only needed to resume vocoder training); "
                            "import the generator (netG.pt / best_netG.pt)")
    keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else type(obj).__name__
    raise NotImportable(f"{src}: not an official SpecVQGAN codebook, transformer, MelGAN generator or "
                        f"classifier (top-level: {keys})")


def verify(conv: Converted, where: str) -> None:
    """Every tensor must land in the model the config describes: same keys, shapes and dtypes."""
    from vgs_cli.loading.models import MODELS, build_config, state_diff

    cfg = build_config(conv.stage, conv.config, where)
    with torch.device("meta"):
        model = MODELS[conv.stage][1](cfg.model)
    diff = state_diff(model, conv.state_dict, dtypes=True)
    if diff:
        raise CheckpointError(f"{where}: the official weights do not map onto the vgs {conv.stage} model: {diff}")


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _existing(path: Path) -> dict[str, Any] | None:
    from vgs_cli.loading.models import peek_checkpoint

    return peek_checkpoint(path)


# ------------------------------------------------------------------------------------------- writing

def _plan(results: list[tuple[Path, Converted]]) -> list[tuple[Path, Converted]]:
    """One conversion per stage: identical duplicates (a codebook file and a transformer's copy of it) merge."""
    kept: dict[str, tuple[Path, Converted]] = {}
    for src, conv in results:
        if conv.stage in kept:
            other_src, other = kept[conv.stage]
            if not _same_weights(other.state_dict, conv.state_dict):
                raise VgsError(f"{other_src.name} and {src.name} both give a {conv.stage} with different weights; "
                               "import them into separate folders")
            if conv.aux_state and not other.aux_state:  # the codebook file carries the discriminator; keep it
                kept[conv.stage] = (src, conv)
            continue
        kept[conv.stage] = (src, conv)
    order = ["codebook", "transformer", "vocoder", "melception", "vggishish"]
    return sorted(kept.values(), key=lambda sc: order.index(sc[1].stage))


def _write(out: Path, src: Path, conv: Converted, force: bool) -> Written:
    path = out / f"{conv.stage}.ckpt"
    if path.exists():
        old = _existing(path)
        same = old is not None and old.get("stage") == conv.stage and _same_weights(old["state_dict"], conv.state_dict)
        if same and set(old.get("aux_state") or {}) >= set(conv.aux_state):
            return Written(conv.stage, path, src, "unchanged", conv.notes)
        if not force and not same:  # same weights, now with the discriminator: rewritten
            raise VgsError(f"{path} already exists with other weights; use --force to replace it or pick "
                           "another output folder")
    save_checkpoint(path, stage=conv.stage, config=conv.config, state_dict=conv.state_dict, extra=conv.extra,
                    aux_state=conv.aux_state)
    return Written(conv.stage, path, src, "written", conv.notes)


def import_specvqgan(path: str | os.PathLike, out: str | os.PathLike, options: ImportOptions | None = None,
                     log: Log | None = None) -> list[Written]:
    """Convert every official file under `path` into `out/<stage>.ckpt`; returns what was written."""
    options = options or ImportOptions()
    path, out = Path(path), Path(out)
    results: list[tuple[Path, Converted]] = []
    for src, scanned in _sources(path):
        try:
            convs = convert_file(src, options)
        except NotImportable as exc:
            if not scanned:
                raise
            if log:
                log(f"skipped {src.name}: {exc}")
            continue
        results += [(src, c) for c in convs]
    if not results:
        raise VgsError(f"{path}: nothing to import")
    plan = _plan(results)
    for src, conv in plan:
        verify(conv, str(src))
    written = []
    for src, conv in plan:
        if conv.stage == "transformer":
            codebook = out / "codebook.ckpt"
            conv.extra.update(codebook_path=str(codebook.resolve()), codebook_sha256=file_sha256(codebook))
        written.append(_write(out, src, conv, options.force))
    return written
