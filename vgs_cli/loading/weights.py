"""The one registry of downloadable network weights (visual extractors, metric networks) and how to get them.

    weight_path("passt", weights_dir=None) -> Path      # --weights-dir, else the cache, else download

A file is looked for, in order: in `weights_dir` (offline machines: `--weights-dir DIR` holding the published
file names), in `cache_dir()/weights/`, then downloaded there (resumable, through `data/download.py`). Where
the publisher gives a checksum (an MD5, or torch.hub's SHA-256 prefix in the file name) it is checked on
download; a full SHA-256 is pinned where we know it. A file the user put in `--weights-dir` is theirs: it is
not rejected for another checksum (tests and fine-tuned copies), but its SHA-256 is what provenance records.
Offline with no file: one line naming the file, its URL and the two ways round (exit 2), never a hang.

The official SpecVQGAN files keep their own list (`official/registry.py`, the published MD5s), but their
downloads land in the same cache folder (`cache_dir()/official`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vgs_cli.cache import cache_path
from vgs_cli.data.download import DownloadError, Progress, download
from vgs_cli.errors import VgsError
from vgs_cli.fsutil import file_sha256


@dataclass(frozen=True)
class WeightFile:
    name: str  # registry key: what code and `vgs download --metrics` call it
    filename: str  # the published file name (what --weights-dir must hold)
    url: str
    used_by: str  # one phrase for listings
    md5: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None  # torch.hub convention: the hex in the file name starts the SHA-256
    size: int | None = None  # bytes, for listings (None: not published)


REGISTRY: dict[str, WeightFile] = {}


def register(entry: WeightFile) -> WeightFile:
    """Add an entry (modules that own a network register its file at import time)."""
    if entry.name in REGISTRY and REGISTRY[entry.name] != entry:
        raise ValueError(f"weights {entry.name!r} registered twice with different entries")
    REGISTRY[entry.name] = entry
    return entry


register(WeightFile("resnet50", "resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                    "ResNet-50 visual features (torchvision's ImageNet V1 weights)",
                    sha256_prefix="0676ba61"))
# the av-benchmark audio metric networks (`loading/metric_nets.py`); no checksum is published for PaSST's
# release file, and Zenodo's MD5 of Cnn14_16k is not recorded (it could not be checked here)
register(WeightFile("passt", "passt-s-f128-p16-s10-ap.476-swa.pt",
                    "https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
                    "PaSST-S AudioSet (FD_PaSST, KL_PaSST, IS_PaSST)"))
register(WeightFile("panns_cnn14_16k", "Cnn14_16k_mAP=0.438.pth",
                    "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth",
                    "PANNs Cnn14 16 kHz (FD_PANNs, KL_PANNs, IS_PANNs)"))
register(WeightFile("vggish", "vggish-10086976.pth",
                    "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
                    "VGGish (FD_VGGish)", sha256_prefix="10086976"))
# DeSync's Synchformer (`loading/metric_nets_av.py`). MMAudio's download list publishes an MD5 for it; not
# recorded because it could not be confirmed here, so this download is not checksummed.
register(WeightFile("synchformer", "synchformer_state_dict.pth",
                    "https://github.com/hkchengrex/MMAudio/releases/download/v0.1/synchformer_state_dict.pth",
                    "Synchformer (DeSync)"))
# IB-score's ImageBind-huge (`loading/metric_nets_av.py`; the URL ImageBind's imagebind_huge() downloads). Meta
# publishes no checksum for it, so none is recorded and the download is not checksummed.
register(WeightFile("imagebind", "imagebind_huge.pth", "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
                    "ImageBind-huge (IB-score)"))


def weights_dir() -> Path:
    return cache_path("weights")


def get_entry(name: str) -> WeightFile:
    if name not in REGISTRY:
        raise VgsError(f"unknown weights {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


def _check_prefix(path: Path, entry: WeightFile) -> None:
    if entry.sha256_prefix and not file_sha256(path).startswith(entry.sha256_prefix):
        path.unlink(missing_ok=True)
        raise DownloadError(f"{entry.filename}: SHA-256 does not start with {entry.sha256_prefix} as published; "
                            "the corrupt download was deleted, run again")


def cached_path(name: str, weights_dir_: str | os.PathLike | None = None) -> Path | None:
    """The file if it is already on this machine (in `weights_dir_` or the cache), else None. No network."""
    entry = get_entry(name)
    for folder in ([Path(weights_dir_)] if weights_dir_ else []) + [weights_dir()]:
        if (folder / entry.filename).is_file():
            return folder / entry.filename
    return None


def weight_path(name: str, weights_dir_: str | os.PathLike | None = None, *, download_ok: bool = True,
                progress: Progress | None = None) -> Path:
    """The local path of weights `name`, downloading it into the cache if needed (see the module docstring)."""
    entry = get_entry(name)
    found = cached_path(name, weights_dir_)
    if found is not None:
        return found
    if weights_dir_ is not None:
        raise VgsError(f"{entry.filename} ({entry.used_by}) is not in --weights-dir {weights_dir_}: "
                       f"put the file from {entry.url} there")
    if not download_ok:
        raise VgsError(f"{entry.filename} ({entry.used_by}) is not in {weights_dir()}: "
                       f"run `vgs download --metrics` or fetch {entry.url} and pass --weights-dir DIR")
    dest = weights_dir() / entry.filename
    try:
        download(entry.url, dest, md5=entry.md5, sha256=entry.sha256, retries=2, timeout=30.0, progress=progress)
    except DownloadError as exc:
        raise VgsError(f"cannot download {entry.filename} ({exc}); on a machine without network, fetch "
                       f"{entry.url} elsewhere and pass --weights-dir DIR (or copy it to {weights_dir()})") from None
    _check_prefix(dest, entry)
    return dest


def listing() -> list[dict[str, object]]:
    """Rows for `vgs doctor` / `vgs download --list`: each registered file and whether it is cached."""
    rows = []
    for entry in sorted(REGISTRY.values(), key=lambda e: e.name):
        path = cached_path(entry.name)
        rows.append({"name": entry.name, "file": entry.filename, "used_by": entry.used_by, "url": entry.url,
                     "cached": str(path) if path else None, "bytes": path.stat().st_size if path else None})
    return rows
