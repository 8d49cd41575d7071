"""`vgs codec`: encode/decode any length, the codes file + sidecar, bitrate, split reconstruction for eval."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from vgs_cli.audio import spec
from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.codebook import PRESETS
from vgs_cli.errors import DataError, VgsError
from vgs_cli.generate import codec
from vgs_cli.models.vqgan import VQGAN

SR = 22050
TINY = PRESETS["tiny"]


def _codebook(path, seed=0):
    torch.manual_seed(seed)
    model = VQGAN(TINY.model).eval()
    save_checkpoint(path, stage="codebook", config=TINY.to_dict(), state_dict=model.state_dict(), extra={})
    return path, model


def _chirp(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def _run_cli(args, capsys):
    """`vgs ...` in-process through the real entry point: (exit code, stdout, stderr)."""
    from vgs_cli.cli.app import main

    old = sys.argv
    sys.argv = ["vgs", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bitrate_formula():
    # 5 rows x 22050 / (256 x 16) columns per second; log2(128) = 7 bits (VAS), log2(1024) = 10 (VGGSound)
    assert codec.tokens_per_second(PRESETS["vas"].model) == pytest.approx(5 * 22050 / 4096)
    assert codec.bitrate(PRESETS["vas"].model) == pytest.approx(188.4, abs=0.05)
    assert codec.bitrate(PRESETS["vggsound"].model) == pytest.approx(269.2, abs=0.05)


@pytest.mark.parametrize("frames", [37, 848, 1000])
def test_encode_decode_any_length(tmp_path, frames):
    _, model = _codebook(tmp_path / "cb.ckpt")
    mel = spec.mel_spectrogram(torch.from_numpy(_chirp(3.0)))[:, :37] if frames == 37 else torch.rand(80, frames)
    codes, n = codec.encode_mel(model, mel)
    assert n == frames and codes.shape == (5, math.ceil(frames / 16))
    rec = codec.decode_codes(model, codes, frames=frames)
    assert rec.shape == (80, frames) and float(rec.min()) >= 0 and float(rec.max()) <= 1
    if frames <= 848:  # one window: the codec is exactly the model's forward pass on the padded input
        padded = torch.nn.functional.pad(mel, (0, codes.shape[1] * 16 - frames))
        with torch.no_grad():
            fwd = model(spec.to_model_range(padded)[None, None])
        assert torch.equal(codes, fwd[2]["indices"][0])
        torch.testing.assert_close(rec, spec.from_model_range(fwd[0][0, 0])[:, :frames])
    else:  # windows of 848 frames = 53 columns, coded independently
        first, _ = codec.encode_mel(model, mel[:, :848])
        assert torch.equal(codes[:, :53], first)


def test_cli_encode_decode_round_trip(tmp_path, capsys):
    ckpt, model = _codebook(tmp_path / "cb.ckpt")
    wav = _chirp(3.3, sr=16000)  # another rate: resampled to 22050 Hz
    sf.write(tmp_path / "in.wav", wav, 16000)
    code, out, err = _run_cli(["codec", "encode", tmp_path / "in.wav", "-o", tmp_path / "c.npy",
                               "--codebook", ckpt], capsys)
    assert code == 0, err
    n_samples = round(3.3 * 22050)
    frames = 1 + n_samples // 256
    codes = np.load(tmp_path / "c.npy")
    assert codes.dtype == np.int16 and codes.shape == (5, math.ceil(frames / 16))
    assert 0 <= codes.min() and codes.max() < 64
    meta = json.loads((tmp_path / "c.json").read_text())
    assert meta["num_samples"] == n_samples and meta["mel_frames"] == frames
    assert meta["codebook_sha256"] == codec.file_sha256(ckpt)
    assert "bitrate: 161.5 bit/s" in out  # 26.92 tokens/s x log2(64) = 6 bits

    code, out, err = _run_cli(["codec", "decode", tmp_path / "c.npy", "-o", tmp_path / "out.wav"], capsys)
    assert code == 0, err
    audio, sr = sf.read(tmp_path / "out.wav")
    assert sr == 22050 and audio.shape == (n_samples,) and np.isfinite(audio).all()
    assert "bitrate: 161.5 bit/s" in out


def test_decode_refuses_a_different_codebook_and_bad_codes(tmp_path, capsys):
    ckpt, model = _codebook(tmp_path / "cb.ckpt")
    other, _ = _codebook(tmp_path / "other.ckpt", seed=1)
    sf.write(tmp_path / "in.wav", _chirp(1.0), SR)
    codec.encode_wav_file(tmp_path / "in.wav", tmp_path / "c.npy", ckpt)
    with pytest.raises(VgsError, match="encoded with codebook"):
        codec.decode_codes_file(tmp_path / "c.npy", tmp_path / "o.wav", codebook=other)
    with pytest.raises(DataError, match="0..63"):
        codec.decode_codes(model, torch.full((5, 4), 64))
    with pytest.raises(DataError, match=r"\[5, C\]"):
        codec.decode_codes(model, torch.zeros(4, 4, dtype=torch.long))
    code, _, err = _run_cli(["codec", "decode", tmp_path / "missing.npy", "-o", tmp_path / "o.wav"], capsys)
    assert code == 2 and err.startswith("error: codes file not found") and "Traceback" not in err
    with pytest.raises(VgsError, match=".npy"):
        codec.encode_wav_file(tmp_path / "in.wav", tmp_path / "c.txt", ckpt)


@pytest.mark.slow
def test_reconstruct_split_pairs_with_real_clips(tmp_path, tiny_shards, capsys):
    from vgs_cli.data.dataset import ShardDataset
    from vgs_cli.metrics.fakes import match_real_ids, scan_fakes

    ckpt, _ = _codebook(tmp_path / "cb.ckpt")
    out = tmp_path / "recon"
    code, stdout, err = _run_cli(["codec", "reconstruct", "--data", tiny_shards, "--split", "test",
                                  "--codebook", ckpt, "-o", out, "-b", "4"], capsys)
    assert code == 0, err
    real = ShardDataset(tiny_shards, "test", fields=("id", "mel"), mel_crop="center")
    ids = [real[i]["id"] for i in range(len(real))]
    mels = sorted(out.rglob("*.npy"))
    assert len(mels) == len(ids) == 6 and len(list(out.rglob("*.wav"))) == 6
    assert all(np.load(p).shape == (80, 848) for p in mels)
    items = scan_fakes(out, "mel")
    assert sorted(match_real_ids(items, ids)) == sorted(ids)  # every reconstruction pairs with its clip
    summary = json.loads((out / "reconstruct.json").read_text())
    assert summary["clips"] == 6 and 0 < summary["mel_l1"] < 1
    audio, sr = sf.read(next(out.rglob("*.wav")))
    assert sr == SR and audio.shape == (848 * 256,)
