"""HDF5 dataset shards: the one on-disk dataset format every training stage reads.

A dataset folder holds `shard_<i>-of-<n>.h5` files, `manifest.json` (a summary rebuilt from the shards) and
`failures.jsonl` (clips that could not be used, with the reason). data/README.md documents the layout.
Each shard stores row-aligned datasets (row r of every dataset is clip r):

    id      str [N]             clip id (unique in the folder), e.g. "dog/video_02677"
    split   str [N]             "train" | "valid" | "test"
    source  str [N]             where the clip came from (relative video path, or "" for ingested features)
    label   int64 [N]           index into the folder's class list, -1 when unlabelled
    has_audio bool [N]          False for a video without an audio track (then mel and wav are all zeros)
    mel     float32 [N, 80, 860]  the paper's [0, 1] log-mel (`audio.spec.clip_mel`)
    wav     int16 [N, 220500]   (default; value = round(x * 32767), clipped) or float32, see attr `wav_dtype`
    feats/<extractor> float32 [N, 215, D]
    classes str [C]             class names (the same list in every shard of a folder)
    failures str [K]            one JSON object per failed clip: {"id", "source", "reason"}

Root attributes: `format`, `format_version`, `vgs_version`, `spec` (JSON of `SPEC.to_dict()`), `extractors`
(JSON `{name: {"dim": D, ...settings}}`), `wav_dtype`, `shard_index`, `num_shards`, `settings` (JSON of the
producer's other settings: loop/pad mode, ...), `command`, `created`. `open_shard` refuses a shard whose
format or spectrogram settings differ from this vgs (`DataError`), so mels of another STFT never mix in.

Writer API (`data/shard_writer.py`; also for code that already has features, e.g. the official VAS/VGGSound
ingestion):

    with ShardWriter(path, classes=[...], extractors={"resnet50": {"dim": 2048, ...}}) as w:
        w.add(ClipRecord(id=..., split="train", mel=mel, feats={"resnet50": f}, wav=wav, label=3))
        w.add_failure("dog/x", "no video stream", source="dog/x.mp4")
    # the file appears (atomically renamed) only when the block succeeds

    write_clips(root, records, classes=..., extractors=..., num_shards=4)   # assigns by `shard_of(id, n)`
    build_manifest(root)                                                   # rewrite manifest/failures

Shards are immutable once written; a folder is (re)summarised from whatever shards exist, so shards made on
different machines (`shard_of` is deterministic) can simply be copied together and `build_manifest` run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vgs_cli.config.spec import SPEC, SpecConfig
from vgs_cli.errors import DataError
from vgs_cli.fsutil import atomic_path, write_json

FORMAT = "vgs-shard"
FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
WAV_DTYPES = ("int16", "float32")
INT16_SCALE = 32767.0
MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"
_SHARD_RE = re.compile(r"^shard_(\d+)-of-(\d+)\.h5$")


def shard_name(index: int, num_shards: int) -> str:
    return f"shard_{index}-of-{num_shards}.h5"


def _hash_int(text: str) -> int:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], 16)


def shard_of(clip_id: str, num_shards: int) -> int:
    """The shard a clip belongs to: a hash of its id, so every machine agrees without seeing the others."""
    return _hash_int(clip_id) % num_shards


def hash_split(clip_id: str, valid_pct: int = 10, test_pct: int = 10) -> str:
    """Deterministic split from the clip id (about 80/10/10): same id, same split, on any machine."""
    bucket = _hash_int("split:" + clip_id) % 100
    if bucket < 100 - valid_pct - test_pct:
        return "train"
    return "valid" if bucket < 100 - test_pct else "test"


@dataclass
class ClipRecord:
    """One clip ready to store. `wav` None means "no audio track" (mel must then be zeros too)."""

    id: str
    split: str
    mel: np.ndarray  # float32 [80, 860] on [0, 1]
    feats: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 [215, D]
    wav: np.ndarray | None = None  # float32 [220500] on about [-1, 1]
    label: int = -1
    source: str = ""


def encode_wav(wav: np.ndarray, wav_dtype: str) -> np.ndarray:
    """float waveform -> stored dtype (int16 rounds and clips to [-1, 1])."""
    if wav_dtype == "float32":
        return np.asarray(wav, dtype=np.float32)
    return np.round(np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * INT16_SCALE).astype(np.int16)


def decode_wav(stored: np.ndarray) -> np.ndarray:
    """Stored row(s) -> float32 on [-1, 1]."""
    if stored.dtype == np.int16:
        return stored.astype(np.float32) / INT16_SCALE
    return np.asarray(stored, dtype=np.float32)


def _h5py():
    import h5py

    return h5py


def shard_files(root: str | os.PathLike) -> list[Path]:
    """Shard files in a folder, ordered by index."""
    root = Path(root)
    found = [(int(m.group(1)), p) for p in root.glob("shard_*-of-*.h5") if (m := _SHARD_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def _attr_json(f, key: str, default: Any) -> Any:
    raw = f.attrs.get(key)
    return default if raw is None else json.loads(raw)


def read_strings(ds) -> list[str]:
    """An HDF5 string dataset (or a slice of one) as Python strings."""
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ds[()]]


def open_shard(path: str | os.PathLike, spec: SpecConfig = SPEC):
    """Open a shard read-only after checking its format and spectrogram settings (`DataError` otherwise)."""
    path = Path(path)
    h5py = _h5py()
    try:
        # Shards are immutable once renamed into place, so readers need no HDF5 file lock (which fails on
        # many cluster file systems: "unable to lock file").
        f = h5py.File(path, "r", locking=False)
    except (OSError, FileNotFoundError) as exc:
        raise DataError(f"cannot open shard {path}: {str(exc).splitlines()[0]}") from None
    try:
        check_shard_attrs(f, path, spec)
    except DataError:
        f.close()
        raise
    return f


def check_shard_attrs(f, path: Path, spec: SpecConfig = SPEC) -> None:
    if f.attrs.get("format") != FORMAT:
        raise DataError(f"{path} is not a vgs shard (format {f.attrs.get('format')!r})")
    if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
        raise DataError(f"{path}: shard format version {f.attrs.get('format_version')} is not supported "
                        f"(this vgs reads version {FORMAT_VERSION}); re-run vgs prepare")
    theirs = _attr_json(f, "spec", {})
    ours = spec.to_dict()
    diff = [f"{k} {theirs.get(k)!r} != {ours[k]!r}" for k in ours if theirs.get(k) != ours[k]]
    if diff:
        raise DataError(f"{path} was made with other spectrogram settings ({'; '.join(diff[:3])}); "
                        "re-run vgs prepare with this version")


def shard_info(path: str | os.PathLike, spec: SpecConfig = SPEC) -> dict[str, Any]:
    """Summary of one shard: settings, clip counts per split, classes, failures (reads no big arrays)."""
    with open_shard(path, spec) as f:
        splits = read_strings(f["split"])
        return {
            "file": Path(path).name,
            "shard_index": int(f.attrs["shard_index"]), "num_shards": int(f.attrs["num_shards"]),
            "clips": len(splits), "splits": {s: splits.count(s) for s in SPLITS},
            "no_audio": int(len(splits) - int(np.sum(f["has_audio"][()]))),
            "classes": read_strings(f["classes"]),
            "extractors": _attr_json(f, "extractors", {}), "spec": _attr_json(f, "spec", {}),
            "settings": _attr_json(f, "settings", {}), "wav_dtype": str(f.attrs["wav_dtype"]),
            "vgs_version": str(f.attrs["vgs_version"]), "command": str(f.attrs.get("command", "")),
            "created": str(f.attrs.get("created", "")),
            "failures": [json.loads(s) for s in read_strings(f["failures"])],
            "ids": read_strings(f["id"]),
        }


# ----------------------------------------------------------------------------------------- manifest

def _same(infos: list[dict[str, Any]], key: str, root: Path) -> Any:
    first = infos[0][key]
    for info in infos[1:]:
        if info[key] != first:
            raise DataError(f"{root}: shards {infos[0]['file']} and {info['file']} differ in {key}; "
                            "a folder must hold shards of one preparation")
    return first


def _stamp(path: Path) -> dict[str, int]:
    """Size and mtime: a manifest entry is trusted only while its shard file is unchanged."""
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def collect_manifest(root: str | os.PathLike, spec: SpecConfig = SPEC) -> dict[str, Any]:
    """Summarise every shard in `root` (without writing anything). Raises DataError for mixed folders."""
    root = Path(root)
    files = shard_files(root)
    if not files:
        raise DataError(f"{root}: no shard_<i>-of-<n>.h5 files (run `vgs prepare` first)")
    infos = [shard_info(p, spec) for p in files]
    num_shards = _same(infos, "num_shards", root)
    for key in ("classes", "extractors", "wav_dtype", "settings"):
        _same(infos, key, root)
    seen: dict[str, str] = {}
    for info in infos:
        for cid in info.pop("ids"):
            if cid in seen:
                raise DataError(f"{root}: clip {cid!r} is in both {seen[cid]} and {info['file']}")
            seen[cid] = info["file"]
    present = {i["shard_index"] for i in infos}
    failures = [fl for i in infos for fl in i["failures"]]
    return {
        "format": "vgs-shards", "format_version": FORMAT_VERSION, "vgs_version": infos[0]["vgs_version"],
        "created": max(i["created"] for i in infos), "command": infos[-1]["command"],
        "num_shards": num_shards, "missing_shards": [i for i in range(num_shards) if i not in present],
        "shards": [{"file": i["file"], "clips": i["clips"], "splits": i["splits"], "failures": len(i["failures"]),
                    **_stamp(root / i["file"])} for i in infos],
        "clips": sum(i["clips"] for i in infos),
        "splits": {s: sum(i["splits"][s] for i in infos) for s in SPLITS},
        "no_audio": sum(i["no_audio"] for i in infos), "failures": len(failures),
        "classes": infos[0]["classes"], "spec": infos[0]["spec"], "extractors": infos[0]["extractors"],
        "wav_dtype": infos[0]["wav_dtype"], "settings": infos[0]["settings"], "_failures": failures,
    }


def build_manifest(root: str | os.PathLike, spec: SpecConfig = SPEC) -> dict[str, Any]:
    """(Re)write `manifest.json` and `failures.jsonl` from the shards present; returns the manifest."""
    root = Path(root)
    manifest = collect_manifest(root, spec)
    failures = manifest.pop("_failures")
    with atomic_path(root / FAILURES) as tmp:
        tmp.write_text("".join(json.dumps(fl) + "\n" for fl in failures))
    write_json(root / MANIFEST, manifest)
    return manifest


def read_manifest(root: str | os.PathLike, spec: SpecConfig = SPEC) -> dict[str, Any]:
    """The folder summary: `classes`, `splits` (counts), `spec`, `extractors` ({name: {dim, ...}}), `vgs_version`,
    `shards`, `failures`, ... `manifest.json` is used when it lists exactly the shard files present, unchanged
    (size, mtime); otherwise (shards added by another machine, manifest missing) it is rebuilt in memory."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such dataset folder: {root}")
    path = root / MANIFEST
    on_disk = [{"file": p.name, **_stamp(p)} for p in shard_files(root)]
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc}); rebuild it with `vgs prepare manifest {root}`") from None
        listed = [{k: s.get(k) for k in ("file", "bytes", "mtime_ns")} for s in manifest.get("shards", [])]
        if listed == on_disk:
            if manifest.get("spec") != spec.to_dict():
                raise DataError(f"{root} was made with other spectrogram settings; re-run vgs prepare")
            return manifest
    manifest = collect_manifest(root, spec)
    manifest.pop("_failures")
    return manifest


def read_failures(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries of failures.jsonl (empty when the file is absent)."""
    path = Path(root) / FAILURES
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def iter_clips(root: str | os.PathLike, split: str | None = None,
               fields: tuple[str, ...] = ("id", "split", "label", "mel", "feats", "wav")) -> Iterator[dict[str, Any]]:
    """Yield every stored clip as a dict of numpy arrays/values (`feats` is `{name: float32[215, D]}`,
    `wav` float32), shard by shard in row order; `split` filters."""
    for path in shard_files(root):
        with open_shard(path) as f:
            splits = read_strings(f["split"])
            ids = read_strings(f["id"])
            for r, s in enumerate(splits):
                if split is not None and s != split:
                    continue
                yield read_row(f, r, fields, ids=ids, splits=splits)


def read_row(f, r: int, fields: tuple[str, ...], ids: list[str] | None = None,
             splits: list[str] | None = None) -> dict[str, Any]:
    """Row `r` of an open shard as numpy values (`wav` decoded to float32, `feats` as {name: array})."""
    out: dict[str, Any] = {}
    for name in fields:
        if name in ("id", "split", "source"):
            known = {"id": ids, "split": splits}.get(name)
            out[name] = known[r] if known is not None else read_strings(f[name][r : r + 1])[0]
        elif name in ("label", "has_audio"):
            out[name] = f[name][r].item()
        elif name in ("mel", "wav"):
            out[name] = f["mel"][r] if name == "mel" else decode_wav(f["wav"][r])
        elif name == "feats":
            out["feats"] = {k: f["feats"][k][r] for k in f["feats"]}
        else:
            raise DataError(f"unknown shard field {name!r}")
    return out
