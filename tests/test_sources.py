"""VAS / VGGSound: vendored splits, official-feature ingestion, CSV planning, safe unpacking, and the real
download paths (HTTP archive, yt-dlp) against a local server."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vgs_cli.data.shards import iter_clips, read_failures
from vgs_cli.errors import DataError
from vgs_cli.prepare.sources import (
    VAS_CLASSES,
    clip_name,
    fit_rows,
    ingest,
    load_split,
    parse_clip_name,
    vas,
    vggsound,
    videos_below,
)

# --------------------------------------------------------------------------------------------- splits


def test_vendored_split_lists_match_the_paper():
    counts = {n: len(load_split(n)) for n in ("vas_train", "vas_valid", "vggsound_train", "vggsound_valid",
                                               "vggsound_test")}
    assert counts == {"vas_train": 11773, "vas_valid": 768, "vggsound_train": 156487, "vggsound_valid": 19056,
                      "vggsound_test": 14512}
    assert not set(load_split("vas_train")) & set(load_split("vas_valid"))
    assert {n.split("/")[0] for n in load_split("vas_valid")} == set(VAS_CLASSES)
    assert list(VAS_CLASSES) == sorted(VAS_CLASSES) and len(VAS_CLASSES) == 8
    ytid, start, end = parse_clip_name(load_split("vggsound_test")[0])
    assert end - start == 10_000 and len(ytid) == 11


def test_clip_names_round_trip_with_underscores():
    assert clip_name("a_b-c_d_e12", 30) == "a_b-c_d_e12_30000_40000"
    assert parse_clip_name("a_b-c_d_e12_30000_40000") == ("a_b-c_d_e12", 30000, 40000)
    with pytest.raises(DataError, match="not a VGGSound clip name"):
        parse_clip_name("video_00001")


def test_fit_rows_trims_or_repeats_the_last_row():
    f = np.arange(214 * 3, dtype=np.float64).reshape(214, 3)
    out = fit_rows(f)
    assert out.shape == (215, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:214], f)
    np.testing.assert_array_equal(out[214], f[213])
    g = np.random.default_rng(0).standard_normal((216, 5)).astype(np.float32)
    np.testing.assert_array_equal(fit_rows(g), g[:215])
    with pytest.raises(DataError):
        fit_rows(np.zeros((0, 4)))


# ------------------------------------------------------------------------------- feature ingestion


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pkl(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def _official_vas(root: Path, names: list[str], rows: dict[str, int], marker: Path) -> dict[str, dict]:
    """A tiny official VAS feature tree; returns the arrays written per clip name."""
    rng = np.random.default_rng(0)
    written = {}
    for name in names:
        cls, vid = name.split("/")
        mel = rng.uniform(0, 1, (80, 860)).astype(np.float32)
        (root / cls / "melspec_10s_22050hz").mkdir(parents=True, exist_ok=True)
        np.save(root / cls / "melspec_10s_22050hz" / f"{vid}_mel.npy", mel)
        n = rows.get(name, 215)
        arrs = {"mel": mel}
        for kind, folder, dim in (("resnet50", "feature_resnet50_dim2048_21.5fps", 2048),
                                  ("rgb", "feature_rgb_bninception_dim1024_21.5fps", 1024),
                                  ("flow", "feature_flow_bninception_dim1024_21.5fps", 1024)):
            arrs[kind] = rng.standard_normal((n, dim)).astype(np.float32)
            _pkl(root / cls / folder / f"{vid}.pkl", arrs[kind])
        written[name] = arrs
    # The last clip's flow pickle is hostile: it must be refused, listed as a failure, and never run.
    cls, vid = names[-1].split("/")
    _pkl(root / cls / "feature_flow_bninception_dim1024_21.5fps" / f"{vid}.pkl", _Evil(marker))
    return written


def test_ingest_official_vas_layout(tmp_path):
    train, valid = load_split("vas_train"), load_split("vas_valid")
    names = [train[0], train[5000], valid[3], valid[700]]
    marker = tmp_path / "pwned"
    src = tmp_path / "features"
    written = _official_vas(src, names, {names[0]: 214, names[1]: 216}, marker)
    # One clip that is in no official list: skipped, and counted.
    (src / "dog" / "melspec_10s_22050hz").mkdir(parents=True, exist_ok=True)
    np.save(src / "dog" / "melspec_10s_22050hz" / "video_99999_mel.npy", np.zeros((80, 860), np.float32))

    out = tmp_path / "shards"
    man = ingest.ingest_vas(tmp_path, out, num_shards=2)  # the folder above `features/` works too
    assert not marker.exists()
    assert man["skipped_unlisted"] == 1
    assert man["splits"] == {"train": 2, "valid": 1, "test": 0}
    assert man["classes"] == list(VAS_CLASSES)
    assert set(man["extractors"]) == {"resnet50", "bninception"}
    assert man["extractors"]["bninception"]["dim"] == 2048
    assert man["settings"]["waveforms"] is False

    fails = read_failures(out)
    assert [f["id"] for f in fails] == [names[-1]] and "refused to unpickle global" in fails[0]["reason"]
    clips = {c["id"]: c for c in iter_clips(out)}
    assert set(clips) == set(names[:-1])
    for name in names[:-1]:
        c, w = clips[name], written[name]
        np.testing.assert_array_equal(c["mel"], w["mel"])
        np.testing.assert_array_equal(c["feats"]["resnet50"], fit_rows(w["resnet50"]))
        np.testing.assert_array_equal(c["feats"]["bninception"],
                                      np.concatenate([fit_rows(w["rgb"]), fit_rows(w["flow"])], axis=1))
        assert c["label"] == VAS_CLASSES.index(name.split("/")[0])
        assert c["split"] == ("train" if name in train else "valid")
        assert not c["wav"].any()
    # 214 rows: the last row repeated; 216 rows: trimmed.
    np.testing.assert_array_equal(clips[names[0]]["feats"]["resnet50"][214], written[names[0]]["resnet50"][213])

    # Re-running skips finished shards (resume unit = one shard) and leaves the files untouched.
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.h5")}
    ingest.ingest_vas(src, out, num_shards=2)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.h5")} == before


def test_ingest_one_shard_of_many_and_extractor_choice(tmp_path):
    names = list(load_split("vas_train")[:6])
    src = tmp_path / "f"
    _official_vas(src, names + [load_split("vas_valid")[0]], {}, tmp_path / "m")
    out = tmp_path / "o"
    man = ingest.ingest_vas(src, out, extractors=["resnet50"], num_shards=3, shard_index=1)
    assert [p.name for p in out.glob("shard_*.h5")] == ["shard_1-of-3.h5"]
    assert man["missing_shards"] == [0, 2]
    assert set(man["extractors"]) == {"resnet50"}
    with pytest.raises(DataError, match="unknown official feature"):
        ingest.ingest_vas(src, tmp_path / "o2", extractors=["clip"])
    with pytest.raises(DataError, match="no mel folder"):
        ingest.ingest_vas(tmp_path / "o", tmp_path / "o3")


def test_ingest_reference_vas_matches_source_files(reference_dir, tmp_path):
    src = reference_dir / "vas"
    man = ingest.ingest_vas(src, tmp_path / "ref")
    mels = sorted((src / "mels").glob("*/*_mel.npy"))
    assert man["clips"] == len(mels) == 10 and man["failures"] == 0
    assert set(man["extractors"]) == {"resnet50"}
    clips = {c["id"]: c for c in iter_clips(tmp_path / "ref")}
    for mel_path in mels:
        cls, vid = mel_path.parent.name, mel_path.name[: -len("_mel.npy")]
        c = clips[f"{cls}/{vid}"]
        np.testing.assert_array_equal(c["mel"], np.load(mel_path))
        with open(src / "resnet50" / cls / f"{vid}.pkl", "rb") as fh:
            feats = pickle.load(fh)  # trusted shared reference: the stock loader is the oracle
        np.testing.assert_array_equal(c["feats"]["resnet50"], fit_rows(feats))
        assert c["label"] == VAS_CLASSES.index(cls)
        split = "train" if f"{cls}/{vid}" in load_split("vas_train") else "valid"
        assert c["split"] == split


# ------------------------------------------------------------------------------------------ VGGSound


def _csv(path: Path, rows: list[tuple]) -> Path:
    lines = []
    for ytid, start, label, split in rows:
        lab = f'"{label}"' if "," in label else label
        lines.append(f"{ytid},{start},{lab},{split}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _vgg_rows() -> list[tuple]:
    tr = parse_clip_name(load_split("vggsound_train")[0])
    va = parse_clip_name(load_split("vggsound_valid")[0])
    return [
        (tr[0], tr[1] // 1000, "dog barking", "train"),
        (va[0], va[1] // 1000, "people coughing", "train"),
        ("zzzzzzzzzzz", 7, "church bell ringing, chiming", "test"),  # quoted label with a comma
        ("yyyyyyyyyyy", 3, "dog barking", "train"),  # train row in no official list: unlisted
    ]


def test_vggsound_csv_plan_splits_and_labels(tmp_path):
    rows = vggsound.read_csv(_csv(tmp_path / "v.csv", _vgg_rows()))
    clips, classes, skipped = vggsound.plan(rows)
    assert classes == ["church bell ringing, chiming", "dog barking", "people coughing"]
    assert skipped == 1
    got = {c.name: (c.split, c.label) for c in clips}
    assert got == {load_split("vggsound_train")[0]: ("train", 1), load_split("vggsound_valid")[0]: ("valid", 2),
                   "zzzzzzzzzzz_7000_17000": ("test", 0)}
    clips2, _, skipped2 = vggsound.plan(rows, unlisted="train")
    assert skipped2 == 0 and len(clips2) == 4
    (tmp_path / "bad.csv").write_text("abc,12,label\n")
    with pytest.raises(DataError, match="bad.csv:1: expected 4 columns"):
        vggsound.read_csv(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("abc,1.5,label,train\n")
    with pytest.raises(DataError, match="bad2.csv:1: bad row"):
        vggsound.read_csv(tmp_path / "bad2.csv")


def test_ingest_vggsound_flat_layout(tmp_path):
    csv_path = _csv(tmp_path / "v.csv", _vgg_rows())
    src = tmp_path / "vggsound"
    rng = np.random.default_rng(1)
    names = [load_split("vggsound_train")[0], load_split("vggsound_valid")[0], "zzzzzzzzzzz_7000_17000",
             "yyyyyyyyyyy_3000_13000"]
    mels = {}
    for name in names:
        mels[name] = rng.uniform(0, 1, (80, 862)).astype(np.float32)  # wider than 860: trimmed
        (src / "melspec_10s_22050hz").mkdir(parents=True, exist_ok=True)
        np.save(src / "melspec_10s_22050hz" / f"{name}_mel.npy", mels[name])
        _pkl(src / "feature_resnet50_dim2048_21.5fps" / f"{name}.pkl", rng.standard_normal((215, 2048)).astype(np.float32))
    man = ingest.ingest_vggsound(src, tmp_path / "out", csv_path=csv_path)
    assert man["splits"] == {"train": 1, "valid": 1, "test": 1} and man["skipped_unlisted"] == 1
    assert len(man["classes"]) == 3
    clips = {c["id"]: c for c in iter_clips(tmp_path / "out")}
    np.testing.assert_array_equal(clips[names[2]]["mel"], mels[names[2]][:, :860])
    assert clips[names[2]]["label"] == 0 and clips[names[0]]["label"] == 1
    # Without the CSV: vendored lists only (the made-up test id is in none), labels -1.
    man2 = ingest.ingest_vggsound(src, tmp_path / "out2")
    assert man2["splits"] == {"train": 1, "valid": 1, "test": 0} and man2["classes"] == []


# ------------------------------------------------------------------------------------------ unpacking


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_unpack_zip_and_tar_find_videos(tmp_path):
    z = _zip(tmp_path / "a.zip", {"VAS/dog/videos/video_00001.mp4": b"x", "VAS/gun/video_00002.mp4": b"y",
                                  "VAS/readme.txt": b"z", "VAS/other/video_3.mp4": b"w"})
    got = vas.find_videos(vas.unpack(z, tmp_path / "ua"))
    assert sorted(got) == ["dog/video_00001", "gun/video_00002"]
    t = tmp_path / "b.tar.gz"
    with tarfile.open(t, "w:gz") as tar:
        for name, data in {"x/baby/video_00009.mp4": b"abc"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("x/baby/video_00010.mp4")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    dest = vas.unpack(t, tmp_path / "ub")
    assert (dest / "x/baby/video_00009.mp4").read_bytes() == b"abc"
    assert not (dest / "x/baby/video_00010.mp4").exists()  # links are skipped


def test_unpack_refuses_path_traversal_and_non_archives(tmp_path):
    z = _zip(tmp_path / "evil.zip", {"ok/dog/video_1.mp4": b"x", "../../escaped.txt": b"bad"})
    with pytest.raises(DataError, match="unsafe member path"):
        vas.unpack(z, tmp_path / "out" / "u")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "u").exists()
    page = tmp_path / "page"
    page.write_bytes(b"<!DOCTYPE html><html><body>Google Drive quota exceeded</body></html>")
    with pytest.raises(DataError, match="HTML page"):
        vas.unpack(page, tmp_path / "u2")


def test_dataset_video_search_accepts_what_prepare_folder_accepts(tmp_path):
    """`vgs prepare vas|vggsound --videos` and `vgs prepare folder` share one suffix list (case-insensitive),
    and the dataset walk lists shallow files first, then by name."""
    from vgs_cli.data.video import VIDEO_EXTS
    from vgs_cli.prepare.folder import list_videos

    (tmp_path / "sub").mkdir()
    for i, ext in enumerate(VIDEO_EXTS):
        (tmp_path / ("sub" if i % 2 else "") / f"clip{i:02d}{ext.upper() if i % 3 == 0 else ext}").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "clip.wav").write_bytes(b"")
    root, found = videos_below(tmp_path)
    assert len(found) == len(VIDEO_EXTS) and {".m4v", ".ts", ".3gp"} <= {p.suffix.lower() for p in found}
    assert sorted(found) == sorted(list_videos(root))
    assert [p.parent == root for p in found] == sorted((p.parent == root for p in found), reverse=True)


def test_plan_vas_videos_reports_missing_and_unlisted(tmp_path):
    name = load_split("vas_valid")[0]
    videos = {name: tmp_path / "a.mp4", "dog/video_99999": tmp_path / "b.mp4"}
    planned, missing, skipped = vas.plan_videos(videos)
    assert [(p.name, p.split, p.label) for p in planned] == [(name, "valid", VAS_CLASSES.index(name.split("/")[0]))]
    assert skipped == 1 and len(missing) == 11773 + 768 - 1
    planned2, _, _ = vas.plan_videos(videos, unlisted="train")
    assert len(planned2) == 2


def test_failure_log_keeps_the_latest_entry(tmp_path):
    (tmp_path / vggsound.FAILURES_FILE).write_text(
        json.dumps({"id": "a", "reason": "old"}) + "\n" + json.dumps({"id": "a", "reason": "new"}) + "\n")
    assert vggsound.read_failures(tmp_path)["a"]["reason"] == "new"


def test_cli_ingest_and_one_line_errors(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "feats"
    names = [load_split("vas_valid")[5], load_split("vas_train")[7]]
    # The last clip's flow pickle is hostile, but only resnet50 is asked for, so it is never opened.
    _official_vas(src, names + [load_split("vas_train")[8]], {}, tmp_path / "m")
    out = tmp_path / "out"
    vgs = [sys.executable, "-m", "vgs_cli", "prepare", "vas"]
    ok = subprocess.run([*vgs, "--from-features", str(src), "-o", str(out), "--features", "resnet50", "-q"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["clips"] == 3 and man["failures"] == 0 and list(man["extractors"]) == ["resnet50"]
    bad = subprocess.run([*vgs, "--from-features", str(src), "-o", str(out), "--unlisted", "train", "-q"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "already holds shards made with" in bad.stderr
    assert "Traceback" not in bad.stderr
