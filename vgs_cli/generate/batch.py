"""Writing what `vgs generate` makes: one video (wav, optional mp4 and PNG), or every clip of a folder of
videos or of a shard split (batched, resumable, named so `vgs eval` pairs each sample with its real clip).

Batch outputs: `<OUT>/<clip_id>_sample_<k>.wav` and `<OUT>/<clip_id>_sample_<k>.npy` (the mel, `[80, T]` on
[0, 1]; clip ids with `/` become sub-folders) plus `<OUT>/generation.json` (models, their SHA-256, options).
A shard split can be shared among workers (torchrun ranks, scheduler shards): see generate/workers.py for
the split and generate/scale.py for the run + final check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vgs_cli import __version__, dist
from vgs_cli.audio.io import mux_audio, write_wav
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import DataError, OutputError, VgsError
from vgs_cli.fsutil import atomic_path, file_sha256, remove_stale_tmp, write_json
from vgs_cli.generate.engine import (
    Bundle,
    GenerateOptions,
    codes_to_audio,
    condition_features,
    sample_codes,
    steps_for_samples,
    video_duration,
)
from vgs_cli.generate.workers import (
    Worker,
    check_same_run,
    is_done,
    log_written,
    n_units,
    sample_paths,
    unit_clips,
    unit_seed,
)
from vgs_cli.loading.extractors import check_same_features

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
    num_steps = steps_for_samples(n_samples, bundle.gpt.cfg)
    feats = None
    if bundle.gpt.cfg.uses_feats:
        feats = condition_features(bundle, video, num_steps, visual_weights, opts.quantize)[None]
    log(f"{video.name}: {duration:.2f} s -> {num_steps} code columns x {opts.samples} sample(s)")
    codes = sample_codes(bundle, feats, num_steps, opts)
    mel, wav = codes_to_audio(bundle, codes, n_samples)
    paths = []
    for k in range(len(wav)):
        path = numbered(out, k, len(wav))
        note = {"vgs": __version__, "model": bundle.paths.source or str(bundle.paths.transformer),
                "transformer": str(bundle.paths.transformer), "codebook": str(bundle.paths.codebook),
                "vocoder": str(bundle.paths.vocoder or bundle.vocoder.name), "video": str(video),
                "seed": opts.seed, "sample": k + 1, "samples": len(wav)}
        write_wav(path, wav[k].numpy(), SPEC.sample_rate, comment=json.dumps(note))  # provenance in the wav
        paths.append(path)
    if spectrogram is not None:
        from vgs_cli.audio.plot import save_mel_png

        save_mel_png(spectrogram, [(f"{p.name}", m.numpy()) for p, m in zip(paths, mel, strict=True)])
    if mux is not None:
        for k, path in enumerate(paths):
            mux_audio(video, path, numbered(Path(mux), k, len(paths)))
    return paths


# ------------------------------------------------------------------------------------------ batch mode

def _save(out_dir: Path, clip_id: str, mels: torch.Tensor, wavs: torch.Tensor) -> None:
    for (wav_path, mel_path), mel, wav in zip(sample_paths(out_dir, clip_id, len(wavs)), mels, wavs, strict=True):
        for path in (mel_path, wav_path):  # a killed run's temp files (this process owns this clip's files)
            remove_stale_tmp(path)
        with atomic_path(mel_path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, mel.numpy().astype(np.float32))
        write_wav(wav_path, wav.numpy(), SPEC.sample_rate)  # last: a wav means the clip is complete


def _provenance(bundle: Bundle, opts: GenerateOptions, source: Path, split: str | None) -> dict[str, Any]:
    paths = bundle.paths
    return {
        "vgs_version": __version__,
        "source": str(source.resolve()),
        "split": split,
        "model": paths.source or str(paths.transformer),  # how it was chosen: --model, $VGS_MODEL, the default
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
    # input size, weights, frame path and precision (fp32/bf16/int8): loading/extractors.feature_mismatch
    check_same_features(name, have, bundle.extra.get("extractor_settings") or {}, "the shards'")
    return name


def shard_ids(root: Path, split: str, limit: int | None = None) -> list[str]:
    """The clip ids of a shard split in order (the first `limit`), without reading any features."""
    from vgs_cli.data.dataset import ShardDataset

    ds = ShardDataset(root, split, fields=("id",))
    try:
        return [ds[i]["id"] for i in range(len(ds))][:limit]
    finally:
        ds.close()


def generate_shards(bundle: Bundle, root: Path, out_dir: Path, opts: GenerateOptions, split: str = "test",
                    batch_size: int = 8, limit: int | None = None, worker: Worker = Worker(),
                    log: Log = print) -> dict[str, int]:
    """This worker's share of a shard split's clips: the model's 10 s window (53 columns = 848 frames),
    `batch_size` clips per unit, each unit with its own seed (see generate/workers.py), resumable.

    Returns this worker's counts: `clips` (its share), `generated`, `skipped` (already on disk)."""
    from vgs_cli.data import shards
    from vgs_cli.data.dataset import ShardDataset

    if batch_size < 1:
        raise VgsError(f"--batch-size must be at least 1, got {batch_size}")
    manifest = shards.read_manifest(root)
    extractor = _check_shard_features(bundle, manifest)
    ids = shard_ids(root, split, limit)
    provenance = {**_provenance(bundle, opts, root, split), "limit": limit}  # --merge's default
    if worker.rank == 0:
        check_same_run(out_dir, provenance)
        write_json(out_dir / "generation.json", provenance)
    # the other ranks write samples only after rank 0 has checked the folder and written generation.json: a
    # fast rank's first samples would otherwise look like an unrecorded run's to a slower rank 0
    dist.barrier()
    if worker.rank != 0:
        check_same_run(out_dir, provenance)
    fields = ("id", "label") + (("feats",) if extractor else ())
    ds = ShardDataset(root, split, fields=fields, extractor=extractor)
    n = opts.samples
    mine = worker.units(n_units(len(ids), batch_size))
    todo = [u for u in mine if not all(is_done(out_dir, ids[i], n) for i in unit_clips(len(ids), batch_size, u))]
    share = sum(len(unit_clips(len(ids), batch_size, u)) for u in mine)
    who = f"{worker.name}: " if worker.count > 1 else ""
    log(f"{who}{split}: {len(ids)} clips, this worker's share {share}, "
        f"{sum(len(unit_clips(len(ids), batch_size, u)) for u in todo)} to generate")
    steps = bundle.gpt.cfg.grid[1]
    from tqdm.auto import tqdm

    generated = 0
    for u in tqdm(todo, desc="generate", unit="batch", leave=False, disable=None if worker.rank == 0 else True):
        items = [ds[i] for i in unit_clips(len(ids), batch_size, u)]
        feats = np.stack([it["feats"].numpy() for it in items]) if extractor else None
        labels = [int(it["label"]) for it in items]
        if bundle.gpt.cfg.uses_class and min(labels) < 0:
            raise DataError("a class-conditioned transformer needs labelled clips")
        gen = torch.Generator(device=bundle.device).manual_seed(unit_seed(opts.seed, u))
        codes = sample_codes(bundle, feats, steps, opts, labels=labels, generator=gen)
        mel, wav = codes_to_audio(bundle, codes, steps * bundle.gpt.cfg.mel_frames_per_column * SPEC.hop_length)
        for b, it in enumerate(items):
            if not is_done(out_dir, it["id"], n):  # a unit cut short: write only what is missing
                _save(out_dir, it["id"], mel[b * n:(b + 1) * n], wav[b * n:(b + 1) * n])
                log_written(out_dir, worker, it["id"], u)
                generated += 1
    ds.close()
    return {"clips": share, "generated": generated, "skipped": share - generated}


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
        if is_done(out_dir, clip_id, opts.samples):
            continue
        try:
            n_samples = int(round(video_duration(video) * SPEC.sample_rate))
            steps = steps_for_samples(n_samples, bundle.gpt.cfg)
            feats = None
            if bundle.gpt.cfg.uses_feats:
                feats = condition_features(bundle, video, steps, visual_weights, opts.quantize)[None]
            mel, wav = codes_to_audio(bundle, sample_codes(bundle, feats, steps, opts), n_samples)
            _save(out_dir, clip_id, mel, wav)
            done += 1
        except OutputError:
            raise  # about the output, not this video: stop the job (finished clips stay; a re-run goes on)
        except VgsError as exc:
            failed += 1
            log(f"skipped {video}: {exc}")
    return {"clips": len(videos), "generated": done, "failed": failed}


def is_shard_folder(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()
