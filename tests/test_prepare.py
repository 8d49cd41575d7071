"""`vgs prepare`: folders of real mp4 files -> shards; failures, resume, multi-machine sharding, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from vgs_cli.audio.spec import clip_mel
from vgs_cli.config.prepare import PRESETS
from vgs_cli.config.spec import SPEC
from vgs_cli.data import shard_writer, shards
from vgs_cli.data.dataset import ShardDataset
from vgs_cli.errors import DataError, Interrupted, VgsError
from vgs_cli.prepare import folder as prepare

CFG = PRESETS["tiny"].replace(image_size=32)  # real EfficientNet-Lite0 weights, tiny crop: fast
QUIET = dict(progress=False, log=lambda msg: None)
GOOD = {"cat/a": 440.0, "cat/b": 660.0, "dog/c": 880.0, "dog/d": 1320.0}  # clip id -> tone (Hz)


def _clip(path: Path, seed: int, tone: float | None, seconds: float = 2.0) -> None:
    from vgs_cli.data.video import write_video

    n = int(round(seconds * SPEC.fps))
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)  # every frame distinct
    t = np.arange(int(seconds * SPEC.sample_rate)) / SPEC.sample_rate
    wav = None if tone is None else (0.3 * np.sin(2 * np.pi * tone * t)).astype(np.float32)
    write_video(path, frames, fps=SPEC.fps, wav=wav)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """4 good clips in class folders, 1 silent video at the top, 1 corrupt mp4, 1 audio-only mp4."""
    from vgs_cli.audio.io import run_ffmpeg

    root = tmp_path_factory.mktemp("videos")
    for k, (cid, tone) in enumerate(GOOD.items()):
        (root / cid).parent.mkdir(parents=True, exist_ok=True)
        _clip(root / f"{cid}.mp4", k, tone)
    _clip(root / "silent.mp4", 9, None)
    (root / "dog" / "broken.mp4").write_bytes(os.urandom(3000))
    proc = run_ffmpeg(["-y", "-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac",
                       "-f", "mp4", str(root / "cat" / "voice.mp4")])
    assert proc.returncode == 0
    return root


def test_folder_to_shards_with_failing_clips(src, tmp_path):
    out = tmp_path / "out"
    m = prepare.prepare_folder(src, out, CFG, **QUIET)
    assert m["clips"] == 5 and m["failures"] == 2 and m["no_audio"] == 1 and m["classes"] == ["cat", "dog"]
    reasons = {f["source"]: f["reason"] for f in shards.read_failures(out)}
    assert set(reasons) == {"dog/broken.mp4", "cat/voice.mp4"}
    assert "no video stream" in reasons["cat/voice.mp4"] and "cannot read" in reasons["dog/broken.mp4"]
    clips = {c["id"]: c for c in shards.iter_clips(out, fields=("id", "label", "mel", "feats", "wav", "has_audio"))}
    assert sorted(clips) == sorted([*GOOD, "silent"])
    assert clips["silent"]["label"] == -1 and not clips["silent"]["has_audio"] and not clips["silent"]["mel"].any()
    assert [clips[c]["label"] for c in GOOD] == [0, 0, 1, 1]
    import librosa

    centres = librosa.mel_frequencies(SPEC.n_mels + 2, fmin=SPEC.fmin, fmax=SPEC.fmax)[1:-1]
    for cid, tone in GOOD.items():
        c = clips[cid]
        assert c["mel"].shape == (80, 860) and c["wav"].shape == (SPEC.num_samples,)
        # the stored mel is the spectrogram of the stored (16-bit) wav, not of the float decode
        np.testing.assert_allclose(c["mel"], clip_mel(c["wav"]).numpy(), atol=1e-5, rtol=0)
        loudest = int(np.argmax(c["mel"][:, 200:600].mean(axis=1)))  # the tone's bin, audio looped to 10 s
        assert abs(centres[loudest] - tone) < 0.1 * tone, (cid, centres[loudest])
        f = c["feats"]["efficientnet_lite0"]
        assert f.shape == (215, 1280) and np.abs(f).sum() > 0
        np.testing.assert_array_equal(f[43:86], f[:43])  # 2 s = 43 frames, looped
    assert not (out / prepare.WORK).exists()  # pieces are cleaned up


def test_resume_after_interrupt_recomputes_nothing_twice(src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = prepare.compute_clip
    calls: list[str] = []

    def crashing(clip, *args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C / a killed job in the middle of the 4th clip
        calls.append(clip.id)
        return real(clip, *args, **kwargs)

    monkeypatch.setattr(prepare, "compute_clip", crashing)
    with pytest.raises(Interrupted, match=r"^3 finished clip\(s\) kept in .*; re-run the same command to resume$"):
        prepare.prepare_folder(src, out, CFG, **QUIET)
    assert not shards.shard_files(out)
    pieces = list((out / prepare.WORK).rglob("*.npz")) + list((out / prepare.WORK).rglob("*.fail.json"))
    assert len(pieces) == 3 and not list(out.rglob("*.tmp"))

    calls.clear()
    monkeypatch.setattr(prepare, "compute_clip", lambda clip, *a, **k: calls.append(clip.id) or real(clip, *a, **k))
    monkeypatch.setattr(shard_writer.ShardWriter, "close", lambda self: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):  # crash while assembling the shard
        prepare.prepare_folder(src, out, CFG, **QUIET)
    assert len(calls) == 7 - 3 and not shards.shard_files(out) and not list(out.glob(".*.tmp"))

    monkeypatch.undo()
    calls.clear()
    monkeypatch.setattr(prepare, "compute_clip", lambda clip, *a, **k: calls.append(clip.id) or real(clip, *a, **k))
    m = prepare.prepare_folder(src, out, CFG, **QUIET)
    assert calls == [] and m["clips"] == 5 and m["failures"] == 2
    ids = [c["id"] for c in shards.iter_clips(out, fields=("id",))]
    assert sorted(ids) == sorted([*GOOD, "silent"])  # no duplicates
    ds = ShardDataset(out, "train", fields=("mel", "feats", "id"), require_audio=False)
    assert all(ds[k]["feats"].shape == (215, 1280) for k in range(len(ds)))
    m2 = prepare.prepare_folder(src, out, CFG, **QUIET)  # finished: nothing to do
    assert calls == [] and m2["clips"] == 5


def test_shard_index_splits_the_work_across_machines(src, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(VgsError, match="--num-shards"):
        prepare.prepare_folder(src, out, CFG, shard_index=0, **QUIET)
    seen = []
    for i in (2, 0, 1):
        m = prepare.prepare_folder(src, out, CFG, shard_index=i, num_shards=3, **QUIET)
        with h5py.File(out / shards.shard_name(i, 3), "r") as f:
            ids = [s.decode() for s in f["id"][()]] + [json.loads(s)["id"] for s in f["failures"][()]]
        assert all(shards.shard_of(x, 3) == i for x in ids)
        seen += ids
    assert m["missing_shards"] == [] and m["clips"] == 5
    assert sorted(seen) == sorted([*GOOD, "silent", "dog/broken", "cat/voice"])  # each clip exactly once
    with pytest.raises(DataError, match="3-shard"):
        prepare.prepare_folder(src, out, CFG, num_shards=2, **QUIET)
    with pytest.raises(DataError, match=r"other extractor settings \(\S+ image_size: \d+ there, 48 here"):
        prepare.prepare_folder(src, out, CFG.replace(image_size=48), **QUIET)


def test_parallel_workers_report_failures_like_one_process(src, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    for name in ("dog/broken.mp4", "cat/voice.mp4"):  # fail fast: the workers need no feature network
        (bad / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / name, bad / name)
    with pytest.raises(DataError, match="none of the 2 videos could be used"):  # a job of failures fails
        prepare.prepare_folder(bad, tmp_path / "out", CFG, jobs=2, **QUIET)
    m = shards.read_manifest(tmp_path / "out")
    assert m["clips"] == 0 and m["failures"] == 2 and m["shards"][0]["clips"] == 0
    reasons = {f["id"]: f["reason"] for f in shards.read_failures(tmp_path / "out")}
    assert "no video stream" in reasons["cat/voice"] and "cannot read" in reasons["dog/broken"]


def test_labels_csv_names_ints_and_splits(tmp_path):
    for name in ("x1.mp4", "sub/x2.mkv", "x3.mp4", "x4.webm"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_text("path,label,split\nx1.mp4,2,train\nsub/x2.mkv,0,val\nx3.mp4,,\nx4.webm,-1,test\n")
    clips, classes = prepare.discover_clips(tmp_path, tmp_path / "labels.csv")
    assert classes == ["0", "1", "2"]
    assert [(c.id, c.label, c.split) for c in clips][:2] == [("x1", 2, "train"), ("sub/x2", 0, "valid")]
    assert clips[2].label == -1 and clips[2].split == shards.hash_split("x3")
    assert (clips[3].label, clips[3].split) == (-1, "test")
    clips, classes = prepare.discover_clips(tmp_path)  # no CSV: parent folder names, all videos
    assert [c.id for c in clips] == ["sub/x2", "x1", "x3", "x4"] and classes == ["sub"]
    (tmp_path / "bad.csv").write_text("file,label\nx1.mp4,a\n")
    with pytest.raises(DataError, match="'path' column"):
        prepare.discover_clips(tmp_path, tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("path,split\nx1.mp4,holdout\n")
    with pytest.raises(DataError, match="holdout"):
        prepare.discover_clips(tmp_path, tmp_path / "bad2.csv")


def _vgs(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "vgs_cli", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_cli_prepare_synthetic_end_to_end(tmp_path):
    proc = _vgs("prepare", "synthetic", "-o", "data", "--clips", "6", "--duration", "2", "--size", "32",
                "--image-size", "32", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "6 clips" in proc.stdout and "efficientnet_lite0" in proc.stdout
    with h5py.File(tmp_path / "data" / "shard_0-of-1.h5", "r") as f:
        assert f["mel"].shape == (6, 80, 860) and f["mel"].dtype == np.float32
        assert f["wav"].shape == (6, SPEC.num_samples) and f["wav"].dtype == np.int16
        assert f["feats/efficientnet_lite0"].shape == (6, 215, 1280)
        assert 0.0 <= f["mel"][()].min() and f["mel"][()].max() <= 1.0 and f["mel"][()].std() > 0.01
        stored_wav_mel = clip_mel(shards.decode_wav(f["wav"][()])).numpy()  # synthetic: mel == mel(stored wav)
        np.testing.assert_allclose(f["mel"][()], stored_wav_mel, atol=1e-5, rtol=0)
        assert sorted(f["label"][()].tolist()) == [0, 1, 2, 3, 4, 5]
        settings = json.loads(f.attrs["extractors"])["efficientnet_lite0"]
        assert settings["image_size"] == 32 and not settings["random_weights"]
        assert json.loads(f.attrs["spec"]) == SPEC.to_dict()
        assert "prepare synthetic" in f.attrs["command"]
    assert (tmp_path / "data" / "source" / "labels.csv").is_file()
    info = _vgs("info", "data", cwd=tmp_path)
    assert info.returncode == 0 and "chirp" in info.stdout and "1280" in info.stdout
    bad = _vgs("prepare", "folder", "missing_dir", "-o", "x", "--preset", "tiny", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no such folder") and "Traceback" not in bad.stderr
    bad = _vgs("prepare", "synthetic", "-o", "data", "--clips", "7", "--duration", "2", cwd=tmp_path)
    assert bad.returncode == 2 and "synthetic clips made with" in bad.stderr


@pytest.mark.reference
def test_real_vas_shard_mels_are_the_spectrograms_of_their_stored_wavs(reference_dir, tmp_path):
    """The ten real VAS clips (6.01 s and 8 s ones looped): each shard mel equals the spectrogram of the
    shard's own 16-bit wav; the mel of the float decode (what was stored before) is measurably not it."""
    from vgs_cli.audio.io import load_audio
    from vgs_cli.data.video import fit_clip

    videos = sorted((reference_dir / "vas" / "videos").glob("*/*.mp4"))
    clips = [prepare.SourceClip(id=f"{p.parent.name}/{p.stem}", path=str(p), source=p.name, label=-1, split="train")
             for p in videos]
    shard_writer.write_clips(tmp_path / "out", (prepare.compute_clip(c, {}, "loop") for c in clips))
    stored = {c["id"]: c for c in shards.iter_clips(tmp_path / "out", fields=("id", "mel", "wav"))}
    assert len(stored) == len(videos) == 10
    ids = sorted(stored)
    mels = np.stack([stored[i]["mel"] for i in ids])
    np.testing.assert_allclose(mels, clip_mel(np.stack([stored[i]["wav"] for i in ids])).numpy(), atol=1e-5, rtol=0)
    floats = np.stack([fit_clip(None, load_audio(c.path, duration_s=SPEC.duration_s))[1] for c in clips])
    assert np.abs(clip_mel(floats).numpy() - mels).max() > 1e-3  # the old mel (float decode) was off


def test_info_summarises_run_folders_checkpoints_and_shards(tmp_path, capsys):
    import torch

    from vgs_cli.checkpoint import save_checkpoint
    from vgs_cli.cli.info import info

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"stage": "vocoder", "config": {"train": {"lr": 0.0001}}}))
    (run / "metrics.jsonl").write_text('{"step": 10, "split": "train", "loss": 2.5}\n'
                                       '{"step": 20, "split": "valid", "mel_l1": 0.125}\n'
                                       '{"step": 30, "split": "train", "loss": 1.75}\n{"step": 4')  # cut by a crash
    save_checkpoint(run / "checkpoints" / "last.ckpt", stage="vocoder", config={}, state_dict={"w": torch.ones(3, 4)},
                    extra={"step": 30})
    info(run)
    out = capsys.readouterr().out
    assert "vocoder" in out and "step 30" in out and "1.75" in out and "step 20" in out and "0.125" in out
    assert "last.ckpt" in out and "config.train.lr" in out
    info(run / "checkpoints" / "last.ckpt")
    out = capsys.readouterr().out
    assert "parameters" in out and "12" in out and "extra.step" in out
    with pytest.raises(VgsError, match="not a shard folder"):
        info(tmp_path)
    with pytest.raises(VgsError, match="no such"):
        info(tmp_path / "nope")
