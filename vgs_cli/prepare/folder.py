"""`vgs prepare folder|synthetic`: videos -> HDF5 shards (mel, waveform, visual features, label, split).

Flow per shard `i` of `n` (clip -> shard by `data.shards.shard_of(id, n)`, the same on every machine):
  1. each clip is decoded and computed in a joblib worker, which saves it as one "piece" file
     (`OUT/.work/<settings hash>/shard_<i>-of-<n>/<clip hash>.npz`, or `.fail.json` with the reason),
     written atomically, so an interrupted run keeps every finished clip and nothing half-written;
  2. when all pieces of the shard exist, they are assembled in clip-id order into the shard file (temp file
     + rename) and the pieces are deleted;
  3. `manifest.json` / `failures.jsonl` are rebuilt from whatever shards exist.
Re-running the same command skips finished shards and finished pieces. `--shard-index i --num-shards n`
makes only shard i (one machine of a cluster job); copy the shards into one folder and run
`vgs prepare manifest OUT` (or any later `vgs prepare` on it) to summarise them.

A video without an audio track is kept for its features: its mel and wav are zeros and `has_audio` is False
(training stages that need audio skip it). A clip that cannot be used (unreadable, no video stream, no
frames) is listed in failures.jsonl with the reason, and the job goes on.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from vgs_cli.config.prepare import PrepareConfig
from vgs_cli.config.spec import SPEC
from vgs_cli.data import shard_writer, shards
from vgs_cli.data.video import VIDEO_EXTS, list_videos
from vgs_cli.errors import DataError, Interrupted, OutputError, VgsError
from vgs_cli.fsutil import atomic_path, ensure_dir, write_json

_SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "validation": "valid",
                  "test": "test", "testing": "test"}
WORK = ".work"


@dataclass(frozen=True)
class SourceClip:
    """One input video: `id` (relative path without suffix), absolute `path`, `source` (relative path)."""

    id: str
    path: str
    source: str
    label: int
    split: str


# ----------------------------------------------------------------------------------------- discovery

def _read_labels_csv(csv_path: Path, root: Path) -> list[tuple[Path, str, str]]:
    """Rows `(path, label, split)` of a `path,label,split` CSV; paths relative to `root` (or the CSV's folder)."""
    if not csv_path.is_file():
        raise DataError(f"labels file not found: {csv_path}")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise DataError(f"{csv_path}: needs a header with a 'path' column (and optionally label, split)")
        rows = []
        for n, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            if not rel:
                raise DataError(f"{csv_path}:{n}: empty path")
            path = root / rel if (root / rel).exists() or not (csv_path.parent / rel).exists() else csv_path.parent / rel
            split = (row.get("split") or "").strip().lower()
            if split and split not in _SPLIT_ALIASES:
                raise DataError(f"{csv_path}:{n}: split {split!r} is not train, valid or test")
            rows.append((path, (row.get("label") or "").strip(), _SPLIT_ALIASES.get(split, "")))
    return rows


def _class_list(names: list[str]) -> list[str]:
    """Classes from label strings: integers are indices (0..max), anything else a sorted list of names."""
    given = sorted({n for n in names if n and n != "-1"})  # "" and -1 mean "no label"
    if given and all(n.isdigit() for n in given):
        return [str(i) for i in range(max(int(n) for n in given) + 1)]
    return given


def discover_clips(root: str | Path, labels_csv: str | Path | None = None,
                   classes: list[str] | None = None) -> tuple[list[SourceClip], list[str]]:
    """The clips of a folder and the class list. Labels: from the CSV, else the parent folder's name
    (none for files directly in `root`). Splits: from the CSV, else `shards.hash_split(id)` (~80/10/10)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"no such folder: {root}")
    if labels_csv is not None:
        rows = _read_labels_csv(Path(labels_csv), root)
    else:
        rows = [(p, p.parent.name if p.parent != root else "", "") for p in list_videos(root)]
    if not rows:
        raise DataError(f"no videos found under {root} (looked for {', '.join(VIDEO_EXTS)})")
    # A fixed class list (VAS, VGGSound) keeps the official indices even when some classes are absent.
    classes = list(classes) if classes is not None else _class_list([label for _, label, _ in rows])
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for path, label, split in rows:
        try:
            rel = path.resolve().relative_to(root).as_posix()
        except ValueError:
            rel = path.resolve().as_posix()
        cid = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
        lab = index[str(int(label))] if label.isdigit() and str(int(label)) in index else index.get(label, -1)
        clips.append(SourceClip(cid, str(path.resolve()), rel, lab, split or shards.hash_split(cid)))
    return clips, classes


# ---------------------------------------------------------------------------------------- one clip

_EXTRACTORS: dict[str, Any] = {}  # per worker process: built once, reused for every clip


def _extractor(name: str, settings: dict[str, Any], weights: str | None, batch: int, device: str | None):
    from vgs_cli.loading.extractors import FeatureExtractor

    key = json.dumps([name, settings, weights, batch, device], sort_keys=True)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = FeatureExtractor(name, settings, weights, batch_size=batch, device=device)
    return _EXTRACTORS[key]


def compute_clip(clip: SourceClip, extractors: dict[str, dict[str, Any]], mode: str,
                 weights: dict[str, str | None] | None = None, feature_batch: int = 64,
                 device: str | None = None, wav_dtype: str = "int16") -> shards.ClipRecord:
    """Decode one video and compute its record: features `[215, D]` per extractor, wav `[220500]`, mel `[80, 860]`.

    The wav is rounded to what the shard stores (`wav_dtype`) BEFORE the mel is computed, so the stored mel is
    exactly the spectrogram of the stored wav (the vocoder trains on these pairs; the reference's mels also
    came from 16-bit wavs)."""
    from vgs_cli.audio.io import load_audio, probe

    info = probe(clip.path)  # DataError for unreadable files (before importing torch: bad files fail fast)
    if not info.has_video:
        raise DataError("no video stream (audio-only file)")
    from vgs_cli.audio.spec import clip_mel
    from vgs_cli.data.video import fit_clip, read_frames
    from vgs_cli.loading.extractors import frame_path

    feats, decoded = {}, {}
    for name, st in extractors.items():
        how = (st["resize_short"], frame_path(st))
        if how not in decoded:  # extractors with the same input size and frame path share one decode
            frames = read_frames(clip.path, short_side=how[0], max_duration_s=SPEC.duration_s, frame_path=how[1])
            decoded[how] = fit_clip(frames, None, mode=mode)[0]
        feats[name] = _extractor(name, st, (weights or {}).get(name), feature_batch, device)(decoded[how])
    wav = load_audio(clip.path, duration_s=SPEC.duration_s) if info.has_audio else None
    if wav is not None and len(wav) == 0:
        wav = None
    if wav is not None:
        wav = shards.decode_wav(shards.encode_wav(fit_clip(None, wav, mode=mode)[1], wav_dtype))
        mel = clip_mel(wav).numpy()
    else:
        mel = np.zeros((SPEC.n_mels, SPEC.stored_frames), np.float32)
    return shards.ClipRecord(id=clip.id, split=clip.split, mel=mel, feats=feats, wav=wav, label=clip.label,
                             source=clip.source)


def _piece_paths(work: Path, clip_id: str) -> tuple[Path, Path]:
    stem = hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[:20]
    return work / f"{stem}.npz", work / f"{stem}.fail.json"


def _save_piece(path: Path, rec: shards.ClipRecord) -> None:
    meta = {"id": rec.id, "split": rec.split, "label": rec.label, "source": rec.source}
    arrays = {"mel": rec.mel, "meta": np.array(json.dumps(meta))}
    if rec.wav is not None:
        arrays["wav"] = rec.wav
    arrays.update({f"feats__{k}": v for k, v in rec.feats.items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_piece(path: Path) -> shards.ClipRecord:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        feats = {k[len("feats__"):]: z[k] for k in z.files if k.startswith("feats__")}
        return shards.ClipRecord(id=meta["id"], split=meta["split"], mel=z["mel"], feats=feats,
                                 wav=z["wav"] if "wav" in z.files else None, label=meta["label"], source=meta["source"])


def process_clip(clip: SourceClip, extractors: dict[str, dict[str, Any]], mode: str, work: str,
                 weights: dict[str, str | None] | None = None, feature_batch: int = 64,
                 device: str | None = None, wav_dtype: str = "int16") -> str | None:
    """Worker job: compute one clip into its piece file; a clip that fails gets a `.fail.json` instead.
    Returns None on success or the failure reason."""
    ok_path, fail_path = _piece_paths(Path(work), clip.id)
    try:
        rec = compute_clip(clip, extractors, mode, weights, feature_batch, device, wav_dtype)
    except VgsError as exc:
        reason = str(exc)
    except Exception as exc:  # a decoder crash on one odd file must not stop a 200k-clip job
        reason = f"{type(exc).__name__}: {exc}"
    else:
        # Outside the try: failing to write (a full disk) is the job's failure, not the clip's. It raises an
        # OutputError that stops the job, and the clip is computed again by the re-run.
        with _named_for_user(ok_path, clip.id):
            _save_piece(ok_path, rec)
        return None
    with _named_for_user(fail_path, clip.id):
        write_json(fail_path, {"id": clip.id, "source": clip.source, "reason": reason[:500]})
    return reason


@contextlib.contextmanager
def _named_for_user(piece: Path, clip_id: str) -> Iterator[None]:
    """An OutputError about a piece file, told in terms of the user's --out folder (OUT/.work/<key>/<shard>/)."""
    try:
        yield
    except OutputError as exc:
        out = piece.parents[3]
        raise type(exc)(str(exc).replace(str(piece), f"clip {clip_id} into {out}")
                        .replace(str(piece.parent), str(out))) from exc


# ----------------------------------------------------------------------------------------- a folder

def _run_jobs(todo: list[SourceClip], fn: Callable[..., str | None], kwargs: dict[str, Any], jobs: int,
              progress: bool, desc: str) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress, leave=False)
    if jobs == 1:
        for clip in todo:
            fn(clip, **kwargs)
            bar.update(1)
    else:
        from joblib import Parallel, delayed

        # loky workers get cores // jobs BLAS/OpenMP threads each (joblib sets the limits), so -j N never
        # oversubscribes the machine.
        par = Parallel(n_jobs=jobs, return_as="generator_unordered")
        for _ in par(delayed(fn)(clip, **kwargs) for clip in todo):
            bar.update(1)
    bar.close()


def _make_shard(i: int, n: int, clips: list[SourceClip], out: Path, work_root: Path, meta: dict[str, Any],
                cfg: PrepareConfig, jobs: int, progress: bool, log: Callable[[str], None]) -> None:
    path = out / shards.shard_name(i, n)
    if path.is_file():
        log(f"{path.name}: already done, skipped")
        return
    assigned = sorted((c for c in clips if shards.shard_of(c.id, n) == i), key=lambda c: c.id)
    work = work_root / f"shard_{i}-of-{n}"
    work.mkdir(parents=True, exist_ok=True)
    for stale in list(work.glob(".*.tmp")) + list(out.glob(f".{path.name}.*.tmp")):
        stale.unlink()  # left by a killed run; this run owns shard i
    todo = [c for c in assigned if not any(p.is_file() for p in _piece_paths(work, c.id))]
    if len(todo) < len(assigned):
        log(f"{path.name}: resuming, {len(assigned) - len(todo)} of {len(assigned)} clips already computed")
    kwargs = dict(extractors=meta["extractors"], mode=cfg.mode, work=str(work), weights=meta["weights"],
                  feature_batch=cfg.feature_batch, device=meta.get("device"), wav_dtype=cfg.wav_dtype)
    _run_jobs(todo, process_clip, kwargs, jobs, progress, desc=path.name)
    with shard_writer.ShardWriter(path, classes=meta["classes"], extractors=meta["extractors"], wav_dtype=cfg.wav_dtype,
                                  shard_index=i, num_shards=n, settings=meta["settings"], command=meta["command"]) as w:
        for clip in assigned:
            ok, fail = _piece_paths(work, clip.id)
            if ok.is_file():  # label/split from the current listing (a corrected labels.csv wins)
                rec = _load_piece(ok)
                rec.label, rec.split = clip.label, clip.split
                w.add(rec)
            elif fail.is_file():
                entry = json.loads(fail.read_text())
                w.add_failure(clip.id, entry["reason"], clip.source)
            else:
                raise DataError(f"clip {clip.id}: no result was produced (worker killed?); re-run to retry")
        for dup in meta["duplicates"]:
            if shards.shard_of(dup.id, n) == i:
                w.add_failure(dup.id, "another file has the same clip id (name without suffix)", dup.source)
    shutil.rmtree(work, ignore_errors=True)
    log(f"{path.name}: {len(w)} clips, {len(assigned) - len(w)} failed")


def _check_existing(out: Path, num_shards: int | None, meta: dict[str, Any], wav_dtype: str) -> int | None:
    """Shards already in `out` must come from the same settings; returns their shard count (None if none)."""
    existing = shards.shard_files(out)
    if not existing:
        return None
    info = shards.shard_info(existing[0])
    theirs = {"extractors": info["extractors"], "classes": info["classes"], "settings": info["settings"],
              "wav_dtype": info["wav_dtype"]}
    ours = {"extractors": meta["extractors"], "classes": meta["classes"], "settings": meta["settings"],
            "wav_dtype": wav_dtype}
    for key in ours:
        if theirs[key] != ours[key]:
            raise DataError(f"{out} already holds shards made with other {_difference(key, theirs[key], ours[key])} "
                            f"({existing[0].name}); use those settings, another output folder, or delete the shards")
    if num_shards is not None and num_shards != info["num_shards"]:
        raise DataError(f"{out} holds shards of a {info['num_shards']}-shard preparation; "
                        f"--num-shards {num_shards} would mix two layouts")
    return info["num_shards"]


def _difference(key: str, theirs: Any, ours: Any) -> str:
    """What differs, in the user's terms: "extractor settings (efficientnet_lite0 image_size: 64 there, 128 here)"."""
    if key == "extractors" and isinstance(theirs, dict) and isinstance(ours, dict) and set(theirs) == set(ours):
        diffs = [f"{name} {field}: {theirs[name].get(field)} there, {ours[name].get(field)} here"
                 for name in ours for field in sorted(set(theirs[name]) | set(ours[name]))
                 if theirs[name].get(field) != ours[name].get(field)]
        return f"extractor settings ({'; '.join(diffs[:3])})"
    if key == "extractors":
        return f"extractors ({', '.join(theirs) or 'none'} there, {', '.join(ours)} here)"
    return key


def resolve_extractors(cfg: PrepareConfig, visual_weights: dict[str, str] | None, random_weights: bool
                       ) -> tuple[dict[str, dict[str, Any]], dict[str, str | None]]:
    """Settings (recorded) and weight paths of every configured extractor; prints the random-weights warning."""
    from vgs_cli.loading.extractors import extractor_settings, warn_random

    visual_weights = dict(visual_weights or {})
    unknown = sorted(set(visual_weights) - set(cfg.extractors))
    if unknown:
        raise VgsError(f"--visual-weights given for {unknown}, which are not among the extractors {list(cfg.extractors)}")
    settings, paths = {}, {}
    for name in cfg.extractors:
        st, path = extractor_settings(name, cfg.image_size, visual_weights.get(name), random_weights,
                                      precision=cfg.feature_precision)
        settings[name], paths[name] = st, (str(path) if path else None)
    if random_weights:
        warn_random(list(cfg.extractors))
    return settings, paths


def prepare_folder(src: str | Path, out: str | Path, cfg: PrepareConfig, *, labels_csv: str | Path | None = None,
                   classes: list[str] | None = None, visual_weights: dict[str, str] | None = None,
                   random_visual_weights: bool = False, jobs: int = 1, shard_index: int | None = None,
                   num_shards: int | None = None, device: str | None = None, command: str = "", progress: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Turn every video under `src` into shards in `out` (resumable); returns the manifest.
    `device` runs the extractors there (None: CUDA when available); it is not recorded (same features)."""
    out = Path(out)
    if jobs < 1:
        raise VgsError(f"-j must be >= 1, got {jobs}")
    ensure_dir(out, "--out")
    clips, classes = discover_clips(src, labels_csv, classes)
    clips, duplicates = _dedupe(clips)
    extractors, weights = resolve_extractors(cfg, visual_weights, random_visual_weights)
    meta = {"extractors": extractors, "weights": weights, "classes": classes, "command": command,
            "duplicates": duplicates, "device": device,
            "settings": {"mode": cfg.mode, "source": "video"}}
    out.mkdir(parents=True, exist_ok=True)
    n = _check_existing(out, num_shards, meta, cfg.wav_dtype) or num_shards or cfg.num_shards_for(len(clips))
    if shard_index is not None and not 0 <= shard_index < n:
        raise VgsError(f"--shard-index {shard_index} is outside 0..{n - 1}")
    if shard_index is not None and num_shards is None and not shards.shard_files(out):
        raise VgsError("--shard-index needs --num-shards (every machine must cut the same shards)")
    # Pieces are only reused by a run with the same features, clip fitting and spectrogram.
    key = hashlib.sha1(json.dumps([extractors, meta["settings"], SPEC.to_dict()], sort_keys=True).encode()).hexdigest()[:12]
    work_root = out / WORK / key
    log(f"{len(clips)} clips, {len(classes)} classes, {n} shard(s), extractors: {', '.join(extractors)}")
    try:
        for i in [shard_index] if shard_index is not None else range(n):
            _make_shard(i, n, clips, out, work_root, meta, cfg, jobs, progress, log)
    except KeyboardInterrupt:
        kept = sum(p.name.endswith((".npz", ".fail.json")) for p in work_root.rglob("*")) if work_root.is_dir() else 0
        raise Interrupted(f"{kept} finished clip(s) kept in {work_root}, finished shards in {out}; "
                          "re-run the same command to resume") from None
    for folder in (work_root, out / WORK):  # tidy up once no shard is half done
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    manifest = shards.build_manifest(out)
    if shard_index is None and not sum(manifest.get("splits", {}).values()):
        raise DataError(f"none of the {len(clips)} videos could be used, so {out} holds no clips "
                        f"(the reason for each is in {out / 'failures.jsonl'})")
    return manifest


def _dedupe(clips: list[SourceClip]) -> tuple[list[SourceClip], list[SourceClip]]:
    """Two files with one id (`a.mp4`, `a.mkv`): keep the first, report the others."""
    seen: set[str] = set()
    keep, dup = [], []
    for c in clips:
        (dup if c.id in seen else keep).append(c)
        seen.add(c.id)
    return keep, dup


def prepare_synthetic(out: str | Path, cfg: PrepareConfig, *, n_clips: int, duration_s: float = SPEC.duration_s,
                      seed: int = 0, size: int = 96, jobs: int = 1, **folder_kwargs: Any) -> dict[str, Any]:
    """Write the procedural dataset into `out/source` (real mp4 files + labels.csv), then `prepare_folder`."""
    from vgs_cli.data.synthetic import write_synthetic_dataset

    out = ensure_dir(out, "--out")
    src = out / "source"
    params = {"n_clips": n_clips, "duration_s": duration_s, "seed": seed, "size": size}
    stamp = src / "synthetic.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != params:
        raise DataError(f"{src} holds synthetic clips made with {stamp.read_text().strip()}; use another -o folder")
    if not stamp.is_file():
        write_synthetic_dataset(src, n_clips, duration_s=duration_s, seed=seed, size=size, jobs=jobs)
        write_json(stamp, params)
    # Ids relative to videos/ read like VAS ids: "<class>/<class>_<NNNN>" (CSV paths resolve via its folder).
    return prepare_folder(src / "videos", out, cfg, labels_csv=src / "labels.csv", jobs=jobs, **folder_kwargs)
