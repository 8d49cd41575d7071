"""The design card's commands as typed (issue 27), on tiny models:

- `vgs train codebook --data DIR` (--data only: run folder runs/codebook, preset tiny), which is also the run we
  watch: TensorBoard event files that TensorBoard's own reader reads back with the logged values, samples as
  images, `curves.png`, and `vgs info RUN` with last and best values;
- `vgs eval --metrics fid,mkl --real ... --fake ...` (the classifier: the default model's Melception);
- `vgs generate VIDEO --samples N --compare cmp.mp4` (moviepy: the clip N times, each with its own sound).
`vgs generate video.mp4 -o out.wav` is in test_default_model.py; `vgs prepare vas -o DIR --url URL` against a
local HTTP server in test_download.py (test_vas_archive_download_checksum_resume_and_prepare).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_eval_cli import classifier, shards  # noqa: F401 (module fixtures: private shards, tiny Melception)
from test_generate import build_models, make_video

from vgs_cli.data.shards import iter_clips


def test_train_codebook_with_data_only_is_watchable(tiny_shards, tmp_path, monkeypatch, vgs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vgs_cli.config.codebook import PRESETS

    # the form as typed; only the preset's budget is cut to 2 steps so the test stays tiny
    tiny = PRESETS["tiny"]
    monkeypatch.setitem(PRESETS, "tiny", tiny.replace(
        train_frames=64, num_plots=1, train=tiny.train.replace(steps=2, batch_size=2, eval_every=1, log_every=1)))
    data = tmp_path / "data"
    shutil.copytree(tiny_shards, data)
    monkeypatch.chdir(tmp_path)
    proc = vgs("train", "codebook", "--data", "data")
    assert proc.returncode == 0, proc.stderr[-1500:]
    run = tmp_path / "runs" / "codebook"
    assert "run folder: runs/codebook" in proc.stdout and (run / "checkpoints" / "last.ckpt").is_file()

    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [e for e in events if e["split"] == "valid"]
    train = [e for e in events if e["split"] == "train"]
    assert len(valid) == 2 and len(train) == 2
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for split, rows in (("valid", valid), ("train", train)):
        for key in ("l1", "rec_loss") if split == "valid" else ("loss",):
            if key not in rows[0]:
                continue
            logged = acc.Scalars(f"{split}/{key}")
            assert [s.step for s in logged] == [e["step"] for e in rows]
            assert [s.value for s in logged] == pytest.approx([e[key] for e in rows], rel=1e-6), (split, key)
    assert {f"train/{k}" for k in train[0] if k not in ("step", "split")} <= set(tags["scalars"])
    images = [t for t in tags["images"] if t.startswith("samples/reconstructions")]
    assert images and [i.step for i in acc.Images(images[0])] == [1, 2]

    png = (run / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    info = vgs("info", str(run))
    assert info.returncode == 0 and "valid metrics (last step 2)" in info.stdout
    best_l1 = min(e["l1"] for e in valid)
    assert "best at step" in info.stdout and f"{best_l1:.6g}" in info.stdout and "curves.png" in info.stdout


def test_eval_as_typed_uses_the_default_classifier(shards, classifier, tmp_path, clean_cache, monkeypatch,  # noqa: F811
                                                   vgs):
    fake = tmp_path / "fake"
    for c in iter_clips(shards, "test", fields=("id", "mel")):
        path = fake / f"{c['id']}_sample_0.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.clip(c["mel"] + 0.05, 0, 1).astype(np.float32))
    before = vgs("eval", "--metrics", "fid,mkl", "--real", f"{shards}:test", "--fake", str(fake))
    assert before.returncode == 2 and "Traceback" not in before.stderr and "classifier" in before.stderr
    models = build_models(tmp_path / "m")
    assert vgs("models", "default", str(models), "--classifier", str(classifier)).returncode == 0
    proc = vgs("eval", "--metrics", "fid,mkl", "--real", f"{shards}:test", "--fake", str(fake))
    assert proc.returncode == 0, proc.stderr
    assert f"classifier: {classifier.resolve()} (the default" in proc.stdout
    assert "FID" in proc.stdout and "MKL" in proc.stdout and "KID" not in proc.stdout


def test_generate_compare_plays_the_clip_once_per_sample(tmp_path, vgs):
    from vgs_cli.audio.io import load_audio, probe
    from vgs_cli.generate.engine import video_duration

    models = build_models(tmp_path / "m")
    video = make_video(tmp_path / "clip.mp4", 1.0)
    proc = vgs("generate", str(video), "-o", str(tmp_path / "out.wav"), "--model", str(models), "--samples", "3",
               "--seed", "7", "--compare", str(tmp_path / "cmp.mp4"))
    assert proc.returncode == 0, proc.stderr
    info = probe(tmp_path / "cmp.mp4")
    assert info.has_video and info.has_audio
    assert video_duration(tmp_path / "cmp.mp4") == pytest.approx(3 * video_duration(video), abs=0.05)
    audio = load_audio(tmp_path / "cmp.mp4")
    assert audio is not None and len(audio) == pytest.approx(3 * 22050, abs=2048)
    third = len(audio) // 3  # each third is its own sample's sound (the samples differ)
    assert np.abs(audio[:third - 1024] - audio[third:2 * third - 1024]).max() > 1e-3
    bad = vgs("generate", str(video), "-o", str(tmp_path / "o2.wav"), "--model", str(models),
              "--compare", str(tmp_path / "cmp.avi"))
    assert bad.returncode == 2 and "mp4" in bad.stderr and "Traceback" not in bad.stderr
