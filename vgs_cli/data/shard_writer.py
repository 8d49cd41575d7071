"""Writing shards: `ShardWriter` (one shard file, atomic) and `write_clips` (records -> a folder of shards).

Reading, naming and the manifest are in `data/shards.py`, which this module builds on (one direction).
See `data/shards.py` for the on-disk layout these write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from vgs_cli import __version__
from vgs_cli.config.spec import SPEC, SpecConfig
from vgs_cli.data.shards import (
    FORMAT,
    FORMAT_VERSION,
    SPLITS,
    WAV_DTYPES,
    ClipRecord,
    _h5py,
    build_manifest,
    encode_wav,
    shard_name,
    shard_of,
)
from vgs_cli.errors import DataError
from vgs_cli.fsutil import atomic_path, output_error

# Room held beside a shard while it is written (a plain file) and given back before the file is closed, or as
# soon as the disk fills: HDF5 can close a file only by flushing its dirty caches (chunks, up to 1 MiB per
# dataset by default, and metadata), and a file it cannot close leaves "Exception ignored" tracebacks and a
# crash at exit behind the one-line error (issue 25).
RESERVE_BYTES = 16 << 20


class ShardWriter:
    """Write one shard into a temp file; it is renamed to `path` only by a successful `close()`.

    `extractors` maps each feature name to its settings (must include `dim`); every record must carry
    exactly those features. Usable as a context manager (an exception discards the temp file).
    """

    def __init__(self, path: str | os.PathLike, *, classes: list[str] | tuple[str, ...] = (),
                 extractors: dict[str, dict[str, Any]] | None = None, spec: SpecConfig = SPEC,
                 wav_dtype: str = "int16", shard_index: int = 0, num_shards: int = 1,
                 settings: dict[str, Any] | None = None, command: str = ""):
        if wav_dtype not in WAV_DTYPES:
            raise DataError(f"wav_dtype must be one of {WAV_DTYPES}, got {wav_dtype!r}")
        self.extractors = {k: dict(v) for k, v in (extractors or {}).items()}
        for name, st in self.extractors.items():
            if not isinstance(st.get("dim"), int) or st["dim"] <= 0:
                raise DataError(f"extractor {name!r}: settings must include a positive integer 'dim'")
        self.path, self.spec, self.wav_dtype = Path(path), spec, wav_dtype
        self.classes = list(classes)
        self._ids: set[str] = set()
        self._failures: list[str] = []
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._reserve = self._tmp.with_suffix(".reserve.tmp")  # matches the stale temp files' pattern
        self._f = None
        self._ds: dict[str, Any] = {}
        with self._writing():
            _hold_space(self._reserve, RESERVE_BYTES)
            self._f = _h5py().File(self._tmp, "w")
            self._init_file(shard_index, num_shards, settings or {}, command)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """HDF5's write errors (a full disk) as one line naming the shard, not its temp file; the temp file
        is dropped, so the shard is simply absent and a re-run writes it."""
        try:
            yield
        except Exception as exc:
            err = output_error(exc, self.path)
            if err is None:
                raise
            self.abort()
            raise err from exc

    def _init_file(self, shard_index: int, num_shards: int, settings: dict, command: str) -> None:
        h5py, f, sp = _h5py(), self._f, self.spec
        f.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "vgs_version": __version__,
            "spec": json.dumps(sp.to_dict(), sort_keys=True), "extractors": json.dumps(self.extractors, sort_keys=True),
            "wav_dtype": self.wav_dtype, "shard_index": int(shard_index), "num_shards": int(num_shards),
            "settings": json.dumps(settings, sort_keys=True), "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
        text = h5py.string_dtype()
        f.create_dataset("classes", data=np.array(self.classes, dtype=object), dtype=text)
        for name in ("id", "split", "source"):
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=text, chunks=(256,))
        f.create_dataset("label", shape=(0,), maxshape=(None,), dtype="int64", chunks=(256,))
        f.create_dataset("has_audio", shape=(0,), maxshape=(None,), dtype="bool", chunks=(256,))
        # One clip per chunk: the Dataset reads single clips at random.
        f.create_dataset("mel", shape=(0, sp.n_mels, sp.stored_frames), maxshape=(None, sp.n_mels, sp.stored_frames),
                         dtype="float32", chunks=(1, sp.n_mels, sp.stored_frames))
        f.create_dataset("wav", shape=(0, sp.num_samples), maxshape=(None, sp.num_samples), dtype=self.wav_dtype,
                         chunks=(1, sp.num_samples))
        grp = f.create_group("feats")
        n = sp.num_video_frames
        for name, st in self.extractors.items():
            grp.create_dataset(name, shape=(0, n, st["dim"]), maxshape=(None, n, st["dim"]), dtype="float32",
                               chunks=(1, n, st["dim"]))
        # Held open until close: a dataset handle dropped after each write flushes its chunks in h5py's
        # __dealloc__, which only prints a failed write ("Exception ignored"), so a full disk lost clips silently.
        self._ds = {name: f[name] for name in ("id", "split", "source", "label", "has_audio", "mel", "wav",
                                               *(f"feats/{k}" for k in self.extractors))}

    def __len__(self) -> int:
        return len(self._ids)

    def _check(self, rec: ClipRecord) -> None:
        sp = self.spec
        if rec.id in self._ids:
            raise DataError(f"clip {rec.id!r} added twice to {self.path.name}")
        if rec.split not in SPLITS:
            raise DataError(f"clip {rec.id!r}: split must be one of {SPLITS}, got {rec.split!r}")
        if int(rec.label) != -1 and not 0 <= int(rec.label) < len(self.classes):
            raise DataError(f"clip {rec.id!r}: label {rec.label} is outside the {len(self.classes)} classes")
        if tuple(np.shape(rec.mel)) != (sp.n_mels, sp.stored_frames):
            raise DataError(f"clip {rec.id!r}: mel must be [{sp.n_mels}, {sp.stored_frames}], got {np.shape(rec.mel)}")
        if rec.wav is not None and tuple(np.shape(rec.wav)) != (sp.num_samples,):
            raise DataError(f"clip {rec.id!r}: wav must be [{sp.num_samples}], got {np.shape(rec.wav)}")
        if set(rec.feats) != set(self.extractors):
            raise DataError(f"clip {rec.id!r}: features {sorted(rec.feats)} != shard's {sorted(self.extractors)}")
        for name, arr in rec.feats.items():
            want = (sp.num_video_frames, self.extractors[name]["dim"])
            if tuple(np.shape(arr)) != want:
                raise DataError(f"clip {rec.id!r}: feats[{name}] must be {list(want)}, got {list(np.shape(arr))}")

    def add(self, rec: ClipRecord) -> None:
        """Append one clip (validated: shapes, split, label range, feature names)."""
        self._check(rec)
        with self._writing():
            self._add(rec)
        self._ids.add(rec.id)

    def _add(self, rec: ClipRecord) -> None:
        f, r = self._ds, len(self._ids)
        for ds in f.values():
            ds.resize(r + 1, axis=0)
        f["id"][r], f["split"][r], f["source"][r] = rec.id, rec.split, rec.source
        f["label"][r] = int(rec.label)
        f["has_audio"][r] = rec.wav is not None
        f["mel"][r] = np.asarray(rec.mel, dtype=np.float32)
        if rec.wav is not None and np.any(rec.wav):  # unwritten chunks read back as 0 and take no disk space
            f["wav"][r] = encode_wav(rec.wav, self.wav_dtype)
        for name, arr in rec.feats.items():
            f[f"feats/{name}"][r] = np.asarray(arr, dtype=np.float32)

    def add_failure(self, clip_id: str, reason: str, source: str = "") -> None:
        """Record a clip that could not be used (listed in failures.jsonl by `build_manifest`)."""
        self._failures.append(json.dumps({"id": clip_id, "source": source, "reason": reason}))

    def close(self) -> Path:
        """Finish the file and move it into place."""
        if self._f is None or self._ctx is None:
            return self.path
        with self._writing():
            self._f.create_dataset("failures", data=np.array(self._failures, dtype=object),
                                   dtype=_h5py().string_dtype())
            self._f.flush()  # HDF5's caches: where a full disk usually shows, raised here (reserve still held)
            self._reserve.unlink(missing_ok=True)
            self._close_file()
        ctx, self._ctx = self._ctx, None
        ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the temp file; `path` is left as it was."""
        if self._ctx is None:
            return
        with contextlib.suppress(OSError):
            self._reserve.unlink(missing_ok=True)  # first: the room HDF5 needs to close the file cleanly
        if self._f is not None:
            with contextlib.suppress(Exception):  # a disk filled by others since: the file goes anyway
                self._close_file()
            self._f = None
        ctx, self._ctx = self._ctx, None
        try:
            ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
        except RuntimeError:
            pass

    def _close_file(self) -> None:
        """Datasets first, then the file (h5py's own order), with no handle left for a later __dealloc__."""
        self._ds = {}
        self._f.close()
        self._f = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:  # a close that failed part-way (or Ctrl-C in it): no temp or reserve file left
            self.abort()
            raise


def _hold_space(path: Path, size: int) -> None:
    """Allocate `size` bytes of disk to a file at `path` (really allocated, not a sparse file)."""
    with open(path, "wb") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, size)
            return
        except AttributeError:  # macOS
            pass
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # a file system without it: write zeros
                raise
        fh.write(bytes(size))


# ------------------------------------------------------------------------------------------ reading

# ------------------------------------------------------------------------------------------ writing

def write_clips(root: str | os.PathLike, records: Iterable[ClipRecord | tuple[str, str, str]], *,
                classes: list[str] | tuple[str, ...] = (), extractors: dict[str, dict[str, Any]] | None = None,
                num_shards: int = 1, wav_dtype: str = "int16", settings: dict[str, Any] | None = None,
                command: str = "") -> dict[str, Any]:
    """Write already-computed clips into `root` as `num_shards` shards (clip -> `shard_of(id, n)`), then the
    manifest. A record may also be a failure tuple `(id, reason, source)`. Shards already present in `root`
    are kept and their clips skipped (resume); other shards are written atomically when the input ends."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if num_shards < 1:
        raise DataError(f"num_shards must be >= 1, got {num_shards}")
    done = {i for i in range(num_shards) if (root / shard_name(i, num_shards)).is_file()}
    writers: dict[int, ShardWriter] = {}

    def writer(i: int) -> ShardWriter:
        if i not in writers:
            writers[i] = ShardWriter(root / shard_name(i, num_shards), classes=classes, extractors=extractors,
                                     wav_dtype=wav_dtype, shard_index=i, num_shards=num_shards,
                                     settings=settings, command=command)
        return writers[i]

    try:
        for rec in records:
            i = shard_of(rec.id if isinstance(rec, ClipRecord) else rec[0], num_shards)
            if i in done:
                continue
            if isinstance(rec, ClipRecord):
                writer(i).add(rec)
            else:
                writer(i).add_failure(rec[0], rec[1], rec[2] if len(rec) > 2 else "")
        for i in sorted(set(range(num_shards)) - done):  # empty shards too, so the folder is complete
            writer(i).close()
    finally:
        for w in writers.values():
            w.abort()  # no-op for closed writers
    return build_manifest(root)
