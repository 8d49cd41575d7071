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

IB-score (inputs: metrics/ib_inputs.py). The video at 0.5 fps, three crops per frame, consecutive frames as
2-frame clips; ImageBind's video embedding is the mean of the unit embeddings of every crop of every clip of
the first `duration_s` seconds (int(0.5 * duration_s) frames: 3 clips x 3 crops for 8 s); the audio embedding
the mean over three 2-s clips spread over the whole generated file; "ib" is their cosine (av-benchmark's, which
`vgs eval` averages over the pairs). A video with fewer frames than that is scored over the clips it has
(av-benchmark dropped it from the set), a one-frame video as ImageBind scores an image (the frame repeated);
audio shorter than one 25-ms fbank frame gets {"ib": None, "windows": [], "skipped": reason}.
"windows": one per `duration_s` of the time both files cover (video frames and audio), from 0 s every
`duration_s`, plus a last one ending at the last usable frame; each window's video embedding is the mean over
its own clips and its audio embedding ImageBind's three 2-s clips of that window's audio. A clip within one
window has the single window {"start_s": 0.0, "ib": ib}. The per-clip, per-crop embeddings of the whole video
are cached per file content and weights, so windows and later evaluations cost only the audio path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vgs_cli.loading.metric_nets_av import load_imagebind, load_synchformer
from vgs_cli.metrics import ib_inputs as ii
from vgs_cli.metrics import sync_inputs as si
from vgs_cli.metrics.feature_cache import FeatureCache
from vgs_cli.models.imagebind import ImageBind
from vgs_cli.models.synchformer import OFFSET_GRID_S, Synchformer

IB_VIDEO_NETWORK = f"imagebind-video-{ii.FPS}fps-{ii.SIZE}-{ii.CROPS}crops"  # the video cache's settings


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
              batch_size: int = 8, duration_s: float = 8.0) -> list[dict]:
    """Per pair, in order: {"ib": float cosine, "windows": [{"start_s": float, "ib": float}, ...]}.

    See the module docstring; `duration_s`: the seconds of video the score uses (av-benchmark's audio_length,
    8 by default); `batch_size`: ImageBind inputs (crops of clips, audio clips) per forward."""
    if not pairs:
        return []
    model, sha = load_imagebind(weights_dir, device)
    cache = FeatureCache(IB_VIDEO_NETWORK, sha)
    return [ib_one(model, cache, pair, device, batch_size, duration_s) for pair in pairs]


def ib_video_embeddings(model: ImageBind, path: Path, device: str, batch_size: int) -> np.ndarray:
    """`float32[K, 3, D]`: the unit embedding of each crop of each 2-frame clip of the whole video (K = frames
    - 1; 1 for a one-frame video)."""
    crops = ii.load_crops(path, model.cfg.image_size)  # [3, N, 3, S, S]
    step = max(1, batch_size // ii.CROPS)  # clips per forward
    out = []
    for i in range(0, max(crops.shape[1] - 1, 1), step):
        clips = ii.frame_clips(crops[:, i:i + step + 1])  # [k, 3, 3, 2, S, S]
        emb = model.embed_vision(clips.flatten(0, 1).to(device)).float().cpu()
        out.append(emb.view(len(clips), ii.CROPS, -1))
    return torch.cat(out).numpy()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.cosine_similarity(a, b, dim=-1))


@torch.inference_mode()
def ib_one(model: ImageBind, cache: FeatureCache, pair: AVPair, device: str, batch_size: int,
           duration_s: float = 8.0) -> dict:
    """One pair's entry of `ib_scores` with a loaded model (bench/av_metrics.py times this)."""
    wave = ii.load_audio(pair.audio)  # [C, S] at 16 kHz
    if wave.shape[-1] < ii.FRAME_LEN:
        return {"ib": None, "windows": [], "skipped": f"the audio lasts {1000 * wave.shape[-1] / ii.SAMPLE_RATE:.1f} "
                "ms, shorter than one 25-ms ImageBind fbank frame"}
    vemb = torch.from_numpy(cache.get_or_compute(
        pair.video, lambda p: ib_video_embeddings(model, p, device, batch_size)))  # [K, 3, D]
    n = ii.main_frames(duration_s)
    usable = min(len(vemb) + 1, int(wave.shape[-1] / ii.SAMPLE_RATE * ii.FPS))  # frames both files cover
    starts = ii.window_starts(usable, n) if usable > n else []
    sr_frame = int(ii.SAMPLE_RATE / ii.FPS)  # samples per 0.5-fps frame (2 s)
    mels = torch.cat([ii.audio_clips(wave)] + [ii.audio_clips(wave[:, s * sr_frame:(s + n) * sr_frame])
                                               for s in starts])  # [3 * (1 + windows), 1, 128, 204]
    aemb = torch.cat([model.embed_audio(mels[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(mels), max(1, batch_size))])
    aemb = aemb.view(-1, ii.AUDIO_CLIPS, aemb.shape[-1]).mean(dim=1)  # [1 + windows, D]
    ib = _cosine(vemb[:n - 1].flatten(0, 1).mean(dim=0), aemb[0])
    if not starts:
        return {"ib": ib, "windows": [{"start_s": 0.0, "ib": ib}]}
    windows = [{"start_s": float(s / ii.FPS), "ib": _cosine(vemb[s:s + n - 1].flatten(0, 1).mean(dim=0), a)}
               for s, a in zip(starts, aemb[1:], strict=True)]
    return {"ib": ib, "windows": windows}
