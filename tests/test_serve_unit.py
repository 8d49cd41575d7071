"""`vgs serve` without a server: the core install never imports gradio, a missing extra is one line, and the
service's own checks (upload size, length, not a video, settings) and clean-up. Fast: no models loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_generate import make_video

from vgs_cli.errors import VgsError
from vgs_cli.serve.service import Limits, Service, Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # > 10 s on 2 cores (fresh interpreters)
def test_the_cli_never_imports_gradio():
    code = "import sys, vgs_cli, vgs_cli.cli.app, vgs_cli.serve.service; print('gradio' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_serve_without_gradio_says_how_to_install_it(tmp_path):
    # sys.modules["gradio"] = None makes `import gradio` fail as on a core-only install
    code = ("import sys; sys.modules['gradio'] = None; sys.argv = ['vgs', 'serve', '--model', sys.argv[1], "
            "'--out', sys.argv[2]]; from vgs_cli.cli.app import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "out")], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ['error: vgs serve needs the [serve] extra: pip install -e ".[serve]" (gradio)']


def _service(tmp_path: Path, **limits) -> Service:
    """A Service around stand-ins: the checks and the clean-up never touch the models."""
    bundle = SimpleNamespace(vocoder=SimpleNamespace(name="melgan"), gpt=torch.nn.Linear(1, 1), extra={})
    bundle.gpt.cfg = SimpleNamespace(uses_class=False, uses_feats=True)
    return Service(bundle, tmp_path / "out", Limits(**limits))


def test_uploads_are_checked_before_any_work(tmp_path):
    svc = _service(tmp_path, max_seconds=2.0, max_upload_mb=0.05)
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n" * 20)
    with pytest.raises(VgsError, match="notes.mp4 is not a video file that ffmpeg can read"):
        svc.check_video(fake)
    long = make_video(tmp_path / "long.mp4", 3.0)
    with pytest.raises(VgsError, match=r"long.mp4 is 3 s long; this server takes videos up to 2 s \(--max-seconds\)"):
        svc.check_video(long)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(100_000))
    with pytest.raises(VgsError, match=r"big.mp4 is 0.1 MB; this server takes uploads up to 0.05 MB"):
        svc.check_video(big)
    assert svc.check_video(make_video(tmp_path / "ok.mp4", 1.0)) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(VgsError, match="samples must be 1-10"):
        svc.check_settings(Settings(samples=11))
    with pytest.raises(VgsError, match="unknown vocoder 'hifigan'"):
        svc.check_settings(Settings(vocoder="hifigan"))


def test_cleanup_deletes_only_what_is_older_than_keep_minutes(tmp_path):
    svc = _service(tmp_path, keep_minutes=10)
    old, new = svc.requests_dir / "old", svc.requests_dir / "new"
    for folder in (old, new):
        folder.mkdir()
        (folder / "sound.wav").write_bytes(b"x")
    stale = time.time() - 11 * 60
    os.utime(old / "sound.wav", (stale, stale))
    upload = tmp_path / "uploads" / "clip.mp4"
    upload.parent.mkdir()
    upload.write_bytes(b"x")
    os.utime(upload, (stale, stale))
    assert svc.cleanup([svc.requests_dir, upload.parent, tmp_path / "missing"]) == 2
    assert not old.exists() and not upload.exists() and (new / "sound.wav").is_file()


def test_a_demo_folder_gives_its_models_and_held_out_videos(tmp_path):
    from vgs_cli.serve.examples import demo_models, find_examples

    demo = tmp_path / "demo_out"
    assert demo_models(demo) is None
    for run in ("codebook", "transformer_feats", "transformer_none", "vocoder"):
        (demo / "runs" / run / "checkpoints").mkdir(parents=True)
        (demo / "runs" / run / "checkpoints" / "best.ckpt").write_bytes(b"")
    found = demo_models(demo)
    assert found == {"transformer": demo / "runs/transformer_feats/checkpoints/best.ckpt",
                     "codebook": demo / "runs/codebook/checkpoints/best.ckpt",
                     "vocoder_ckpt": demo / "runs/vocoder/checkpoints/best.ckpt"}
    source = demo / "data" / "source"
    (source / "videos").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (source / "videos" / f"{name}.mp4").write_bytes(b"")
    (source / "labels.csv").write_text("path,label,split\nvideos/a.mp4,x,train\nvideos/b.mp4,x,test\n"
                                       "videos/c.mp4,y,test\nvideos/gone.mp4,y,test\n")
    # from the folder itself or from a checkpoint inside it: the test split's existing videos
    assert find_examples(None, [demo]) == [source / "videos/b.mp4", source / "videos/c.mp4"]
    assert find_examples(None, [found["transformer"]]) == [source / "videos/b.mp4", source / "videos/c.mp4"]
    assert find_examples(None, [tmp_path / "elsewhere"]) == []
    assert [p.name for p in find_examples(source / "videos", [demo])] == ["a.mp4", "b.mp4", "c.mp4"]
