"""The one spectrogram: torch vs librosa parity, stored reference mels, shapes, padding, ranges, inversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vgs_cli.audio import spec
from vgs_cli.audio.io import load_audio
from vgs_cli.config.spec import SPEC
from vgs_cli.data.video import fit_clip

SR = SPEC.sample_rate


def _tone(seconds: float, *freqs: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(SR * seconds))) / SR
    return sum(amp * np.sin(2 * np.pi * f * t) for f in freqs)


def _signals() -> dict[str, np.ndarray]:
    """Synthetic test signals: full 10 s clips and short ones (odd lengths included)."""
    rng = np.random.default_rng(0)
    t = np.arange(SPEC.num_samples) / SR
    return {
        "sines": _tone(10.0, 125.0, 440.0, 3000.0, 7600.0),
        "chirp": 0.5 * np.sin(2 * np.pi * (50 * t + 400 * t ** 2)),
        "noise": 0.1 * rng.standard_normal(SPEC.num_samples),
        "silence": np.zeros(SPEC.num_samples),
        "clipping_square": np.sign(np.sin(2 * np.pi * 220.0 * t)),  # +-1 full scale
        "clipped_noise": np.clip(3.0 * rng.standard_normal(SPEC.num_samples), -1.0, 1.0),
        "short_1s": _tone(1.0, 1000.0),
        "short_odd": 0.2 * rng.standard_normal(12345),
        "shorter_than_fft": 0.2 * rng.standard_normal(700),
    }


@pytest.mark.filterwarnings("ignore:n_fft=1024 is too large")
@pytest.mark.parametrize("name", list(_signals()))
def test_torch_mel_matches_librosa_on_every_bin(name):
    wav = _signals()[name]
    ours = spec.mel_spectrogram(wav).numpy()
    ref = spec.mel_spectrogram_librosa(wav)
    assert ours.shape == ref.shape == (80, 1 + len(wav) // 256)
    assert np.abs(ours - ref).max() < 1e-4


def test_batched_mel_equals_per_clip_mel():
    sig = _signals()
    batch = np.stack([sig["sines"], sig["noise"], sig["chirp"]]).astype(np.float32)
    mels = spec.clip_mel(torch.from_numpy(batch))
    assert mels.shape == (3, 80, 860) and mels.dtype == torch.float32
    for i in range(3):
        torch.testing.assert_close(mels[i], spec.clip_mel(batch[i]), atol=1e-6, rtol=0)
    # Silence sits exactly at the floor: amin 1e-5 -> -100 dB -> -120 after ref -> clipped to 0.
    assert float(spec.clip_mel(sig["silence"]).max()) == 0.0


def _reference_clips(reference_dir: Path) -> list[tuple[Path, Path]]:
    videos = sorted((reference_dir / "vas" / "videos").glob("*/*.mp4"))
    pairs = [(v, reference_dir / "vas" / "mels" / v.parent.name / f"{v.stem}_mel.npy") for v in videos]
    pairs = [(v, m) for v, m in pairs if m.is_file()]
    if not pairs:
        pytest.skip("no reference VAS clips with mels")
    return pairs


@pytest.mark.reference
def test_real_audio_torch_vs_librosa_and_vs_stored_reference_mels(reference_dir):
    pairs = _reference_clips(reference_dir)
    ours, stored = [], []
    for video, mel_path in pairs:
        wav = load_audio(video)
        _, wav = fit_clip(None, wav, mode="loop")  # the reference looped short clips to 10 s
        mel = spec.clip_mel(wav).numpy()
        assert np.abs(mel - spec.mel_spectrogram_librosa(wav)[:, :860]).max() < 1e-4
        ref = np.load(mel_path)
        assert ref.shape == mel.shape == (80, 860) and ref.dtype == np.float32
        ours.append(mel)
        stored.append(ref)
    diffs = np.array([[np.abs(a - b).mean() for b in stored] for a in ours])
    own = np.diag(diffs)
    # The stored mels come from the original wavs, ours from re-encoded AAC in mp4 (and the two short
    # clips loop at slightly different points): a few thousandths typically, at most a few hundredths.
    assert own.max() < 0.04, own
    assert own.mean() < 0.015, own
    others = diffs + np.diag(np.full(len(own), np.inf))
    assert others.min() > 0.1  # any other clip's mel is an order of magnitude further away
    assert (others.min(axis=1) > 4 * own).all()


def test_shapes_and_crops():
    wav = _signals()["noise"]
    full = spec.mel_spectrogram(wav)
    assert full.shape == (80, 862)  # 220500 samples, hop 256, centred
    stored = spec.clip_mel(wav)
    assert stored.shape == (80, 860)
    torch.testing.assert_close(stored, full[:, :860])  # TrimSpec(860) keeps the first 860 frames
    centre = spec.crop_frames(stored)
    assert centre.shape == (80, 848)
    torch.testing.assert_close(centre, stored[:, 6:854])
    gen = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(20):
        crop = spec.crop_frames(stored, mode="random", generator=gen)
        start = int(torch.nonzero((stored[0].unfold(0, 848, 1) == crop[0]).all(dim=1))[0])
        torch.testing.assert_close(crop, stored[:, start:start + 848])
        starts.add(start)
    assert len(starts) > 3 and max(starts) <= 12
    # Short and long inputs are zero-padded / trimmed to 10 s before the mel.
    short = _signals()["short_1s"]
    torch.testing.assert_close(spec.clip_mel(short), spec.clip_mel(np.pad(short, (0, SPEC.num_samples - len(short)))))
    assert spec.clip_mel(np.concatenate([wav, wav])).shape == (80, 860)
    with pytest.raises(ValueError):
        spec.crop_frames(stored[:, :100])


def test_reflect_padding_only_changes_the_edge_frames():
    wav = _tone(10.0, 440.0, 2500.0)  # non-zero at both ends, so the padding matters
    reflect = spec.clip_mel(wav).numpy()
    zeros = spec.clip_mel(wav, SPEC.replace(pad_mode="constant")).numpy()
    # A centred 1024-sample window at hop 256 reaches into the 512 padded samples only for frames 0 and 1
    # (and 860, 861, which the stored 860 frames drop).
    np.testing.assert_array_equal(reflect[:, 2:], zeros[:, 2:])
    assert np.abs(reflect[:, :2] - zeros[:, :2]).max() > 0.05


def test_model_range_and_log_scale_round_trips():
    x = torch.rand(2, 80, 848)
    y = spec.to_model_range(x)
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    torch.testing.assert_close(spec.from_model_range(y), x)
    assert float(spec.from_model_range(torch.tensor([-3.0, 3.0])).abs().max()) == 1.0  # clamped
    mag = torch.logspace(-3.9, 0.9, 50, dtype=torch.float64)  # inside the unsaturated range (-80..+20 dB)
    torch.testing.assert_close(spec.unit_to_magnitude(spec.magnitude_to_unit(mag)), mag)
    edges = spec.magnitude_to_unit(torch.tensor([1e-9, 1e-5, 10.0, 1e3], dtype=torch.float64))
    torch.testing.assert_close(edges, torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64))


def test_griffin_lim_round_trip():
    t = np.arange(SR) / SR
    wav = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234 * t) + 0.2 * np.sin(
        2 * np.pi * (300 * t + 600 * t ** 2))
    mel = spec.mel_spectrogram(wav)
    target = spec.unit_to_magnitude(mel)

    def convergence(n_iter: int) -> float:
        audio = spec.griffin_lim(spec.mel_to_linear(mel), n_iter=n_iter, length=len(wav))
        assert audio.shape == (len(wav),) and audio.dtype == torch.float32
        return spec.spectral_convergence(target, spec.unit_to_magnitude(spec.mel_spectrogram(audio)))

    random_phase, gl = convergence(0), convergence(32)
    # Measured: ~0.6 with random phases, ~0.08 after 32 fast Griffin-Lim iterations.
    assert gl < 0.15
    assert gl < 0.3 * random_phase
    torch.testing.assert_close(spec.mel_to_audio(mel, length=len(wav)),
                               spec.griffin_lim(spec.mel_to_linear(mel), length=len(wav)))


def test_pad_or_trim_numpy_and_torch():
    a = np.arange(5.0)
    np.testing.assert_array_equal(spec.pad_or_trim(a, 7), [0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(spec.pad_or_trim(a, 3), [0, 1, 2])
    b = torch.ones(2, 4)
    assert spec.pad_or_trim(b, 6).shape == (2, 6) and float(spec.pad_or_trim(b, 6)[:, 4:].abs().sum()) == 0.0
    assert spec.num_frames(SPEC.num_samples) == 862
