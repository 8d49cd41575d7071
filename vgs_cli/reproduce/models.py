"""The four official files one row of the paper's table needs, found where they were imported or fetched.

A transformer goes to `MODELS/<run>/` (its `transformer.ckpt` and the `codebook.ckpt` it was trained with:
several transformers can live side by side); MelGAN and Melception to `MODELS/melgan/` and
`MODELS/melception/`. A file already imported by `vgs download -o MODELS` (straight into `MODELS/`) or by an
earlier `vgs reproduce` is used as it is when its recorded official run is the one wanted; anything else is
fetched (resuming, MD5-checked) and imported by `official.fetch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vgs_cli.errors import VgsError
from vgs_cli.loading.models import peek_checkpoint
from vgs_cli.official import registry

Log = Callable[[str], None]
# what each official file becomes: (vgs stage file names, folder below MODELS)
_FILES = {"melgan": ("vocoder.ckpt",), "melception": ("melception.ckpt",)}


@dataclass(frozen=True)
class OfficialModels:
    transformer: Path
    codebook: Path
    vocoder: Path
    melception: Path | None  # None when not asked for (`vgs download NAME --default` needs no classifier)
    entry: registry.Entry  # the transformer's row (paper numbers in entry.info)
    fetched: tuple[str, ...]  # names downloaded by this call (empty: everything was already there)


def transformer_entry(name: str) -> registry.Entry:
    """The registry row of an official transformer (alias, run or file name); other kinds are an error."""
    entry = registry.find(name)
    if entry.kind != "transformer":
        raise VgsError(f"{name!r} is the official {entry.kind}, not a transformer; `vgs reproduce` takes one of "
                       "the [transformer] names of `vgs download --list` (e.g. vas_c_212feats_resnet50)")
    return entry


def official_run(path: Path) -> str | None:
    """The official run a vgs checkpoint was imported from (memory-mapped: no tensor is read), else None."""
    ckpt = peek_checkpoint(path) if path.is_file() else None
    official = (ckpt.get("extra") or {}).get("official") if ckpt is not None else None
    return official.get("run") if isinstance(official, dict) else None


def _find(run: str, names: tuple[str, ...], folders: list[Path]) -> list[Path] | None:
    for folder in folders:
        paths = [folder / n for n in names]
        if official_run(paths[0]) == run and all(p.is_file() for p in paths):
            return paths
    return None


def _fetch(name: str, folder: Path, base_url: str | None, log: Log) -> None:
    from vgs_cli.official.fetch import download_official

    log(f"fetching {name} into {folder}")
    download_official([name], folder, base_url=base_url, log=log)


def find_or_fetch(name: str, models: Path, *, base_url: str | None = None, log: Log = print,
                  melception: bool = True) -> OfficialModels:
    """Transformer `name`, its codebook, MelGAN and Melception (unless `melception=False`): found under
    `models`, else fetched there."""
    entry = transformer_entry(name)
    fetched: list[str] = []
    t_folder = models / entry.run
    found = _find(entry.run, ("transformer.ckpt", "codebook.ckpt"), [t_folder, models])
    if found is None:
        _fetch(entry.run, t_folder, base_url, log)
        fetched.append(entry.alias or entry.run)
        found = _find(entry.run, ("transformer.ckpt", "codebook.ckpt"), [t_folder])
    if found is None:
        raise VgsError(f"{t_folder} holds no transformer imported from {entry.run} after fetching it "
                       "(delete the folder and run again)")
    paths = {"transformer": found[0], "codebook": found[1]}
    for alias, names in _FILES.items():
        if alias == "melception" and not melception:
            paths[alias] = None
            continue
        run = registry.find(alias).run
        hit = _find(run, names, [models / alias, models])
        if hit is None:
            _fetch(alias, models / alias, base_url, log)
            fetched.append(alias)
            hit = _find(run, names, [models / alias])
        if hit is None:
            raise VgsError(f"{models / alias} holds no {alias} imported from {run} after fetching it "
                           "(delete the folder and run again)")
        paths[alias] = hit[0]
    return OfficialModels(paths["transformer"], paths["codebook"], paths["melgan"], paths["melception"], entry,
                          tuple(fetched))
