"""The audio-visual metrics of the av-benchmark protocol: DeSync (Synchformer) and IB-score (ImageBind-huge).

    desync_scores(pairs, weights_dir=None, device="cpu") -> [{"desync": s, "windows": [{"start_s", "offset_s"}]}]
    ib_scores(pairs, weights_dir=None, device="cpu")     -> [{"ib": cos, "windows": [{"start_s", "ib"}]}]

Each pair is a ground-truth video (its frames) and a generated audio file; the result lists follow the
pairs' order. `vgs eval` (metrics/evaluate.py) pairs the files and aggregates; this module only scores.

DeSync (inputs: metrics/sync_inputs.py). A clip is cut into 0.64-s segments every 0.32 s, video and audio on
the same times, over the length both files have (the shorter of the two). Synchformer predicts the offset
of a window of 14 segments (4.8 s) as one of 21 classes from -2 to +2 s; "desync" is the mean |offset| of
the first and the last window (av-benchmark's two; the same window twice for a 4.8-s clip), "windows" the
offsets of those and, for long clips, of the windows tiling the time between them (every 4.8 s).
A clip shorter than 4.8 s cannot be scored (the net takes exactly 14 segments): its entry is
{"desync": None, "windows": [], "skipped": "<why>"} and the others are scored (av-benchmark raised an
IndexError on such videos; audio shorter than the video is scored over the audio's length, where av-benchmark
silently took the next file's audio).
The video side's per-segment features are cached per file content and weights (`metrics/feature_cache.py`),
so scoring another set of generated audio for the same videos runs only the audio branch and the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vgs_cli.errors import VgsError
from vgs_cli.loading.metric_nets_av import load_synchformer
from vgs_cli.metrics import sync_inputs as si
from vgs_cli.metrics.feature_cache import FeatureCache
from vgs_cli.models.synchformer import OFFSET_GRID_S, Synchformer


@dataclass(frozen=True)
class AVPair:
    key: str  # clip id (pairing key)
    sample: str  # the fake audio file's name (one clip can have several samples)
    video: Path  # the source video (ground-truth frames)
    audio: Path  # the generated audio file


def desync_scores(pairs: Sequence[AVPair], *, weights_dir: Path | None, device: str,
                  batch_size: int = 8) -> list[dict]:
    """Per pair, in order: {"desync": float seconds, "windows": [{"start_s": float, "offset_s": float}, ...]}.

    "desync" is the mean |offset| of the first and the last 4.8-s window (see the module docstring); a clip
    shorter than one window gets {"desync": None, "windows": [], "skipped": reason}. `batch_size`: segments
    per forward of each branch."""
    if not pairs:
        return []
    model, sha = load_synchformer(weights_dir, device)
    cache = FeatureCache(f"synchformer-video-{si.FPS}fps-{si.SIZE}", sha)
    return [desync_one(model, cache, pair, device, batch_size) for pair in pairs]


def _batched(fn, segments: torch.Tensor, device: str, batch_size: int) -> torch.Tensor:
    """`fn` over `[S, ...]` segments `batch_size` at a time (as one clip of b segments): `-> [S, tokens, D]`."""
    out = [fn(segments[i:i + batch_size].unsqueeze(0).to(device))[0].float().cpu()
           for i in range(0, len(segments), max(1, batch_size))]
    return torch.cat(out)


def pair_video_s(n_segments: int) -> float:
    """The seconds of video `n_segments` segments cover (0 for none)."""
    return (n_segments - 1) * si.SEGMENT_S + si.SEG_FRAMES / si.FPS if n_segments else 0.0


@torch.inference_mode()
def desync_one(model: Synchformer, cache: FeatureCache, pair: AVPair, device: str, batch_size: int) -> dict:
    """One pair's entry of `desync_scores` with a loaded model (bench/av_metrics.py times this)."""
    wav = si.load_audio16k(pair.audio)
    n_audio = si.segment_count(len(wav), si.SEG_SAMPLES, si.SEG_HOP_SAMPLES)

    def video_features(path: Path) -> np.ndarray:  # [S_video, 8, D] over the whole video
        frames = si.load_frames(path)
        if si.segment_count(len(frames), si.SEG_FRAMES, si.SEG_STEP) == 0:
            return np.zeros((0, model.cfg.video_tokens, model.cfg.video.dim), np.float32)
        return _batched(model.features_video, si.video_segments(frames), device, batch_size).numpy()

    vfeats = torch.from_numpy(cache.get_or_compute(pair.video, video_features))
    n = min(len(vfeats), n_audio)
    starts = si.window_starts(n, model.cfg.segments)
    if not starts:
        seconds = min(len(wav) / si.SAMPLE_RATE, pair_video_s(len(vfeats)))
        return {"desync": None, "windows": [],
                "skipped": f"video and audio overlap for {seconds:.2f} s, shorter than one 4.8-s Synchformer window"}
    mels = si.log_mels(si.audio_segments(wav)[:n])
    afeats = _batched(model.features_audio, mels, device, batch_size)
    windows = []
    for s in starts:
        w = slice(s, s + model.cfg.segments)
        logits = model.offset_logits(vfeats[w][None].to(device), afeats[w][None].to(device))
        offset = float(OFFSET_GRID_S[int(logits[0].argmax())])
        # + 0.0: the centre class is -3e-8 in float32 (torch.linspace, as Synchformer's grid): no "-0.0"
        windows.append({"start_s": round(s * si.SEGMENT_S, 6), "offset_s": round(offset, 6) + 0.0})
    desync = (abs(windows[0]["offset_s"]) + abs(windows[-1]["offset_s"])) / 2
    return {"desync": desync, "windows": windows}


def ib_scores(pairs: Sequence[AVPair], *, weights_dir: Path | None, device: str,
              batch_size: int = 8) -> list[dict]:
    """Per pair, in order: {"ib": float cosine, "windows": [{"start_s": float, "ib": float}, ...]}."""
    raise VgsError("the IB-score (ImageBind-huge) is not available in this version of vgs yet (issue 26); "
                   "leave `ib` out of --metrics")
