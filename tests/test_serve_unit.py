"""`vgs serve` without a server: the core install never imports gradio, a missing extra is one line, and the
service's own checks (upload size, length, not a video, settings) and clean-up. Fast: no models loaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
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
        make_video(source / "videos" / f"{name}.mp4", 0.2)
    (source / "labels.csv").write_text("path,label,split\nvideos/a.mp4,x,train\nvideos/b.mp4,x,test\n"
                                       "videos/c.mp4,y,test\nvideos/gone.mp4,y,test\n")
    # from the folder itself or from a checkpoint inside it: the test split's existing videos
    assert find_examples(None, [demo]) == [source / "videos/b.mp4", source / "videos/c.mp4"]
    assert find_examples(None, [found["transformer"]]) == [source / "videos/b.mp4", source / "videos/c.mp4"]
    assert find_examples(None, [tmp_path / "elsewhere"]) == []
    assert [p.name for p in find_examples([source / "videos"], [demo])] == ["a.mp4", "b.mp4", "c.mp4"]


def test_labels_csv_rows_stay_in_their_folder_and_are_videos(tmp_path):
    """Rows escaping the folder (`..`, absolute, a symlink out) or naming a non-video are never examples."""
    from vgs_cli.serve.examples import find_examples

    outside = tmp_path / "outside"
    outside.mkdir()
    make_video(outside / "secret.mp4", 0.2)
    (outside / "secret").write_text("password\n")
    source = tmp_path / "demo" / "data" / "source"
    (source / "videos").mkdir(parents=True)
    make_video(source / "videos" / "ok.mp4", 0.2)
    (source / "videos" / "notes.mp4").write_text("not a video\n")
    (source / "videos" / "private.txt").write_text("private\n")
    (source / "videos" / "link.mp4").symlink_to(outside / "secret.mp4")
    rows = ["../../../outside/secret", "../../../outside/secret.mp4", str(outside / "secret.mp4"), "videos/link.mp4",
            "videos/notes.mp4", "videos/private.txt", "videos/ok.mp4"]
    (source / "labels.csv").write_text("path,label,split\n" + "".join(f"{r},x,test\n" for r in rows))
    assert find_examples(None, [tmp_path / "demo"]) == [source / "videos" / "ok.mp4"]


def test_examples_takes_videos_never_a_folders_other_files(tmp_path):
    from vgs_cli.serve.examples import find_examples, publish_examples

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa.mp4").write_text("key\n")
    (home / "notes_private.txt").write_text("private\n")
    (home / "fake.mp4").write_text("a text file named mp4\n")
    clip = make_video(home / "clip.mp4", 0.2)
    assert find_examples([home], []) == [clip]  # not the dot folder, not the text file named .mp4
    with pytest.raises(VgsError, match="notes_private.txt is not a video that ffmpeg can read; --examples takes"):
        find_examples([home / "notes_private.txt"], [])
    with pytest.raises(VgsError, match="--examples .*nothing: no such file or folder"):
        find_examples([tmp_path / "nothing"], [])
    with pytest.raises(VgsError, match="no videos in this folder"):
        find_examples([home / ".ssh"], [])
    # published: a link or copy in the server's own folder (emptied first), same bytes, the original untouched
    dest = tmp_path / "out" / "examples"
    dest.mkdir(parents=True)
    (dest / "stale.mp4").write_text("from an earlier start\n")
    published = publish_examples([clip, clip], dest)
    assert published == [dest / "clip.mp4", dest / "2-clip.mp4"] and sorted(dest.iterdir()) == sorted(published)
    assert all(p.read_bytes() == clip.read_bytes() for p in published) and clip.is_file()


def test_out_dir_claims_only_what_the_server_makes(tmp_path):
    from vgs_cli.serve.outdir import claim

    out = tmp_path / "mine"
    (out / "tmp").mkdir(parents=True)
    (out / "tmp" / "draft.txt").write_text("the user's\n")
    (out / "cache").mkdir()  # empty: taken
    claimed = claim(out)
    assert claimed.owned == {"requests", "uploads", "examples", "cache"}  # not the user's tmp/
    assert claimed.cleanable() == [out.resolve() / "requests", out.resolve() / "uploads"]
    assert claim(out).owned == claimed.owned  # the record keeps them the server's on the next start
    (tmp_path / "other" / "uploads").mkdir(parents=True)
    (tmp_path / "other" / "uploads" / "private.txt").write_text("x\n")
    with pytest.raises(VgsError, match="uploads/ holds files vgs serve did not write"):
        claim(tmp_path / "other")


def test_cleanup_never_deletes_what_a_request_uses(tmp_path):
    svc = _service(tmp_path, keep_minutes=1)
    stale = time.time() - 5 * 60
    uploads = tmp_path / "uploads"
    entries = {}
    for name in ("running", "queued", "example", "old"):
        (uploads / name).mkdir(parents=True)
        entries[name] = uploads / name / "clip.mp4"
        entries[name].write_bytes(b"x")
        os.utime(entries[name], (stale, stale))
    with svc.using(entries["running"]):
        assert svc.busy
        assert svc.cleanup([uploads], keep={entries["queued"], entries["example"]}) == 1
    assert not svc.busy and not (uploads / "old").exists()
    assert all(entries[name].is_file() for name in ("running", "queued", "example"))
    assert svc.cleanup([uploads]) == 3  # nothing in use any more: old, so deleted


def test_a_bad_host_or_a_taken_port_is_one_line_before_any_model_loads(tmp_path, vgs):
    # the model folder does not exist: had the models been looked for first, the line would be about them
    args = ["--model", str(tmp_path / "no_models"), "--out", str(tmp_path / "out")]
    proc = vgs("serve", "--host", "999.1.1.1", *args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: --host 999.1.1.1 is not an address or a name that resolves (Name or "
                                        "service not known); use 127.0.0.1 (this machine only) or 0.0.0.0 (every "
                                        "network)"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = vgs("serve", "--port", str(port), *args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: port {port} on 127.0.0.1 is already in use (another vgs serve?); "
                                        "pick another --port or stop the program using it"]
    assert not (tmp_path / "out").exists()  # checked before anything was written


def test_serve_help_says_what_the_server_exposes(vgs):
    proc = vgs("serve", "--help")
    text = " ".join(proc.stdout.replace("│", " ").split())  # the options' help is drawn in a box
    assert proc.returncode == 0
    assert "only files under --out, namely the uploads, the results (--out/requests) and copies of the example " \
           "videos (--out/examples)" in text
    assert "only files ffmpeg reads as videos are taken" in text


def test_compare_makes_one_video_of_a_requests_samples_and_only_of_its_own_requests(tmp_path):
    """The page's "compare" button (issue 27): `vgs generate --compare` for a finished multi-sample request."""
    from vgs_cli.audio.io import probe, write_wav

    svc = _service(tmp_path)
    folder = svc.requests_dir / "20261207-000000-abcdef01"
    folder.mkdir(parents=True)
    make_video(folder / "video_1.mp4", 1.0)
    for k in (1, 2):
        write_wav(folder / f"sound_{k}.wav", np.full(22050, 0.1 * k, np.float32), 22050)
    out = svc.compare(folder, seed=7)
    info = probe(out)
    assert out == folder.resolve() / "compare.mp4" and info.has_audio and info.has_video
    assert info.duration_s == pytest.approx(2.0, abs=0.15)  # the clip once per sample
    with pytest.raises(VgsError, match="own request folders"):
        svc.compare(tmp_path, seed=0)
    (folder / "sound_2.wav").unlink()
    with pytest.raises(VgsError, match="nothing to compare"):
        svc.compare(folder, seed=0)
