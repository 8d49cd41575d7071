"""Writing what `vgs generate` makes: one video (wav, optional mp4 and PNG), or every clip of a folder of
videos or of a shard split (batched, resumable, named so `vgs eval` pairs each sample with its real clip).

Batch outputs: `<OUT>/<clip_id>_sample_<k>.wav` and `<OUT>/<clip_id>_sample_<k>.npy` (the mel, `[80, T]` on
[0, 1]; clip ids with `/` become sub-folders) plus `<OUT>/generation.json` (models, their SHA-256, options).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vgs_cli import __version__
from vgs_cli.audio.io import mux_audio, write_wav
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import DataError, VgsError
from vgs_cli.fsutil import atomic_path, file_sha256, write_json
from vgs_cli.generate.engine import (
    Bundle,
    GenerateOptions,
    codes_to_audio,
    extend_features,
    sample_codes,
    steps_for_samples,
    video_duration,
    video_features,
)

Log = Callable[[str], None]


def numbered(path: Path, k: int, n: int) -> Path:
    """`out.wav` for one sample, `out_1.wav ... out_N.wav` for several."""
    return path if n == 1 else path.with_name(f"{path.stem}_{k + 1}{path.suffix}")


def generate_video(bundle: Bundle, video: str | os.PathLike, out: str | os.PathLike, opts: GenerateOptions,
                   mux: str | os.PathLike | None = None, spectrogram: str | os.PathLike | None = None,
                   visual_weights: str | None = None, log: Log = print) -> list[Path]:
    """Sound for one video, as long as the video. Returns the wav paths (`out`, or `out_1..N`)."""
    video, out = Path(video), Path(out)
    duration = video_duration(video)
    n_samples = int(round(duration * SPEC.sample_rate))
    num_steps = steps_for_samples(n_samples)
    feats = None
    if bundle.gpt.cfg.uses_feats:
        feats = extend_features(video_features(bundle, video, visual_weights), num_steps)[None]
    log(f"{video.name}: {duration:.2f} s -> {num_steps} code columns x {opts.samples} sample(s)")
    codes = sample_codes(bundle, feats, num_steps, opts)
    mel, wav = codes_to_audio(bundle, codes, n_samples)
    paths = []
    for k in range(len(wav)):
        path = numbered(out, k, len(wav))
        write_wav(path, wav[k].numpy(), SPEC.sample_rate)
        paths.append(path)
    if spectrogram is not None:
        from vgs_cli.audio.plot import save_mel_png

        save_mel_png(spectrogram, [(f"{p.name}", m.numpy()) for p, m in zip(paths, mel, strict=True)])
    if mux is not None:
        for k, path in enumerate(paths):
            mux_audio(video, path, numbered(Path(mux), k, len(paths)))
    return paths


# ------------------------------------------------------------------------------------------ batch mode

def sample_paths(out_dir: Path, clip_id: str, n: int) -> list[tuple[Path, Path]]:
    """(wav, mel) paths of every sample of one clip."""
    return [(out_dir / f"{clip_id}_sample_{k}.wav", out_dir / f"{clip_id}_sample_{k}.npy") for k in range(n)]


def _done(out_dir: Path, clip_id: str, n: int) -> bool:
    return all(w.is_file() and m.is_file() for w, m in sample_paths(out_dir, clip_id, n))


def _save(out_dir: Path, clip_id: str, mels: torch.Tensor, wavs: torch.Tensor) -> None:
    for (wav_path, mel_path), mel, wav in zip(sample_paths(out_dir, clip_id, len(wavs)), mels, wavs, strict=True):
        mel_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(mel_path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, mel.numpy().astype(np.float32))
        write_wav(wav_path, wav.numpy(), SPEC.sample_rate)  # last: a wav means the clip is complete


def _provenance(bundle: Bundle, opts: GenerateOptions, source: Path, split: str | None) -> dict[str, Any]:
    paths = bundle.paths
    return {
        "vgs_version": __version__,
        "source": str(source.resolve()),
        "split": split,
        "transformer": {"path": str(paths.transformer), "sha256": file_sha256(paths.transformer)},
        "codebook": {"path": str(paths.codebook), "sha256": file_sha256(paths.codebook)},
        "vocoder": {"kind": bundle.vocoder.name,
                    "path": str(paths.vocoder) if paths.vocoder else None,
                    "sha256": file_sha256(paths.vocoder) if paths.vocoder else None},
        "condition": bundle.condition,
        "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
        "naming": "<clip_id>_sample_<k>.wav / .npy (mel [80, T] on [0, 1])",
    }


def _check_shard_features(bundle: Bundle, manifest: dict[str, Any]) -> str | None:
    """The shards' features must be the transformer's (same extractor, input size and weights)."""
    if not bundle.gpt.cfg.uses_feats:
        return None
    name = bundle.extra.get("extractor")
    have = manifest.get("extractors", {}).get(name)
    if have is None:
        raise DataError(f"the shards hold no {name!r} features, which this transformer needs")
    want = bundle.extra.get("extractor_settings") or {}
    for key in ("image_size", "weights_sha256", "random_weights"):
        if key in want and have.get(key) != want.get(key):
            raise DataError(f"the shards' {name} features differ from the transformer's ({key}: "
                            f"{have.get(key)!r} vs {want.get(key)!r})")
    return name


def generate_shards(bundle: Bundle, root: Path, out_dir: Path, opts: GenerateOptions, split: str = "test",
                    batch_size: int = 8, limit: int | None = None, log: Log = print) -> dict[str, int]:
    """Every clip of a shard split: the model's 10 s window (53 columns = 848 frames), batched."""
    from vgs_cli.data import shards
    from vgs_cli.data.dataset import ShardDataset

    manifest = shards.read_manifest(root)
    extractor = _check_shard_features(bundle, manifest)
    fields = ("id", "label") + (("feats",) if extractor else ())
    ds = ShardDataset(root, split, fields=fields, extractor=extractor)
    ids = [ds[i]["id"] for i in range(len(ds))][:limit]
    todo = [i for i, cid in enumerate(ids) if not _done(out_dir, cid, opts.samples)]
    log(f"{split}: {len(ids)} clips, {len(ids) - len(todo)} already done, {len(todo)} to generate")
    write_json(out_dir / "generation.json", _provenance(bundle, opts, root, split))
    steps = bundle.gpt.cfg.grid[1]
    gen = torch.Generator(device=bundle.device).manual_seed(opts.seed)
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(todo), batch_size), desc="generate", unit="batch", leave=False):
        items = [ds[i] for i in todo[start:start + batch_size]]
        feats = np.stack([it["feats"].numpy() for it in items]) if extractor else None
        labels = [int(it["label"]) for it in items]
        if bundle.gpt.cfg.uses_class and min(labels) < 0:
            raise DataError("a class-conditioned transformer needs labelled clips")
        codes = sample_codes(bundle, feats, steps, opts, labels=labels, generator=gen)
        mel, wav = codes_to_audio(bundle, codes, steps * 16 * SPEC.hop_length)
        n = opts.samples
        for b, it in enumerate(items):
            _save(out_dir, it["id"], mel[b * n:(b + 1) * n], wav[b * n:(b + 1) * n])
    return {"clips": len(ids), "generated": len(todo), "skipped": len(ids) - len(todo)}


def generate_folder(bundle: Bundle, root: Path, out_dir: Path, opts: GenerateOptions,
                    visual_weights: str | None = None, log: Log = print) -> dict[str, int]:
    """Every video under a folder, each as long as itself (failures are listed, the job goes on)."""
    from vgs_cli.data.video import list_videos

    videos = list_videos(root)
    if not videos:
        raise DataError(f"no videos found under {root}")
    write_json(out_dir / "generation.json", _provenance(bundle, opts, root, None))
    done = failed = 0
    for video in videos:
        clip_id = video.relative_to(root).with_suffix("").as_posix()
        if _done(out_dir, clip_id, opts.samples):
            continue
        try:
            n_samples = int(round(video_duration(video) * SPEC.sample_rate))
            steps = steps_for_samples(n_samples)
            feats = None
            if bundle.gpt.cfg.uses_feats:
                feats = extend_features(video_features(bundle, video, visual_weights), steps)[None]
            mel, wav = codes_to_audio(bundle, sample_codes(bundle, feats, steps, opts), n_samples)
            _save(out_dir, clip_id, mel, wav)
            done += 1
        except VgsError as exc:
            failed += 1
            log(f"skipped {video}: {exc}")
    return {"clips": len(videos), "generated": done, "failed": failed}


def is_shard_folder(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()
