"""HDF5 shards: exact round trips, validation, atomic writes, settings checks, manifest rebuilding."""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest

from vgs_cli.config.spec import SPEC, SpecConfig
from vgs_cli.data import shard_writer, shards
from vgs_cli.errors import DataError

EXTRACTORS = {"toy": {"dim": 6, "image_size": 32}}


def _record(i: int, rng: np.random.Generator, audio: bool = True) -> shards.ClipRecord:
    return shards.ClipRecord(
        id=f"cls{i % 2}/clip_{i:03d}", split=shards.SPLITS[i % 3],
        mel=rng.random((SPEC.n_mels, SPEC.stored_frames), dtype=np.float32),
        feats={"toy": rng.standard_normal((SPEC.num_video_frames, 6)).astype(np.float32)},
        wav=(rng.random(SPEC.num_samples, dtype=np.float32) * 1.8 - 0.9) if audio else None,
        label=i % 2, source=f"cls{i % 2}/clip_{i:03d}.mp4")


def _records(n: int, seed: int = 0) -> list[shards.ClipRecord]:
    rng = np.random.default_rng(seed)
    return [_record(i, rng, audio=(i != n - 1)) for i in range(n)]


@pytest.mark.parametrize("wav_dtype", ["float32", "int16"])
def test_round_trip_is_exact(tmp_path, wav_dtype):
    recs = _records(7)
    manifest = shard_writer.write_clips(tmp_path, recs + [("cls0/broken", "moov atom not found", "cls0/broken.mp4")],
                                  classes=["cls0", "cls1"], extractors=EXTRACTORS, num_shards=2, wav_dtype=wav_dtype)
    assert manifest["clips"] == 7 and manifest["failures"] == 1 and manifest["no_audio"] == 1
    assert manifest["splits"] == {"train": 3, "valid": 2, "test": 2}
    assert manifest["extractors"] == EXTRACTORS and manifest["classes"] == ["cls0", "cls1"]
    assert manifest["spec"] == SPEC.to_dict() and manifest["wav_dtype"] == wav_dtype
    got = {c["id"]: c for c in shards.iter_clips(tmp_path, fields=("id", "split", "label", "mel", "feats", "wav", "source", "has_audio"))}
    assert sorted(got) == sorted(r.id for r in recs)
    for r in recs:
        c = got[r.id]
        assert c["split"] == r.split and c["label"] == r.label and c["source"] == r.source
        np.testing.assert_array_equal(c["mel"], r.mel)
        np.testing.assert_array_equal(c["feats"]["toy"], r.feats["toy"])
        assert c["wav"].dtype == np.float32 and c["wav"].shape == (SPEC.num_samples,)
        if r.wav is None:
            assert not c["has_audio"] and not c["wav"].any()
        elif wav_dtype == "float32":
            np.testing.assert_array_equal(c["wav"], r.wav)
        else:  # int16: round(x * 32767) / 32767
            np.testing.assert_allclose(c["wav"], r.wav, atol=0.5 / shards.INT16_SCALE + 1e-7)
    row_bytes = SPEC.num_samples * np.dtype(wav_dtype).itemsize
    stored = 0
    for path in shards.shard_files(tmp_path):
        with h5py.File(path, "r") as f:
            stored += f["wav"].id.get_storage_size()
    assert stored == 6 * row_bytes  # the silent clip's all-zero row takes no space
    assert shards.read_failures(tmp_path) == [{"id": "cls0/broken", "source": "cls0/broken.mp4",
                                               "reason": "moov atom not found"}]
    assert json.loads((tmp_path / "manifest.json").read_text())["clips"] == 7


def test_clips_are_assigned_to_shards_by_id_hash(tmp_path):
    recs = _records(12, seed=1)
    shard_writer.write_clips(tmp_path, recs, classes=["cls0", "cls1"], extractors=EXTRACTORS, num_shards=3)
    seen = []
    for path in shards.shard_files(tmp_path):
        with h5py.File(path, "r") as f:
            ids = [s.decode() for s in f["id"][()]]
            index = int(f.attrs["shard_index"])
        assert all(shards.shard_of(i, 3) == index for i in ids)
        seen += ids
    assert sorted(seen) == sorted(r.id for r in recs)  # every clip exactly once
    assert [p.name for p in shards.shard_files(tmp_path)] == [shards.shard_name(i, 3) for i in range(3)]


def test_writer_rejects_bad_records_and_leaves_no_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "shard_0-of-1.h5"
    good = _record(0, rng)
    bad = [replace(good, mel=np.zeros((80, 100), np.float32)), replace(good, split="dev"), replace(good, label=5),
           replace(good, wav=np.zeros(1000, np.float32)),
           replace(good, feats={"other": np.zeros((215, 6), np.float32)}),
           replace(good, feats={"toy": np.zeros((212, 6), np.float32)})]
    for rec in bad:
        with pytest.raises(DataError):
            with shard_writer.ShardWriter(path, classes=["a", "b"], extractors=EXTRACTORS) as w:
                w.add(rec)
    with pytest.raises(DataError, match="added twice"):
        with shard_writer.ShardWriter(path, classes=["a", "b"], extractors=EXTRACTORS) as w:
            rec = _record(0, rng)
            w.add(rec)
            w.add(rec)
    assert list(tmp_path.iterdir()) == []  # no shard, no temp file


def test_interrupted_writer_keeps_previous_file(tmp_path):
    recs = _records(3)
    path = tmp_path / "shard_0-of-1.h5"
    with shard_writer.ShardWriter(path, classes=["cls0", "cls1"], extractors=EXTRACTORS) as w:
        w.add(recs[0])
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with shard_writer.ShardWriter(path, classes=["cls0", "cls1"], extractors=EXTRACTORS) as w:
            w.add(recs[1])
            raise RuntimeError("killed")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_shard_with_other_settings_is_refused(tmp_path):
    other = SpecConfig(fmax=8000.0)  # same array sizes, another mel scale
    with shard_writer.ShardWriter(tmp_path / "shard_0-of-1.h5", extractors=EXTRACTORS, spec=other) as w:
        w.add(replace(_records(1)[0], label=-1))
    with pytest.raises(DataError, match="other spectrogram settings.*fmax"):
        shards.open_shard(tmp_path / "shard_0-of-1.h5")
    with pytest.raises(DataError, match="fmax"):
        shards.read_manifest(tmp_path)
    shards.open_shard(tmp_path / "shard_0-of-1.h5", spec=other).close()  # fine with its own settings
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(DataError, match="not a vgs shard"):
        shards.open_shard(tmp_path / "x.h5")


def test_manifest_follows_the_shards_present(tmp_path):
    recs = _records(9)
    shard_writer.write_clips(tmp_path, recs, classes=["cls0", "cls1"], extractors=EXTRACTORS, num_shards=3)
    gone = shards.shard_files(tmp_path)[1]
    with h5py.File(gone, "r") as f:
        lost = len(f["id"])
    gone.unlink()  # e.g. one machine has not delivered its shard yet
    m = shards.read_manifest(tmp_path)  # stale manifest.json is not trusted
    assert m["clips"] == 9 - lost and m["missing_shards"] == [1]
    # write_clips resumes: only the missing shard is written, the others are kept as they are
    kept = shards.shard_files(tmp_path)[0].stat().st_mtime_ns
    m = shard_writer.write_clips(tmp_path, recs, classes=["cls0", "cls1"], extractors=EXTRACTORS, num_shards=3)
    assert m["clips"] == 9 and m["missing_shards"] == []
    assert shards.shard_files(tmp_path)[0].stat().st_mtime_ns == kept


def test_mixed_folder_is_refused(tmp_path):
    shard_writer.write_clips(tmp_path, _records(4), classes=["cls0", "cls1"], extractors=EXTRACTORS, num_shards=2)
    shards.shard_files(tmp_path)[1].unlink()
    with pytest.raises(DataError, match="differ in classes"):  # the rebuilt shard 1 has another class list
        shard_writer.write_clips(tmp_path, _records(4), classes=["cls0", "cls1", "cls2"], extractors=EXTRACTORS, num_shards=2)
    with pytest.raises(DataError, match="differ in classes"):
        shards.read_manifest(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no shard"):
        shards.read_manifest(tmp_path / "empty")


def test_hash_split_is_deterministic_and_balanced():
    ids = [f"clip_{i}" for i in range(3000)]
    splits = [shards.hash_split(i) for i in ids]
    assert splits == [shards.hash_split(i) for i in ids]
    frac = {s: splits.count(s) / len(ids) for s in shards.SPLITS}
    assert abs(frac["train"] - 0.8) < 0.03 and abs(frac["valid"] - 0.1) < 0.02 and abs(frac["test"] - 0.1) < 0.02
