"""`vgs generate`: length = video length, seeds, samples, mux, batch mode + resume, and each error path.

Models are tiny and built with fixed seeds (untrained: these tests are about the plumbing, not quality);
the visual extractor is the real EfficientNet-Lite0 at a small input size, as `prepare` would record it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vgs_cli.audio.io import load_audio, read_wav
from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.codebook import PRESETS as CB_PRESETS
from vgs_cli.config.spec import SPEC
from vgs_cli.config.transformer import PRESETS as T_PRESETS
from vgs_cli.config.vocoder import PRESETS as V_PRESETS
from vgs_cli.data.video import write_video
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.extractors import extractor_settings
from vgs_cli.models.gpt import GPT
from vgs_cli.models.melgan import Generator
from vgs_cli.models.vqgan import VQGAN

IMAGE_SIZE = 64


def _save(path: Path, stage: str, cfg, model: torch.nn.Module, extra: dict | None = None) -> Path:
    return save_checkpoint(path, stage=stage, config=cfg.to_dict(), state_dict=model.state_dict(), extra=extra or {})


def build_models(folder: Path, condition: str = "feats", seed: int = 0) -> Path:
    """codebook.ckpt, transformer.ckpt, vocoder.ckpt in `folder` (tiny, seeded, consistent with each other)."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cb_cfg = CB_PRESETS["tiny"]
    cb_path = _save(folder / "codebook.ckpt", "codebook", cb_cfg, VQGAN(cb_cfg.model))
    settings, _ = extractor_settings("efficientnet_lite0", image_size=IMAGE_SIZE)
    t_cfg = T_PRESETS["tiny"]
    t_cfg = t_cfg.replace(model=t_cfg.model.replace(condition=condition, vocab_size=cb_cfg.model.n_embed,
                                                    feat_dim=settings["dim"], feat_frames=5, num_classes=3))
    extra = {"condition": condition, "feat_frames": 5, "extractor": "efficientnet_lite0",
             "extractor_settings": settings, "classes": ["a", "b", "c"], "codebook_path": str(cb_path),
             "codebook_sha256": file_sha256(cb_path)}
    _save(folder / "transformer.ckpt", "transformer", t_cfg, GPT(t_cfg.model), extra)
    v_cfg = V_PRESETS["tiny"]
    _save(folder / "vocoder.ckpt", "vocoder", v_cfg, Generator(v_cfg.model))
    return folder


def make_video(path: Path, seconds: float, fps: float = 25.0, audio: bool = False) -> Path:
    n = int(round(seconds * fps))
    rng = np.random.default_rng(int(seconds * 10))
    frames = np.zeros((n, 80, 80, 3), np.uint8)
    frames[:, :, :, 0] = (np.arange(n) * 7 % 255)[:, None, None]
    frames[:, 20:60, 20:60, 1] = rng.integers(0, 255, (n, 1, 1), dtype=np.uint8)
    wav = (0.1 * np.sin(np.arange(int(seconds * SPEC.sample_rate)) * 0.05)).astype(np.float32) if audio else None
    write_video(path, frames, fps, wav=wav)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vgs_cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def bundle(models):
    from vgs_cli.generate.engine import load_bundle, resolve_models

    return load_bundle(resolve_models(models), vocoder="melgan", device="cpu")


@pytest.mark.parametrize("seconds", [3.0, 10.0, pytest.param(25.0, marks=pytest.mark.slow)])
def test_output_is_as_long_as_the_video(bundle, tmp_path, seconds):
    from vgs_cli.generate.batch import generate_video
    from vgs_cli.generate.engine import GenerateOptions

    video = make_video(tmp_path / "v.mp4", seconds, fps=30.0 if seconds == 25.0 else 25.0)
    (out,) = generate_video(bundle, video, tmp_path / "out.wav", GenerateOptions(seed=1), log=lambda s: None)
    wav, sr = read_wav(out)
    assert sr == SPEC.sample_rate
    assert abs(len(wav) - seconds * SPEC.sample_rate) <= SPEC.hop_length
    assert np.isfinite(wav).all() and np.abs(wav).max() > 0


def test_a_variable_frame_rate_video_gets_its_real_length(bundle, tmp_path):
    """Issue 25: a 3.00-s VFR clip got a 3.16-s wav (its length was frames / average fps)."""
    from test_media import make_vfr_video

    from vgs_cli.generate.batch import generate_video
    from vgs_cli.generate.engine import GenerateOptions

    video = make_vfr_video(tmp_path / "vfr")
    (out,) = generate_video(bundle, video, tmp_path / "out.wav", GenerateOptions(seed=1), log=lambda s: None)
    assert abs(len(read_wav(out)[0]) - 3.0 * SPEC.sample_rate) <= SPEC.hop_length


def test_seed_determinism_and_sample_diversity(bundle, tmp_path):
    from vgs_cli.generate.batch import generate_video
    from vgs_cli.generate.engine import GenerateOptions

    video = make_video(tmp_path / "v.mp4", 2.0)
    quiet = lambda s: None  # noqa: E731
    (a,) = generate_video(bundle, video, tmp_path / "a.wav", GenerateOptions(seed=7), log=quiet)
    (b,) = generate_video(bundle, video, tmp_path / "b.wav", GenerateOptions(seed=7), log=quiet)
    assert np.array_equal(read_wav(a)[0], read_wav(b)[0])
    three = generate_video(bundle, video, tmp_path / "s.wav", GenerateOptions(seed=7, samples=3), log=quiet)
    assert [p.name for p in three] == ["s_1.wav", "s_2.wav", "s_3.wav"]
    wavs = [read_wav(p)[0] for p in three]
    assert not np.array_equal(wavs[0], wavs[1]) and not np.array_equal(wavs[1], wavs[2])


@pytest.mark.slow  # > 10 s on 2 cores (the real command: a fresh interpreter)
def test_cli_mux_and_spectrogram(models, tmp_path):
    video = make_video(tmp_path / "in.mp4", 3.0, audio=True)
    out, mp4, png = tmp_path / "out.wav", tmp_path / "out.mp4", tmp_path / "out.png"
    proc = run_cli("generate", str(video), "-o", str(out), "--model", str(models), "--mux", str(mp4),
                   "--spectrogram", str(png), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    wav, _ = read_wav(out)
    track = load_audio(mp4)
    assert track is not None
    n = min(len(wav), len(track))
    # AAC is lossy: compare the waveforms by correlation (a different sound would be ~0)
    corr = np.corrcoef(wav[2048:n - 2048], track[2048:n - 2048])[0, 1]
    assert corr > 0.95, corr
    assert png.stat().st_size > 1000


@pytest.mark.slow  # > 10 s on 2 cores (two generation runs)
def test_batch_mode_on_a_folder_resumes(models, tmp_path, vgs):
    src = tmp_path / "videos"
    src.mkdir()
    for i, secs in enumerate([1.5, 2.0]):
        make_video(src / f"clip{i}.mp4", secs)
    out = tmp_path / "gen"
    proc = vgs("generate", str(src), "-o", str(out), "--model", str(models), "--samples", "2")
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in out.glob("*.wav"))
    assert files == ["clip0_sample_0.wav", "clip0_sample_1.wav", "clip1_sample_0.wav", "clip1_sample_1.wav"]
    mel = np.load(out / "clip0_sample_0.npy")
    assert mel.shape[0] == 80 and 0.0 <= mel.min() and mel.max() <= 1.0
    stamp = (out / "clip1_sample_1.wav").stat().st_mtime_ns
    (out / "clip0_sample_1.wav").unlink()  # as if interrupted
    proc = vgs("generate", str(src), "-o", str(out), "--model", str(models), "--samples", "2")
    assert proc.returncode == 0, proc.stderr
    assert "generated 1" in proc.stdout
    assert (out / "clip0_sample_1.wav").is_file()
    assert (out / "clip1_sample_1.wav").stat().st_mtime_ns == stamp  # finished clips were skipped


def _one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert needle in lines[0], lines[0]


def test_errors_are_one_line(models, tmp_path, vgs):
    """Each failure is one `error:` line (main()'s error path, run in this process; the real command runs in
    test_cli_mux_and_spectrogram)."""
    good = make_video(tmp_path / "ok.mp4", 1.0)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    _one_line_error(vgs("generate", str(bad), "-o", str(tmp_path / "o.wav"), "--model", str(models)),
                    "broken.mp4")
    audio_only = tmp_path / "audio.wav"
    import soundfile as sf

    sf.write(audio_only, np.zeros(22050, np.float32), 22050)
    _one_line_error(vgs("generate", str(audio_only), "-o", str(tmp_path / "o.wav"), "--model", str(models)),
                    "no video stream")
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("codebook.ckpt", "transformer.ckpt"):
        (partial / name).write_bytes((models / name).read_bytes())
    _one_line_error(vgs("generate", str(good), "-o", str(tmp_path / "o.wav"), "--model", str(partial)),
                    "missing a vocoder")
    other = build_models(tmp_path / "other", seed=1)
    _one_line_error(vgs("generate", str(good), "-o", str(tmp_path / "o.wav"), "--model", str(models),
                        "--codebook", str(other / "codebook.ckpt")), "not the codebook")


@pytest.mark.slow  # > 10 s on 2 cores each
@pytest.mark.parametrize("condition", ["feats", "none"])
def test_batch_mode_on_shards_writes_every_clip(tiny_shards, tmp_path, condition):
    """Every test clip gets all its samples (an unconditioned model has no condition tensor to size the batch
    by: this once wrote only the first clip of each batch), mels of the model's 848 frames."""
    from vgs_cli.data.dataset import ShardDataset
    from vgs_cli.generate.batch import generate_shards
    from vgs_cli.generate.engine import GenerateOptions, load_bundle, resolve_models

    models = build_models(tmp_path / "m", condition=condition)
    bundle = load_bundle(resolve_models(models, vocoder="griffinlim"), vocoder="griffinlim", device="cpu", gl_iters=2)
    out = tmp_path / "gen"
    summary = generate_shards(bundle, tiny_shards, out, GenerateOptions(samples=2), split="test", batch_size=4,
                              log=lambda s: None)
    ids = [ShardDataset(tiny_shards, "test", fields=("id",))[i]["id"] for i in range(summary["clips"])]
    assert summary == {"clips": len(ids), "generated": len(ids), "skipped": 0} and len(ids) > 4
    for cid in ids:
        for k in range(2):
            assert np.load(out / f"{cid}_sample_{k}.npy").shape == (80, 848)
            assert (out / f"{cid}_sample_{k}.wav").is_file()
