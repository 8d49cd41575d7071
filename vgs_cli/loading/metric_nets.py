"""The av-benchmark audio networks from their published files: PaSST, PANNs Cnn14 (16 kHz), VGGish.

    net = load_audio_net("passt", weights_dir=None, device="cpu")   # -> AudioNet (module, sha256, path)

Each published file is found through `loading/weights.py` (--weights-dir, else the cache, else downloaded) and
loaded strictly (a file of another layout is one `CheckpointError` line naming the keys):
- PaSST `passt-s-f128-p16-s10-ap.476-swa.pt`: a plain state dict of the ViT (hear21passt's `net.*` without the
  prefix; a `net.`-prefixed wrapper state dict with `device_proxy` is accepted too);
- Cnn14 `Cnn14_16k_mAP=0.438.pth`: `ckpt["model"]` (the STFT kernels and the mel matrix come from the file);
- VGGish `vggish-10086976.pth`: a plain state dict of torchvggish's VGG; torch.hub's `pproc.*` PCA keys are
  dropped (av-benchmark does not post-process). Unlike av-benchmark's `strict=False`, any other missing or
  unexpected key is an error (theirs would leave random weights without a word).
VGGish comes from the `torchvggish` package (the `[metrics]` extra), with its last ReLU removed as av-benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.models import load_state_strict
from vgs_cli.loading.weights import weight_path

EXTRA_HINT = 'pip install -e ".[metrics]"'

# network name -> registry name of its weights
WEIGHTS = {"passt": "passt", "panns": "panns_cnn14_16k", "vggish": "vggish"}  # registered in weights.py
SAMPLE_RATES = {"passt": 32000, "panns": 16000, "vggish": 16000}


EXTRACTOR_WEIGHTS = ("resnet50",)  # registry entries that are not metric networks


def metric_weight_names() -> list[str]:
    """Every registered metric network's weights (the audio ones here and the video ones), for `vgs download --metrics`."""
    from vgs_cli.loading.weights import REGISTRY

    return sorted(n for n in REGISTRY if n not in EXTRACTOR_WEIGHTS)


@dataclass
class AudioNet:
    name: str  # "passt" | "panns" | "vggish"
    module: nn.Module
    path: Path
    sha256: str
    sample_rate: int


def require_vggish():
    """The torchvggish package, or one line naming the extra to install."""
    try:
        import torchvggish  # noqa: F401
        from torchvggish import torchvggish as tv
        from torchvggish import vggish_input
    except ImportError as exc:
        raise VgsError(f"FD_VGGish needs the torchvggish package ({exc.name or exc}): {EXTRA_HINT}") from None
    return tv, vggish_input


def build_vggish() -> nn.Module:
    """torchvggish's VGG without its final ReLU (av-benchmark's embedding layer): `[N, 1, 96, 64]` -> `[N, 128]`."""
    tv, _ = require_vggish()
    net = tv.VGG(tv.make_layers(), postprocess=False)
    net.embeddings = nn.Sequential(*list(net.embeddings.children())[:5])  # keeps the names 0, 2, 4
    return net


def build(name: str) -> nn.Module:
    """The network with random weights (tests, benchmarks)."""
    if name == "passt":
        from vgs_cli.models.passt import PaSSTAudio

        return PaSSTAudio()
    if name == "panns":
        from vgs_cli.models.cnn14 import Cnn14

        return Cnn14()
    if name == "vggish":
        return build_vggish()
    raise VgsError(f"unknown audio network {name!r}")


def _read(path: Path, what: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of many kinds: one line naming the file
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: cannot read the {what} weights ({first})") from None


def file_state(name: str, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a published file of network `name`, in the names `build(name)` uses."""
    obj = _read(path, name)
    if name == "panns":
        if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
            raise CheckpointError(f"{path}: not a PANNs checkpoint (expected a dict with a 'model' state dict)")
        return obj["model"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a state dict ({type(obj).__name__})")
    if name == "passt":
        if "device_proxy" in obj or any(k.startswith("net.") for k in obj):  # the wrapper's own state dict
            obj = {k[4:]: v for k, v in obj.items() if k.startswith("net.")}
        return {f"net.{k}": v for k, v in obj.items()}
    if name == "vggish":
        return {k: v for k, v in obj.items() if not k.startswith("pproc.")}
    raise VgsError(f"unknown audio network {name!r}")


def load_audio_net(name: str, weights_dir: str | Path | None = None, device: str | torch.device = "cpu",
                   download_ok: bool = True) -> AudioNet:
    """Network `name` with its published weights, in eval mode on `device`."""
    if name == "vggish":
        require_vggish()  # before any download: a missing extra is the first thing to say
    path = weight_path(WEIGHTS[name], weights_dir, download_ok=download_ok)
    module = build(name)
    load_state_strict(module, file_state(name, path), f"{path} ({name})")
    return AudioNet(name, module.to(device).eval(), path, file_sha256(path), SAMPLE_RATES[name])
