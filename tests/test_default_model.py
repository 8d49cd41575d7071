"""The default model (`vgs generate video.mp4 -o out.wav` with no model flag), `vgs models`, the model-folder
codebook rule (issue 27: the codebook the transformer recorded wins over a run folder's best.ckpt) and
`vgs doctor` in a clean cache and with a broken ffmpeg."""

from __future__ import annotations

import json
import shutil

import pytest
import soundfile as sf
import torch
from test_generate import build_models, make_video

from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.vocoder import PRESETS as V_PRESETS
from vgs_cli.fsutil import file_sha256
from vgs_cli.models.melgan import Generator


def test_generate_as_typed_needs_a_default_then_uses_it(tmp_path, clean_cache, monkeypatch, vgs):
    """The design card's form, exactly: `vgs generate video.mp4 -o out.wav`, before and after a default is set."""
    models = build_models(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "video.mp4", 1.0)
    before = vgs("generate", "video.mp4", "-o", "out.wav")
    assert before.returncode == 2 and "Traceback" not in before.stderr
    assert before.stderr.strip().count("\n") == 0  # one line
    assert "make demo" in before.stderr and "vgs download vas_c_212feats_resnet50 --default" in before.stderr
    assert not (tmp_path / "out.wav").exists()

    assert vgs("models", "default", str(models)).returncode == 0
    record = json.loads((clean_cache / "default_model.json").read_text())
    assert record["transformer"] == str((models / "transformer.ckpt").resolve())
    after = vgs("generate", "video.mp4", "-o", "out.wav")
    assert after.returncode == 0, after.stderr
    model_lines = [line for line in after.stdout.splitlines() if line.startswith("model: ")]
    assert len(model_lines) == 1 and str(models.resolve()) in model_lines[0] and "default model" in model_lines[0]
    note = json.loads(sf.SoundFile(tmp_path / "out.wav").comment)  # the provenance travels in the wav
    assert note["model"] == model_lines[0].removeprefix("model: ")
    assert note["transformer"] == record["transformer"] and note["seed"] == 0

    listing = vgs("models")
    assert listing.returncode == 0 and "transformer" in listing.stdout and "*" in listing.stdout

    other = build_models(tmp_path / "other", seed=1)
    monkeypatch.setenv("VGS_MODEL", str(other))  # the environment wins over the record
    env = vgs("generate", "video.mp4", "-o", "env.wav")
    assert env.returncode == 0 and f"model: {other} ($VGS_MODEL)" in env.stdout
    explicit = vgs("generate", "video.mp4", "-o", "explicit.wav", "--model", str(models))  # --model still wins
    assert explicit.returncode == 0 and f"model: --model {models}" in explicit.stdout

    (models / "vocoder.ckpt").unlink()  # the default's files gone: one line saying what to do
    monkeypatch.delenv("VGS_MODEL")
    gone = vgs("generate", "video.mp4", "-o", "gone.wav")
    assert gone.returncode == 2 and "no longer exists" in gone.stderr and "vgs models default" in gone.stderr


@pytest.mark.slow
def test_model_folder_takes_the_codebook_the_transformer_recorded(tiny_shards, tmp_path, clean_cache, vgs):
    """Issue 27's scenario: a codebook trained a few steps (best.ckpt != last.ckpt), a transformer trained with
    --codebook .../last.ckpt, a vocoder: `--model runs/m` uses last.ckpt; with it gone, the error names it."""
    from vgs_cli.loading.default_model import resolve

    data = tmp_path / "shards"  # the transformer's codes cache is written next to the data
    shutil.copytree(tiny_shards, data)
    m = tmp_path / "runs" / "m"
    cb = vgs("train", "codebook", "--data", str(data), "-o", str(m / "codebook"), "--preset", "tiny",
             "--steps", "2", "-b", "2", "--set", "train_frames=64", "--set", "train.eval_every=1", "--device", "cpu")
    assert cb.returncode == 0, cb.stderr[-1500:]
    best, last = m / "codebook" / "checkpoints" / "best.ckpt", m / "codebook" / "checkpoints" / "last.ckpt"
    assert file_sha256(best) != file_sha256(last)
    tr = vgs("train", "transformer", "--data", str(data), "-o", str(m / "transformer"), "--codebook", str(last),
             "--condition", "none", "--steps", "2", "-b", "2", "--set", "train.eval_every=2", "--device", "cpu")
    assert tr.returncode == 0, tr.stderr[-1500:]
    torch.manual_seed(0)
    v_cfg = V_PRESETS["tiny"]
    save_checkpoint(m / "vocoder.ckpt", stage="vocoder", config=v_cfg.to_dict(),
                    state_dict=Generator(v_cfg.model).state_dict(), extra={})

    paths = resolve(m)
    assert paths.codebook.resolve() == last.resolve() and paths.source == f"--model {m}"
    make_video(tmp_path / "clip.mp4", 1.0)
    ok = vgs("generate", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "clip.wav"), "--model", str(m))
    assert ok.returncode == 0, ok.stderr
    moved = tmp_path / "moved"  # a moved folder: found there by the recorded SHA-256
    shutil.copytree(m, moved)
    last.unlink()
    assert resolve(moved).codebook == moved / "codebook" / "checkpoints" / "last.ckpt"
    (moved / "codebook" / "checkpoints" / "last.ckpt").unlink()
    bad = vgs("generate", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "x.wav"), "--model", str(m))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert str(last.resolve()) in bad.stderr and "--codebook" in bad.stderr


def test_doctor_in_a_clean_environment(clean_cache, vgs):
    plain = vgs("doctor")
    assert plain.returncode == 0, plain.stderr
    for what in ("vgs ", "torch ", "CPU:", "threads:", "GPUs:", "ffmpeg:", "extras:", f"cache: {clean_cache}",
                 "default model: none", "chromium:"):
        assert what in plain.stdout, what
    report = json.loads(vgs("doctor", "--json").stdout)
    assert report["problems"] == [] and report["cache"]["path"] == str(clean_cache)
    assert report["ffmpeg"]["version"] and report["cpu"]["torch_capability"]
    assert {"AVX2", "AVX-512"} >= set(report["cpu"]["flags"]) & {"AVX2", "AVX-512"}
    assert "resnet50" in {w["name"] for w in report["cache"]["weights"]}
    assert "serve" in report["extras"] and report["default_model"]["uses"] is None
    assert not clean_cache.exists()  # doctor writes nothing


def test_doctor_with_a_broken_ffmpeg(clean_cache, monkeypatch, tmp_path, vgs):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no_ffmpeg_here"))
    proc = vgs("doctor")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("problem: ffmpeg:") and "no_ffmpeg_here" in lines[0]
