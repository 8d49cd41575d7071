"""`vgs eval` in today's protocol (av-benchmark, MMAudio's Table 1) beside the 2021 one (Melception).

    evaluate_av(real, fake, AVSettings(metrics=("fd_passt", ...)), device="cpu") -> result dict

Real side: a shard folder (`SHARDS[:SPLIT]`, the stored 22050-Hz waveforms) or a folder of audio files
(`<clip_id>.wav`). Fakes: audio files below `fake` (`<clip_id>.wav` or `<clip_id>_sample_<k>.wav`). Pairs are
made by clip id exactly as the Melception MKL does (`fakes.match_real_ids`: the stem without `_sample_<k>`,
sub-folders, `cls_<i>` folders); every sample of a clip pairs with that clip's real (av-benchmark's rule,
without its `clean_sample_name` rewriting that drops ids of 18, 20, 21 or 30 characters).

Metrics: FD on PaSST / PANNs embeddings (one per clip) and on VGGish frames (every 0.96-s frame of every clip,
pooled); KL(gt || pred) on PANNs / PaSST logits per pair, averaged; IS on the fakes' logits ordered by file
name (seed 2020, 10 splits); IB-score and DeSync through `av_metrics` (ground-truth video x generated audio).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vgs_cli.errors import DataError, VgsError
from vgs_cli.metrics import av_audio
from vgs_cli.metrics import fakes as F
from vgs_cli.metrics.av_formulas import kl_per_pair, mean_ci95, sample_index
from vgs_cli.metrics.fid import fid
from vgs_cli.metrics.isc import inception_score

SPEC_METRICS = ("fid", "kid", "isc", "mkl")
AV_METRICS = ("fd_passt", "fd_panns", "fd_vggish", "kl_panns", "kl_passt", "is_panns", "is_passt", "ib", "desync")
# MMAudio's Table 1: FD_PaSST, FD_PANNs, FD_VGG, KL_PANNs, KL_PaSST, IS (PANNs), IB-score, DeSync
PROTOCOLS = {
    "av-benchmark": ("fd_passt", "fd_panns", "fd_vggish", "kl_panns", "kl_passt", "is_panns", "ib", "desync"),
    "specvqgan": SPEC_METRICS,
}
NETWORK_OF = {"fd_passt": "passt", "kl_passt": "passt", "is_passt": "passt", "fd_panns": "panns",
              "kl_panns": "panns", "is_panns": "panns", "fd_vggish": "vggish"}
PAIR_METRICS = ("kl_panns", "kl_passt", "ib", "desync")  # per (clip, sample): the per-file CSV's columns
# metric -> the weight file it needs (`loading/weights.py` registry names)
WEIGHTS_OF = {"fd_passt": "passt", "kl_passt": "passt", "is_passt": "passt", "fd_panns": "panns_cnn14_16k",
              "kl_panns": "panns_cnn14_16k", "is_panns": "panns_cnn14_16k", "fd_vggish": "vggish",
              "ib": "imagebind", "desync": "synchformer"}


def split_by_weights(metrics: tuple[str, ...], weights_dir: Path | None = None) -> tuple[tuple[str, ...], dict[str, str]]:
    """`metrics` -> (those whose av-benchmark weights are on this machine or need none, {metric: missing file}).
    Looks in `weights_dir` and the cache only (no download): what `make demo`, `vgs reproduce` and
    `vgs eval --skip-missing` use to score "when their weights are present"."""
    from vgs_cli.loading.weights import REGISTRY, cached_path

    keep, missing = [], {}
    for m in metrics:
        name = WEIGHTS_OF.get(m)
        if name is None:
            keep.append(m)
        elif name not in REGISTRY:
            missing[m] = f"{name} (not available in this vgs)"
        elif cached_path(name, weights_dir) is None:
            missing[m] = REGISTRY[name].filename
        else:
            keep.append(m)
    return tuple(keep), missing


def parse_selection(metrics: str | None, protocol: str | None) -> tuple[str, ...]:
    """--metrics / --protocol -> the metric names, in table order. "all": both protocols, every network."""
    names: list[str] = []
    if protocol:
        if protocol not in PROTOCOLS:
            raise VgsError(f"unknown --protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        names += PROTOCOLS[protocol]
    if metrics:
        for n in (t.strip().lower() for t in metrics.split(",") if t.strip()):
            names += [*SPEC_METRICS, *AV_METRICS] if n == "all" else [n]
    if not names:
        names = list(SPEC_METRICS)  # `vgs eval` without either: the 2021 protocol, as before
    bad = [n for n in names if n not in SPEC_METRICS + AV_METRICS]
    if bad:
        raise VgsError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(SPEC_METRICS + AV_METRICS)} "
                       f"(or all), or --protocol {'/'.join(PROTOCOLS)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class AVSettings:
    metrics: tuple[str, ...] = PROTOCOLS["av-benchmark"]
    batch_size: int = 8
    audio_length: float | None = 8.0  # av-benchmark's default (MMAudio's 8-s clips); None: whole files
    is_splits: int = 10
    seed: int = 2020
    use_cache: bool = True


@dataclass(frozen=True)
class RealSet:
    ids: list[str]
    sources: list[av_audio.AudioSource]
    videos: dict[str, str]  # clip id -> recorded source video (shards), may be relative
    classes: tuple[str, ...]
    where: str


def real_set(spec: str) -> RealSet:
    """The real clips: a shard split (`SHARDS[:SPLIT]`) or a folder of audio files."""
    from vgs_cli.metrics.evaluate import parse_real, pick_split

    root, split = parse_real(spec)
    if root.is_dir() and not (root / "manifest.json").is_file() and not any(root.glob("shard_*.h5")):
        items = F.scan_fakes(root, "wav")
        return RealSet([it.rel for it in items], [av_audio.AudioSource(it.path.name, path=it.path) for it in items],
                       {}, (), str(root))
    from vgs_cli.config.spec import SPEC
    from vgs_cli.data.shards import iter_clips

    split, manifest = pick_split(root, split)
    ids, sources, videos = [], [], {}
    for clip in iter_clips(root, split, fields=("id", "wav", "source")):
        ids.append(clip["id"])
        sources.append(av_audio.AudioSource(clip["id"], wave=clip["wav"], sample_rate=SPEC.sample_rate))
        if clip.get("source"):
            videos[clip["id"]] = clip["source"]
    if not ids:
        raise DataError(f"{root}: no clips in the {split} split")
    return RealSet(ids, sources, videos, tuple(manifest.get("classes", ())), f"{root}:{split}")


def find_videos(keys: list[str], real: RealSet, videos_dir: Path | None) -> dict[str, Path]:
    """Clip id -> its source video: `--videos DIR` (<id>.<ext>, <base name>.<ext> or the shard's recorded
    relative path), else the path the shards recorded when it exists. Missing: one line saying how."""
    from vgs_cli.data.video import VIDEO_EXTS

    out: dict[str, Path] = {}
    for key in keys:
        cands: list[Path] = []
        rec = real.videos.get(key)
        if videos_dir is not None:
            for stem in dict.fromkeys([key, key.rsplit("/", 1)[-1]]):
                cands += [videos_dir / f"{stem}{ext}" for ext in VIDEO_EXTS]
            if rec:
                cands.append(videos_dir / rec)
        if rec:
            cands.append(Path(rec))
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            hint = f"in --videos {videos_dir}" if videos_dir else "(pass --videos DIR: the source videos by clip id)"
            raise DataError(f"IB-score/DeSync need the source video of clip {key!r}: none found {hint}")
        out[key] = found
    return out


def _needs(metrics: tuple[str, ...], net: str, kind: str) -> bool:
    return any(NETWORK_OF.get(m) == net and m.startswith(kind) for m in metrics)


def evaluate_av(real: str, fake: str | Path, settings: AVSettings, *, device: str = "cpu",
                weights_dir: Path | None = None, videos: Path | None = None,
                progress: Callable[[str, int], Callable[[int], None] | None] | None = None) -> dict[str, Any]:
    """Score the fakes in the av-benchmark metrics of `settings.metrics` (see the module docstring)."""
    from vgs_cli.loading.metric_nets import load_audio_net

    wanted = tuple(m for m in settings.metrics if m in AV_METRICS)
    items = F.scan_fakes(fake, "wav")
    order = sorted(range(len(items)), key=lambda i: (items[i].path.name, items[i].rel))  # IS: by file name
    reals = real_set(real)
    fake_ids = F.match_real_ids(items, reals.ids, reals.classes)
    index = {rid: i for i, rid in enumerate(reals.ids)}
    pairs = [(index[rid], j) for j, rid in enumerate(fake_ids) if rid is not None]
    if any(m in PAIR_METRICS for m in wanted) and not pairs:
        raise DataError("no fake file name matches a real clip id (expected <clip_id>.wav or "
                        "<clip_id>_sample_<k>.wav)")
    video_of = None
    if "ib" in wanted or "desync" in wanted:  # before any network runs: a missing video is said at once
        video_of = find_videos(sorted({fake_ids[j] for _, j in pairs}), reals, videos)
    fake_src = [av_audio.AudioSource(it.path.name, path=it.path) for it in items]
    metrics: dict[str, Any] = {}
    per_pair: dict[str, np.ndarray] = {}
    weights: dict[str, str] = {}
    for net_name in ("passt", "panns", "vggish"):
        if not any(NETWORK_OF.get(m) == net_name for m in wanted):
            continue
        net = load_audio_net(net_name, weights_dir, device)
        weights[net_name] = net.sha256
        run = dict(audio_length=settings.audio_length, batch_size=settings.batch_size, device=device,
                   use_cache=settings.use_cache)
        cb = progress(f"{net_name} fake", len(items)) if progress else None
        fk = av_audio.split_outputs(net_name, av_audio.features(net, fake_src, progress=cb, **run))
        rl = None
        if _needs(wanted, net_name, "fd") or _needs(wanted, net_name, "kl"):
            cb = progress(f"{net_name} real", len(reals.ids)) if progress else None
            rl = av_audio.split_outputs(net_name, av_audio.features(net, reals.sources, progress=cb, **run))
        if net_name == "vggish":
            metrics["fd_vggish"] = fid(rl["frames"], fk["frames"])
            continue
        if f"fd_{net_name}" in wanted:
            metrics[f"fd_{net_name}"] = fid(rl["embedding"], fk["embedding"])
        if f"kl_{net_name}" in wanted:
            ri, fi = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
            per_pair[f"kl_{net_name}"] = kl_per_pair(rl["logits"][ri], fk["logits"][fi])
        if f"is_{net_name}" in wanted:
            if len(items) < settings.is_splits:
                raise DataError(f"IS with {settings.is_splits} splits needs at least {settings.is_splits} fakes, "
                                f"got {len(items)} (lower --isc-splits)")
            metrics[f"is_{net_name}_mean"], metrics[f"is_{net_name}_std"] = inception_score(
                fk["logits"][order], settings.is_splits, seed=settings.seed)
        del net
    windows = _av_scores(wanted, items, fake_ids, pairs, video_of, per_pair, settings, device, weights_dir)
    rows = [{"clip": fake_ids[j], "sample": items[j].path.name, "sample_index": sample_index(items[j].path.stem),
             **{m: float(per_pair[m][k]) for m in PAIR_METRICS if m in per_pair}}
            for k, (_, j) in enumerate(pairs)]
    for m in PAIR_METRICS:
        if m in per_pair:  # IB/DeSync give None (nan here) for a clip too short to score: left out, counted
            scored = per_pair[m][np.isfinite(per_pair[m])]
            metrics[m] = float(scored.mean()) if scored.size else float("nan")
            metrics[f"{m}_pairs"] = int(scored.size)
            if scored.size < len(per_pair[m]):
                metrics[f"{m}_skipped_pairs"] = int(len(per_pair[m]) - scored.size)
            _interval_over_samples(metrics, m, rows)
    return {"metrics": metrics, "per_file": rows, "windows": windows, "n_real": len(reals.ids),
            "n_fake": len(items), "n_fake_matched": len(pairs), "real": reals.where, "fake": str(fake),
            "weights_sha256": weights, "audio_length_s": settings.audio_length}


def _av_scores(wanted, items, fake_ids, pairs, video_of, per_pair, settings, device, weights_dir) -> dict:
    """IB-score and DeSync through `av_metrics` (per pair; their per-window values for the JSON)."""
    if video_of is None:
        return {}
    from vgs_cli.audio.io import probe
    from vgs_cli.metrics.av_metrics import AVPair, desync_scores, ib_scores

    av_pairs = [AVPair(key=fake_ids[j], sample=items[j].path.name, video=video_of[fake_ids[j]], audio=items[j].path)
                for _, j in pairs]
    windows: dict[str, dict[str, list]] = {}
    # IB's video side covers --audio-length seconds as av-benchmark's (int(0.5 x length) frames); whole-file
    # scoring (audio_length None) takes the longest video
    ib_seconds = settings.audio_length or max(probe(p.video).duration_s or 0.0 for p in av_pairs) or 8.0
    for name, fn in (("ib", ib_scores), ("desync", desync_scores)):
        if name not in wanted:
            continue
        extra = {"duration_s": ib_seconds} if name == "ib" else {}
        scores = fn(av_pairs, weights_dir=weights_dir, device=device, batch_size=settings.batch_size, **extra)
        if len(scores) != len(av_pairs):
            raise VgsError(f"{name}: {len(scores)} results for {len(av_pairs)} pairs")  # a bug, said plainly
        per_pair[name] = np.array([s[name] for s in scores], dtype=np.float64)
        for p, s in zip(av_pairs, scores, strict=True):
            windows.setdefault(f"{p.key}|{p.sample}", {})[name] = s.get("windows", [])
    return windows


def _interval_over_samples(metrics: dict[str, Any], m: str, rows: list[dict]) -> None:
    """With several samples per clip: the metric's mean per sample index and a 95% interval over them."""
    by_k: dict[str, list[float]] = {}
    for r in rows:
        if np.isfinite(r[m]):  # a pair too short to score is not part of any sample's mean
            by_k.setdefault(r["sample_index"], []).append(r[m])
    if len(by_k) >= 2:
        _, half = mean_ci95([float(np.mean(v)) for v in by_k.values()])
        metrics[f"{m}_ci95"] = half
        metrics[f"{m}_samples"] = len(by_k)
