"""Issue 18, fast part: every failure is one stderr line saying what happened and what to do, with the exit
code of its kind (2 bad arguments or input, 1 faults of the machine, 130 interrupted). The commands run
in-process through `vgs_cli.cli.app.main` (the real entry point: argv in, exit code and stderr out).

The slow part (Ctrl-C sent to real subprocesses, full / read-only / unwritable disks in a user+mount
namespace) is in test_failures_slow.py.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli import run_vgs
from _eval_data import write_class_shards
from test_generate import build_models, make_video

from vgs_cli.audio.io import read_wav, run_ffmpeg, write_wav
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import OutputError, OutputInTheWay
from vgs_cli.fsutil import atomic_path, output_error, write_json


def vgs(monkeypatch, capsys, *args: str) -> tuple[int, list[str]]:
    """Run `vgs ARGS` in-process: (exit code, stderr lines)."""
    capsys.readouterr()
    code = run_vgs(monkeypatch, *map(str, args))
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def one_line(lines: list[str], *needles: str) -> str:
    """The last stderr line is the error, and it holds every needle; no traceback anywhere."""
    assert lines, "nothing on stderr"
    assert not any("Traceback" in line for line in lines), lines
    assert all(n in lines[-1] for n in needles), (lines[-1], needles)
    return lines[-1]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def class_shards(tmp_path_factory) -> Path:
    """Audio-only shards: 2 classes x (2 train, 1 valid) clips (written directly: no video decoding)."""
    return write_class_shards(tmp_path_factory.mktemp("shards"), {"train": 2, "valid": 1}, n_classes=2,
                              num_shards=1)


# ------------------------------------------------------------------------------------ option values

@pytest.mark.parametrize("args, option", [
    (["train", "codebook", "--steps", "0"], "--steps"),
    (["train", "codebook", "--steps", "-5"], "--steps"),
    (["train", "vocoder", "-b", "0"], "--batch-size"),
    (["generate", "v.mp4", "-o", "o.wav", "--top-k", "0"], "--top-k"),
    (["generate", "v.mp4", "-o", "o.wav", "--samples", "0"], "--samples"),
    (["prepare", "folder", "src", "-o", "out", "-j", "0"], "--jobs"),
    (["eval", "--real", "r", "--fake", "f", "--classifier", "c", "-b", "0"], "--batch-size"),
])
def test_invalid_option_values_are_refused_by_the_cli(monkeypatch, capsys, tmp_path, args, option):
    if args[0] == "train":
        args = [*args, "--data", str(tmp_path), "-o", str(tmp_path / "run")]
    code, err = vgs(monkeypatch, capsys, *args)
    assert code == 2
    one_line(err, "error: Invalid value for", option)
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_without_cuda_lists_the_devices(monkeypatch, capsys, tmp_path):
    code, err = vgs(monkeypatch, capsys, "train", "codebook", "--data", tmp_path, "-o", tmp_path / "r",
                    "--device", "cuda")
    assert code == 2
    one_line(err, "--device", "no usable CUDA GPU", "it has: cpu")


# ------------------------------------------------------------------------------------ output errors

@pytest.mark.parametrize("code, kind, words", [
    (errno.ENOSPC, OutputError, "no space left on the device holding"),
    (errno.EDQUOT, OutputError, "no space left on the device holding"),
    (errno.EROFS, OutputError, "is on a read-only file system"),
    (errno.EACCES, OutputError, "is not writable (permission denied"),
    (errno.EPERM, OutputError, "is not writable (permission denied"),
])
def test_output_error_maps_errno_to_one_line_about_the_users_path(tmp_path, code, kind, words):
    """The errno mapping itself (permission denied cannot be provoked by chmod when the tests run as root;
    test_failures_slow covers it through a user namespace where that works)."""
    target = tmp_path / "out" / "clip.wav"
    err = output_error(OSError(code, os.strerror(code), str(tmp_path / ".clip.wav.x1y2.tmp")), target)
    assert type(err) is kind and err.exit_code == 1
    assert str(err).startswith(f"cannot write {target}: ") and words in str(err) and ".tmp" not in str(err)


def test_output_error_reads_libraries_texts_and_leaves_other_errors_alone(tmp_path):
    h5 = OSError("Unable to create file (file write failed: errno = 28, error message = 'No space left on device')")
    assert "no space left" in str(output_error(h5, tmp_path / "a.h5"))
    assert output_error(ValueError("bad value"), tmp_path / "a.h5") is None
    assert output_error(OSError(errno.ENOENT, "No such file"), tmp_path / "a.h5") is None


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(OutputInTheWay, match=r"plain is a file, not a folder") as info:
        write_json(tmp_path / "plain" / "sub" / "a.json", {})
    assert info.value.exit_code == 2
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(OutputInTheWay, match=r"dir.wav: it is a folder, not a file"):
        write_wav(tmp_path / "dir.wav", np.zeros(10, np.float32))
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file is gone either way


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert path.read_text().strip().endswith("}") and '"v": 1' in path.read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_outputs_with_a_file_in_the_way(monkeypatch, capsys, tmp_path, models):
    plain = tmp_path / "plainfile"
    plain.write_text("x")
    video = make_video(tmp_path / "v.mp4", 1.0)
    code, err = vgs(monkeypatch, capsys, "generate", video, "-o", plain / "out.wav", "--model", models)
    assert code == 2
    one_line(err, f"cannot write {plain / 'out.wav'}: {plain} is a file, not a folder")
    code, err = vgs(monkeypatch, capsys, "prepare", "folder", tmp_path, "-o", plain, "--preset", "tiny")
    assert code == 2
    one_line(err, f"--out {plain} is a file, not a folder")


# ------------------------------------------------------------------------------------ generate

def test_class_options_are_checked(monkeypatch, capsys, tmp_path, models):
    video = make_video(tmp_path / "v.mp4", 1.0)
    code, err = vgs(monkeypatch, capsys, "generate", video, "-o", tmp_path / "o.wav", "--model", models,
                    "--class", "dog")
    assert code == 2
    one_line(err, "--class dog: this transformer is conditioned on 'feats'", "drop --class")
    class_models = build_models(tmp_path / "class_models", condition="class")
    code, err = vgs(monkeypatch, capsys, "generate", video, "-o", tmp_path / "o.wav", "--model", class_models,
                    "--class", "zebra")
    assert code == 2
    one_line(err, "unknown class 'zebra' (the transformer knows a, b, c)")
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("seconds", [0.5, 3.0, pytest.param(10.3, marks=pytest.mark.slow)])
def test_sound_is_as_long_as_an_h264_video_with_b_frames(models, tmp_path, seconds):
    """The remux's last timestamp is short by a few frames when B-frames reorder packets (these videos read
    as 0.40, 2.92 and 10.24 s before); the length is the frame count / rate. Exact to the sample."""
    from vgs_cli.generate.batch import generate_video
    from vgs_cli.generate.engine import GenerateOptions, load_bundle, resolve_models

    plain = make_video(tmp_path / "plain.mp4", seconds, fps=25.0)
    video = tmp_path / "bframes.mp4"
    run_ffmpeg(["-i", str(plain), "-c:v", "libx264", "-bf", "3", "-pix_fmt", "yuv420p", str(video)])
    n_frames = int(round(seconds * 25.0))
    bundle = load_bundle(resolve_models(models), vocoder="griffinlim", device="cpu", gl_iters=2)
    (out,) = generate_video(bundle, video, tmp_path / "out.wav", GenerateOptions(seed=0), log=lambda s: None)
    wav, sr = read_wav(out, None)
    assert sr == SPEC.sample_rate and len(wav) == round(n_frames / 25.0 * SPEC.sample_rate)


# ------------------------------------------------------------------------------------ eval

def test_eval_names_a_wrong_split_and_lists_the_ones_there(monkeypatch, capsys, tmp_path, class_shards):
    code, err = vgs(monkeypatch, capsys, "eval", "--real", f"{class_shards}:training", "--fake", tmp_path,
                    "--classifier", tmp_path / "none.ckpt")
    assert code == 2
    one_line(err, f"{class_shards} has no split 'training'", "train (4 clips), valid (2 clips)")


def test_eval_refuses_fakes_shorter_than_the_real_clips(monkeypatch, capsys, tmp_path, class_shards):
    fake = tmp_path / "fake"
    write_wav(fake / "tone_valid_0_sample_0.wav", np.zeros(22050, np.float32), sr=44100)  # 0.5 s at 44.1 kHz
    code, err = vgs(monkeypatch, capsys, "eval", "--real", f"{class_shards}:valid", "--fake", fake,
                    "--classifier", tmp_path / "none.ckpt")
    assert code == 2
    one_line(err, "0.50 s of sound, but the real clips are 10 s")


# ------------------------------------------------------------------------------------ prepare

def test_prepare_where_every_video_fails_exits_nonzero(monkeypatch, capsys, tmp_path):
    src = tmp_path / "src" / "dog"
    src.mkdir(parents=True)
    for name in ("a.mp4", "b.mp4"):
        (src / name).write_bytes(os.urandom(2000))
    out = tmp_path / "ds"
    code, err = vgs(monkeypatch, capsys, "prepare", "folder", src.parent, "-o", out, "--preset", "tiny", "-q")
    assert code == 2
    one_line(err, "none of the 2 videos could be used", str(out / "failures.jsonl"))
    assert len((out / "failures.jsonl").read_text().splitlines()) == 2


def test_prepare_into_a_folder_of_another_image_size_says_so(monkeypatch, capsys, tmp_path):
    from vgs_cli.data.shard_writer import write_clips
    from vgs_cli.loading.extractors import extractor_settings

    src = tmp_path / "src" / "dog"
    src.mkdir(parents=True)
    (src / "a.mp4").write_bytes(os.urandom(2000))
    out = tmp_path / "ds"
    settings, _ = extractor_settings("efficientnet_lite0", image_size=64)
    write_clips(out, [("dog/a", "unreadable", "dog/a.mp4")], classes=["dog"],
                extractors={"efficientnet_lite0": settings}, settings={"mode": "loop", "source": "video"})
    code, err = vgs(monkeypatch, capsys, "prepare", "folder", src.parent, "-o", out, "--preset", "tiny",
                    "--image-size", "96", "-q")
    assert code == 2
    one_line(err, "efficientnet_lite0 image_size: 64 there, 96 here")


# ------------------------------------------------------------------------------------ train

def test_a_run_without_a_checkpoint_takes_new_settings(monkeypatch, capsys, tmp_path, class_shards):
    """`-b 64` on 4 training clips fails before step 1; the same folder then accepts `-b 2`. A temp file left
    by a killed checkpoint write is removed by the run."""
    run = tmp_path / "run"
    base = ["train", "vggishish", "--data", class_shards, "-o", run, "--steps", "1"]
    code, err = vgs(monkeypatch, capsys, *base, "-b", "64")
    assert code == 2
    one_line(err, "lower --batch-size")
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    stale = run / "checkpoints" / ".best.ckpt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    code, err = vgs(monkeypatch, capsys, *base, "-b", "2")
    assert code == 0, err
    assert (run / "checkpoints" / "last.ckpt").is_file() and not stale.exists()
    import json

    assert json.loads((run / "config.json").read_text())["config"]["train"]["batch_size"] == 2


def test_ctrl_c_in_any_command_exits_130(monkeypatch, capsys, tmp_path):
    """typer turns a KeyboardInterrupt into Exit(130) and, with standalone_mode=False, returns it: main() used
    to drop that code and exit 0. (train, prepare and generate save first: test_failures_slow.py.)"""
    import vgs_cli.metrics.evaluate as ev

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ev, "evaluate", interrupted)
    code, err = vgs(monkeypatch, capsys, "eval", "--real", tmp_path, "--fake", tmp_path, "--classifier", "c.ckpt")
    assert code == 130 and err[-1] == "interrupted"
