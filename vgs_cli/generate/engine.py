"""`vgs generate`: video -> visual features -> sampled codes -> mel -> waveform, for any video length.

    bundle = load_bundle(resolve_models(model_dir), vocoder="melgan")
    paths = generate_video(bundle, "clip.mp4", "out.wav", GenerateOptions(samples=3, seed=0))

The visual features are extracted exactly as `vgs prepare` did for the transformer's training data: the
extractor name, input size and weights (by SHA-256) come from the transformer checkpoint. Length: the
output is as long as the video. Up to the model's window (53 code columns = 9.85 s) one window is sampled
and cut; beyond it the window slides one column (16 mel frames) at a time, each new column predicted from
the previous 52 columns of codes, with the visual condition window moving along the video (the paper's
approach to long sounds). Videos shorter than 10 s are looped to 215 frames for the condition, as the
training data were, and the output is cut to the video's own length.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vgs_cli.audio import spec
from vgs_cli.config.spec import SPEC
from vgs_cli.config.transformer import GPTConfig
from vgs_cli.data.condition import condition_frames, resample_indices
from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.loading.model_folder import ModelPaths, find_checkpoints, resolve_models  # noqa: F401 (re-exported)
from vgs_cli.models import sampling
from vgs_cli.models.gpt import GPT, from_sequence


@dataclass(frozen=True)
class GenerateOptions:
    samples: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int = 0
    class_name: str | None = None  # for class-conditioned transformers
    use_cache: bool = True
    quantize: str = "none"  # "int8": int8 GPT weights on CPU (loading/quantize.py)
    precision: str = "fp32"  # "bf16"/"fp16": sample under autocast, KV cache in that dtype (GPU)
    window_stride: int = 1  # long videos: code columns drawn per window slide (the paper: 1)

    def __post_init__(self) -> None:
        from vgs_cli.loading.quantize import check_speed_options

        check_speed_options(self.quantize, self.precision)
        if not 1 <= self.window_stride <= 52:
            raise VgsError(f"--window-stride must be between 1 and 52 code columns, got {self.window_stride}")

    def sampling_kwargs(self, generator: torch.Generator) -> dict[str, Any]:
        return dict(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, greedy=self.greedy,
                    generator=generator, use_cache=self.use_cache)


@dataclass
class Bundle:
    """Everything `generate` needs, loaded once."""

    gpt: GPT
    codebook: torch.nn.Module
    vocoder: Any  # pipeline.vocode.Vocoder
    extra: dict[str, Any]  # the transformer checkpoint's provenance (condition, extractor, classes, ...)
    paths: ModelPaths
    device: torch.device
    _extractor: Any = field(default=None, repr=False)
    quantized: str = "none"  # what `sampling_gpt` turned `gpt` into (in place: no second copy in memory)

    @property
    def condition(self) -> str:
        return self.gpt.cfg.condition


def load_bundle(paths: ModelPaths, vocoder: str = "melgan", device: str | None = None,
                gl_iters: int = 32) -> Bundle:
    """Load and cross-check the models: a codebook other than the transformer's is an error."""
    from vgs_cli.generate.vocode import load_vocoder
    from vgs_cli.loading.models import check_codebook_match, load_model

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpt, _, t_ckpt = load_model(paths.transformer, "transformer", base=paths.base)
    check_codebook_match(t_ckpt, paths.codebook)
    codebook, _, _ = load_model(paths.codebook, "codebook")
    if codebook.cfg.n_embed != gpt.cfg.vocab_size:
        raise CheckpointError(f"{paths.codebook} has {codebook.cfg.n_embed} codes but the transformer predicts "
                              f"{gpt.cfg.vocab_size}")
    voc = load_vocoder(vocoder, paths.vocoder, device=dev, n_iter=gl_iters)
    return Bundle(gpt.to(dev).eval(), codebook.to(dev).eval(), voc, dict(t_ckpt.get("extra", {})), paths, dev)


# --------------------------------------------------------------------------------------------- features

def extractor_for(bundle: Bundle, visual_weights: str | os.PathLike | None = None, quantize: str = "none"):
    """The transformer's feature extractor, with the very weights (by SHA-256) it was trained on, made the way
    its training features were (fp32 / bf16 / int8: `feature_paths.generation_precision`; a fp32-trained
    transformer under `--quantize int8` takes the extractor's fast kind: bf16 on a native-bf16 CPU, else int8)."""
    from vgs_cli.loading.extractors import FeatureExtractor, get_spec
    from vgs_cli.loading.feature_paths import generation_precision

    name, settings = bundle.extra.get("extractor"), dict(bundle.extra.get("extractor_settings") or {})
    if not name or not settings:
        raise CheckpointError(f"{bundle.paths.transformer} does not record its visual feature extractor")
    precision = generation_precision(name, settings, quantize)
    if bundle._extractor is not None and bundle._extractor.precision == precision:
        return bundle._extractor
    weights = None
    if not settings.get("random_weights"):
        weights = Path(visual_weights) if visual_weights else get_spec(name).default_weights()
        from vgs_cli.fsutil import file_sha256

        want = settings.get("weights_sha256")
        if want and file_sha256(weights) != want:
            raise VgsError(f"{weights} are not the {name} weights the transformer's features came from "
                           f"({settings.get('weights')}); pass the right file with --visual-weights")
    bundle._extractor = FeatureExtractor(name, settings, weights, precision=precision)
    return bundle._extractor


def video_duration(path: str | os.PathLike) -> float:
    """Seconds of the video stream (the audio track, if any, may be a little longer or shorter); a variable
    frame rate's from its timestamps (`data.video.stream_duration`)."""
    from vgs_cli.audio.io import probe

    info = probe(path)
    if not info.has_video:
        raise VgsError(f"{path} has no video stream")
    from vgs_cli.data.video import stream_duration

    return stream_duration(path, info.fps) or info.duration_s


def video_features(bundle: Bundle, path: str | os.PathLike, visual_weights: str | None = None,
                   quantize: str = "none") -> np.ndarray:
    """`float32[L, D]`: features of every frame at 21.5 fps (as `prepare` computes them)."""
    from vgs_cli.data.video import read_frames
    from vgs_cli.loading.extractors import frame_path

    ext = extractor_for(bundle, visual_weights, quantize)
    frames = read_frames(path, short_side=ext.settings["resize_short"], frame_path=frame_path(ext.settings))
    return ext(frames)


def extend_features(feats: np.ndarray, num_steps: int, cfg: GPTConfig) -> np.ndarray:
    """Rows enough for every condition window: loop a short clip to 215 frames (as the training data),
    then hold the last frame for the few frames a window may need past the end. `[L, D] -> [L', D]`."""
    n = SPEC.num_video_frames
    if len(feats) < n:
        feats = feats[np.arange(n) % len(feats)]
    last_window = condition_start(cfg, max(0, num_steps - cfg.grid[1]))
    need = last_window + cfg.feat_window + 2  # 2 spare frames: video and code timings differ by < 1 frame
    if len(feats) < need:
        feats = np.concatenate([feats, np.repeat(feats[-1:], need - len(feats), axis=0)])
    return feats


def condition_features(bundle: Bundle, path: str | os.PathLike, num_steps: int,
                       visual_weights: str | None = None, quantize: str = "none") -> np.ndarray:
    """`extend_features(video_features(...), num_steps)`, but the network sees only the frames some condition
    window reads: a 1- or 5-frame transformer's 1 or 5 per window (the ones its training data used), not all
    215; rows no window reads stay zero. `-> float32[L', D]`."""
    from vgs_cli.data.video import read_frames
    from vgs_cli.loading.extractors import frame_path

    cfg = bundle.gpt.cfg
    ext = extractor_for(bundle, visual_weights, quantize)
    frames = read_frames(path, short_side=ext.settings["resize_short"], frame_path=frame_path(ext.settings))
    source = extend_features(np.arange(len(frames))[:, None], num_steps, cfg)[:, 0]  # frame behind each row
    picks = resample_indices(cfg.feat_window, cfg.feat_frames)  # as `condition_frames` picks them
    starts = [condition_start(cfg, s) for s in range(max(0, num_steps - cfg.grid[1]) + 1)]  # `sample_long`'s
    rows = np.unique(np.add.outer(starts, picks))
    picked = np.unique(source[rows[rows < len(source)]])  # rows past the end are zeros in the condition
    feats = np.zeros((len(frames), int(ext.settings["dim"])), dtype=np.float32)
    feats[picked] = ext(frames[picked], calibrate_on=frames)  # int8: calibrated on the clip, not the few picked
    return feats[source]


def speed_report(bundle: Bundle, opts: GenerateOptions) -> list[str]:
    """What `vgs generate --verbose` prints: what the CPU offers and which path each stage ran."""
    from vgs_cli.cpu import cpu_info

    lines = [f"cpu: {cpu_info().summary()}"]
    ext = bundle._extractor
    if ext is not None:
        lines.append(f"visual features: {ext.name} {ext.path.describe()}")
    elif bundle.gpt.cfg.uses_feats:
        lines.append("visual features: read from the shards (made as the transformer's training features)")
    gpt = ("int8 weights (torch's dynamic int8 Linear, per-channel; fbgemm/oneDNN kernels)"
           if bundle.quantized == "int8" else f"{opts.precision}" + (" autocast" if opts.precision != "fp32" else ""))
    lines.append(f"transformer: {gpt} on {bundle.device.type}")
    return lines


# --------------------------------------------------------------------------------------------- sampling

def condition_start(cfg: GPTConfig, start_step: int) -> int:
    """Video frame where the condition window of the code window starting at column `start_step` begins:
    the training clip's centre-crop offset (1), then `video_frames_per_column` (4) frames per column."""
    return cfg.feat_offset + cfg.video_frames_per_column * start_step


def steps_for_samples(n_samples: int, cfg: GPTConfig) -> int:
    """Code columns that cover `n_samples` of audio: ceil(mel frames / mel frames per column (16))."""
    return max(1, math.ceil(spec.num_frames(n_samples) / cfg.mel_frames_per_column))


def _class_tensor(bundle: Bundle, labels: list[int] | None, class_name: str | None, batch: int) -> torch.Tensor | None:
    if not bundle.gpt.cfg.uses_class:
        if class_name is not None:
            raise VgsError(f"--class {class_name}: this transformer is conditioned on {bundle.condition!r}, not on "
                           "a class name; drop --class")
        return None
    if labels is None:
        classes = list(bundle.extra.get("classes") or [])
        if class_name is None:
            raise VgsError(f"this transformer is class-conditioned: pass --class (one of {', '.join(classes[:12])})")
        if class_name not in classes:
            more = f" and {len(classes) - 12} more" if len(classes) > 12 else ""
            raise VgsError(f"unknown class {class_name!r} (the transformer knows {', '.join(classes[:12])}{more})")
        labels = [classes.index(class_name)] * batch
    return torch.tensor(labels, dtype=torch.long, device=bundle.device)


@torch.no_grad()
def sample_codes(bundle: Bundle, feats: np.ndarray | None, num_steps: int, opts: GenerateOptions,
                 labels: list[int] | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Codes for `num_steps` columns: `feats` `float32[B, L, D]` (or None) -> `Tensor[B*N, 5, num_steps]`."""
    from vgs_cli.loading.quantize import autocast

    gpt, cfg = sampling_gpt(bundle, opts.quantize), bundle.gpt.cfg
    batch = feats.shape[0] if feats is not None else len(labels) if labels is not None else 1
    cls = _class_tensor(bundle, labels, opts.class_name, batch)
    # Without any condition tensor the sampler cannot see the batch: ask it for B*N rows directly.
    per_cond = opts.samples if (cfg.uses_feats or cfg.uses_class) else batch * opts.samples
    ft = None if feats is None else torch.from_numpy(np.ascontiguousarray(feats)).to(bundle.device)

    def window(start: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not cfg.uses_feats:
            return None, cls
        return condition_frames(ft, cfg.feat_frames, cfg.feat_window, condition_start(cfg, start)), cls

    if generator is None:
        generator = torch.Generator(device=bundle.device).manual_seed(opts.seed)
    with autocast(bundle.device, opts.precision):
        seq = sampling.sample_long(gpt, window, num_steps, num_samples=per_cond, step_stride=opts.window_stride,
                                   **opts.sampling_kwargs(generator))
    return from_sequence(seq, (cfg.grid[0], num_steps))


def sampling_gpt(bundle: Bundle, quantize: str = "none") -> GPT:
    """The GPT to sample with: `bundle.gpt`, quantized in place on first use (a bundle serves one mode)."""
    if quantize == bundle.quantized:
        return bundle.gpt
    if bundle.quantized != "none":
        raise VgsError(f"these models were loaded for --quantize {bundle.quantized}; load them again for {quantize}")
    from vgs_cli.loading.quantize import quantize_gpt

    bundle.gpt = quantize_gpt(bundle.gpt, quantize, inplace=True)
    bundle.quantized = quantize
    return bundle.gpt


@torch.no_grad()
def codes_to_audio(bundle: Bundle, codes: torch.Tensor, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`Tensor[B, 5, T']` codes -> (mel `Tensor[B, 80, 16 T']` on [0, 1], wav `Tensor[B, n_samples]`)."""
    mels = []
    for row in codes:  # one at a time: long clips make big activations
        x = bundle.codebook.decode_indices(row.unsqueeze(0).to(bundle.device))
        mels.append(spec.from_model_range(x[:, 0]))
    mel = torch.cat(mels)
    wav = bundle.vocoder.vocode(mel)
    wav = spec.pad_or_trim(wav, n_samples)
    return mel.float().cpu(), wav.float().cpu()
