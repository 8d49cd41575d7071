"""Ingest the official precomputed SpecVQGAN features into shards, without touching any video.

Layouts found under DIR (each feature folder is optional except the mels):

    VAS, official     DIR/<class>/melspec_10s_22050hz/<id>_mel.npy
                      DIR/<class>/feature_resnet50_dim2048_21.5fps/<id>.pkl
                      DIR/<class>/feature_{rgb,flow}_bninception_dim1024_21.5fps/<id>.pkl
    VAS, by kind      DIR/mels/<class>/<id>_mel.npy, DIR/resnet50/<class>/<id>.pkl   (../shared/reference/vas)
    VGGSound (flat)   DIR/melspec_10s_22050hz/<id>_mel.npy, DIR/feature_*_21.5fps/<id>.pkl

(DIR may also be the folder above a `features/` folder, as in the official repo's `data/vas/features`.)

Stored per clip: the mel as is (float32 [80, 860] on [0, 1]; wider mels are trimmed to 860, the
reference's `TrimSpec`), and one feature array per extractor: `resnet50` [215, 2048] and `bninception`
[215, 2048] = RGB (1024) then optical flow (1024) concatenated, the order the reference's `VASFeats`
used. Pickles are read with the numpy-only unpickler (`safe_pickle`) and fitted to 215 rows
(`datasets.fit_rows`: trim, or repeat the last row). These layouts hold no waveforms: every clip gets
an all-zero `wav` with `has_audio` True (its mel is real sound), and the shards' `settings` say
`"waveforms": false`, so consumers that need audio (vocoder training, listening to real clips) must
refuse such a folder with a clear message. A clip that cannot be read is listed in failures.jsonl.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from vgs_cli.config.spec import SPEC
from vgs_cli.data.safe_pickle import load_array
from vgs_cli.data.shard_writer import ShardWriter
from vgs_cli.data.shards import (
    ClipRecord,
    build_manifest,
    shard_files,
    shard_info,
    shard_name,
    shard_of,
)
from vgs_cli.errors import DataError
from vgs_cli.prepare.sources import VAS_CLASSES, fit_rows, split_lookup, vas_label

# kind -> folder names to look for (official name first, then the short names of ../shared/reference).
KIND_DIRS: dict[str, tuple[str, ...]] = {
    "mel": ("melspec_10s_22050hz", "mels"),
    "resnet50": ("feature_resnet50_dim2048_21.5fps", "resnet50"),
    "rgb": ("feature_rgb_bninception_dim1024_21.5fps", "rgb"),
    "flow": ("feature_flow_bninception_dim1024_21.5fps", "flow"),
}
# extractor stored in the shards -> (kinds concatenated along the feature axis, settings)
EXTRACTORS: dict[str, tuple[tuple[str, ...], dict]] = {
    # image_size / random_weights: what `vgs prepare --extractor resnet50` records for the same features (the
    # reference extracted them with Resize(256) + CenterCrop(224)), so `vgs generate` accepts either shard kind
    "resnet50": (("resnet50",), {"dim": 2048, "model": "torchvision ResNet-50 (ImageNet), pooled", "image_size": 224,
                                 "random_weights": False, "fps": SPEC.fps, "source": "official SpecVQGAN features"}),
    "bninception": (("rgb", "flow"), {"dim": 2048, "model": "TSN BN-Inception RGB (1024) + flow (1024), RegNet",
                                      "fps": SPEC.fps, "source": "official SpecVQGAN features"}),
}
MEL_SUFFIX = "_mel.npy"
CLIPS_PER_SHARD = 512  # default shard size (~2 GB with both official features), as `vgs prepare folder`

Progress = Callable[[int, int], None]


@dataclass
class SourceClip:
    """One clip of a feature layout: its id, split, label and the files that hold it."""

    id: str
    split: str
    label: int
    mel: Path
    feats: dict[str, Path] = field(default_factory=dict)  # kind -> .pkl path


def _find_dir(root: Path, kind: str, cls: str | None) -> Path | None:
    for name in KIND_DIRS[kind]:
        candidates = [root / cls / name, root / name / cls] if cls else [root / name]
        for cand in candidates:
            if cand.is_dir():
                return cand
    return None


def _feature_root(src: Path, classes: Iterable[str | None]) -> Path:
    """`src`, or `src/features` when that is where the mel folders live."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"features folder not found: {src}")
    for root in (src, src / "features"):
        if any(_find_dir(root, "mel", c) for c in classes):
            return root
    wanted = " or ".join(KIND_DIRS["mel"])
    raise DataError(f"{src}: no mel folder ({wanted}) in the official feature layout; see data/README.md")


def _clips_in(mel_dir: Path, feat_dirs: dict[str, Path | None]) -> list[tuple[str, Path, dict[str, Path]]]:
    out = []
    for mel in sorted(mel_dir.glob(f"*{MEL_SUFFIX}")):
        stem = mel.name[: -len(MEL_SUFFIX)]
        feats = {k: d / f"{stem}.pkl" for k, d in feat_dirs.items() if d is not None}
        out.append((stem, mel, feats))
    return out


def scan_vas(src: str | os.PathLike, unlisted: str | None = None) -> tuple[list[SourceClip], int]:
    """VAS clips under `src` with official splits and labels; returns (clips, clips skipped as unlisted).

    Clips missing from the vendored split lists are skipped unless `unlisted` names a split for them.
    """
    root = _feature_root(Path(src), VAS_CLASSES)
    splits = split_lookup("vas")
    clips, skipped = [], 0
    for cls in VAS_CLASSES:
        mel_dir = _find_dir(root, "mel", cls)
        if mel_dir is None:
            continue
        dirs = {k: _find_dir(root, k, cls) for k in KIND_DIRS if k != "mel"}
        for stem, mel, feats in _clips_in(mel_dir, dirs):
            name = f"{cls}/{stem}"
            split = splits.get(name, unlisted)
            if split is None:
                skipped += 1
                continue
            clips.append(SourceClip(name, split, vas_label(cls), mel, feats))
    return clips, skipped


def available_extractors(clips: list[SourceClip]) -> list[str]:
    """Extractors whose folders exist in the layout (judged on the clips' feature paths)."""
    kinds = {k for c in clips for k in c.feats}
    return [name for name, (parts, _) in EXTRACTORS.items() if all(p in kinds for p in parts)]


def resolve_extractors(clips: list[SourceClip], wanted: list[str] | None) -> dict[str, dict]:
    """`{name: settings}` to store: `wanted` (checked against the layout) or everything available."""
    have = available_extractors(clips)
    names = have if wanted is None else list(wanted)
    for name in names:
        if name not in EXTRACTORS:
            raise DataError(f"unknown official feature {name!r} (known: {', '.join(EXTRACTORS)})")
        if name not in have:
            folders = ", ".join(KIND_DIRS[k][0] for k in EXTRACTORS[name][0])
            raise DataError(f"feature {name!r} requested but its folder ({folders}) is not in the source")
    return {name: dict(EXTRACTORS[name][1]) for name in names}


def load_mel(path: Path) -> np.ndarray:
    """An official mel file -> float32 [80, 860] on [0, 1] (wider ones trimmed like `TrimSpec(860)`)."""
    try:
        mel = np.load(path, allow_pickle=False)  # a .npy holding objects would need pickle: refuse it
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.name}: unreadable mel ({str(exc).splitlines()[0][:100]})") from None
    want = (SPEC.n_mels, SPEC.stored_frames)
    if mel.ndim != 2 or mel.shape[0] != want[0] or mel.shape[1] < want[1]:
        raise DataError(f"{path.name}: mel must be [{want[0]}, >= {want[1]}], got {list(mel.shape)}")
    mel = np.ascontiguousarray(mel[:, : want[1]], dtype=np.float32)
    if not np.isfinite(mel).all() or mel.min() < 0.0 or mel.max() > 1.0:
        raise DataError(f"{path.name}: mel values must be finite and on [0, 1]")
    return mel


def load_record(clip: SourceClip, extractors: dict[str, dict]) -> ClipRecord:
    """Read one clip's files into a ClipRecord (DataError names the file that is missing or bad)."""
    mel = load_mel(clip.mel)
    feats = {}
    for name in extractors:
        parts = []
        for kind in EXTRACTORS[name][0]:
            path = clip.feats.get(kind)
            if path is None or not path.is_file():
                raise DataError(f"missing {KIND_DIRS[kind][0]}/{clip.mel.name[: -len(MEL_SUFFIX)]}.pkl")
            parts.append(fit_rows(load_array(path)))
        feats[name] = np.concatenate(parts, axis=1)
        if feats[name].shape[1] != extractors[name]["dim"]:
            raise DataError(f"{name} features have dim {feats[name].shape[1]}, expected {extractors[name]['dim']}")
    wav = np.zeros(SPEC.num_samples, np.float32)  # no waveforms in this layout; see module docstring
    return ClipRecord(id=clip.id, split=clip.split, mel=mel, feats=feats, wav=wav, label=clip.label,
                      source=os.fspath(clip.mel))


def _check_existing(out: Path, num_shards: int, **ours) -> None:
    """Refuse to add shards to a folder whose shards were made differently (they could never be mixed)."""
    existing = shard_files(out)
    if not existing:
        return
    info = shard_info(existing[0])
    if info["num_shards"] != num_shards:
        raise DataError(f"{out} holds shards of a {info['num_shards']}-shard preparation, not {num_shards}; "
                        "use the same --num-shards or another output folder")
    for key, value in ours.items():
        if info[key] != json.loads(json.dumps(value)):
            raise DataError(f"{out} already holds shards made with other {key} ({existing[0].name}); "
                            "use another output folder or delete those shards")


def write_shards(out: str | os.PathLike, clips: list[SourceClip], *, classes: list[str] | tuple[str, ...],
                 extractors: dict[str, dict], settings: dict, num_shards: int | None = None,
                 shard_index: int | None = None, command: str = "", progress: Progress | None = None) -> dict:
    """Write the clips of shard `shard_index` (all shards when None) and refresh the manifest. `num_shards`
    None keeps the folder's existing layout, or cuts about CLIPS_PER_SHARD clips per shard.

    A shard file that already exists is complete (shards are renamed into place only when finished), so a
    re-run skips it: the unit of resume is one shard. Clips that fail to load go to failures.jsonl.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if num_shards is None:  # keep an existing folder's layout, else about CLIPS_PER_SHARD clips a shard
        existing = shard_files(out)
        if shard_index is not None and not existing:
            raise DataError("--shard-index needs --num-shards (every machine must cut the same shards)")
        num_shards = shard_info(existing[0])["num_shards"] if existing else max(1, -(-len(clips) // CLIPS_PER_SHARD))
    if num_shards < 1 or (shard_index is not None and not 0 <= shard_index < num_shards):
        raise DataError(f"need 0 <= shard index < num shards >= 1, got {shard_index} of {num_shards}")
    _check_existing(out, num_shards, classes=list(classes), extractors=extractors, settings=settings)
    indices = range(num_shards) if shard_index is None else [shard_index]
    todo = [i for i in indices if not (out / shard_name(i, num_shards)).is_file()]
    by_shard: dict[int, list[SourceClip]] = {i: [] for i in todo}
    for clip in clips:
        i = shard_of(clip.id, num_shards)
        if i in by_shard:
            by_shard[i].append(clip)
    total, done = sum(len(v) for v in by_shard.values()), 0
    for i in todo:
        with ShardWriter(out / shard_name(i, num_shards), classes=classes, extractors=extractors,
                         shard_index=i, num_shards=num_shards, settings=settings, command=command) as w:
            for clip in by_shard[i]:
                try:
                    w.add(load_record(clip, extractors))
                except DataError as exc:
                    w.add_failure(clip.id, str(exc), source=os.fspath(clip.mel))
                done += 1
                if progress is not None:
                    progress(done, total)
    return build_manifest(out)


def ingest_vas(src: str | os.PathLike, out: str | os.PathLike, *, extractors: list[str] | None = None,
               unlisted: str | None = None, num_shards: int | None = None, shard_index: int | None = None,
               command: str = "", progress: Progress | None = None) -> dict:
    """`vgs prepare vas --from-features`: official VAS features -> shards. Returns the manifest
    (plus `skipped_unlisted`)."""
    clips, skipped = scan_vas(src, unlisted)
    if not clips:
        raise DataError(f"{src}: no VAS clips from the official split lists found")
    chosen = resolve_extractors(clips, extractors)
    settings = {"dataset": "vas", "source": "official-features", "waveforms": False,
                "feature_rows": "trim or repeat last row to 215", "splits": "official lists",
                "unlisted": unlisted}
    manifest = write_shards(out, clips, classes=VAS_CLASSES, extractors=chosen, settings=settings,
                            num_shards=num_shards, shard_index=shard_index, command=command, progress=progress)
    return {**manifest, "skipped_unlisted": skipped}


def scan_vggsound(src: str | os.PathLike, csv_path: str | os.PathLike | None = None,
                  unlisted: str | None = None) -> tuple[list[SourceClip], list[str], int]:
    """VGGSound clips of the flat layout: (clips, classes, skipped). With the CSV: its test split, the
    vendored train/valid lists and its labels; without: the vendored lists for all three splits, label -1."""
    from vgs_cli.prepare.sources import vggsound

    root = _feature_root(Path(src), [None])
    dirs = {k: _find_dir(root, k, None) for k in KIND_DIRS if k != "mel"}
    if csv_path is not None:
        planned, classes, _ = vggsound.plan(vggsound.read_csv(csv_path), unlisted)
        table = {c.name: (c.split, c.label) for c in planned}
    else:
        classes = []
        table = {name: (split, -1) for name, split in split_lookup("vggsound", ("train", "valid", "test")).items()}
    clips, skipped = [], 0
    for stem, mel, feats in _clips_in(_find_dir(root, "mel", None), dirs):
        split, label = table.get(stem, (unlisted, -1))
        if split is None:
            skipped += 1
            continue
        clips.append(SourceClip(stem, split, label, mel, feats))
    return clips, classes, skipped


def ingest_vggsound(src: str | os.PathLike, out: str | os.PathLike, *, csv_path: str | os.PathLike | None = None,
                    extractors: list[str] | None = None, unlisted: str | None = None,
                    num_shards: int | None = None,
                    shard_index: int | None = None, command: str = "", progress: Progress | None = None) -> dict:
    """`vgs prepare vggsound --from-features`: the flat official layout -> shards (manifest returned,
    plus `skipped_unlisted`: clips in no split list / not in the CSV)."""
    clips, classes, skipped = scan_vggsound(src, csv_path, unlisted)
    if not clips:
        raise DataError(f"{src}: no VGGSound clips from the official splits found")
    chosen = resolve_extractors(clips, extractors)
    settings = {"dataset": "vggsound", "source": "official-features", "waveforms": False,
                "feature_rows": "trim or repeat last row to 215",
                "splits": "csv test + official lists" if csv_path else "official lists", "unlisted": unlisted}
    manifest = write_shards(out, clips, classes=classes, extractors=chosen, settings=settings,
                            num_shards=num_shards, shard_index=shard_index, command=command, progress=progress)
    return {**manifest, "skipped_unlisted": skipped}
