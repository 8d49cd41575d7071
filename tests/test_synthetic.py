"""The synthetic audio-visual dataset: shapes, determinism, class separability, audio-visual sync, files."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from vgs_cli.audio.io import load_audio, probe
from vgs_cli.audio.spec import clip_mel, mel_spectrogram
from vgs_cli.data.synthetic import CLASSES, clip_onsets, make_clip, split_counts, write_synthetic_dataset
from vgs_cli.data.video import read_frames
from vgs_cli.errors import DataError

SR = 22050


@pytest.mark.parametrize("fps,n_frames", [(21.5, 215), (25.0, 250)])
def test_clip_shapes_and_levels(fps, n_frames):
    for ci in range(len(CLASSES)):
        frames, wav = make_clip(ci, seed=1, fps=fps)
        assert frames.shape == (n_frames, 96, 96, 3) and frames.dtype == np.uint8
        assert wav.shape == (220500,) and wav.dtype == np.float32
        assert np.abs(wav).max() <= 0.99
        mel = clip_mel(wav).numpy()
        assert mel.max() > 0.6  # events are loud
        assert np.percentile(mel, 1) > 0.05  # the background is quiet but never digital silence
        assert 0.3 < np.abs(wav).max()
    frames, wav = make_clip(0, seed=1, duration_s=2.0, size=32)
    assert frames.shape == (43, 32, 32, 3) and wav.shape == (44100,)
    with pytest.raises(DataError):
        make_clip(len(CLASSES), seed=0)


def test_clips_are_deterministic_and_vary_with_the_seed():
    a_frames, a_wav = make_clip(2, seed=5, duration_s=3.0, size=32)
    b_frames, b_wav = make_clip(2, seed=5, duration_s=3.0, size=32)
    np.testing.assert_array_equal(a_frames, b_frames)
    np.testing.assert_array_equal(a_wav, b_wav)
    c_frames, c_wav = make_clip(2, seed=6, duration_s=3.0, size=32)
    assert not np.array_equal(a_frames, c_frames) and not np.array_equal(a_wav, c_wav)


def _colour_feature(frames: np.ndarray) -> np.ndarray:
    """Mean colour of what differs from each frame's background (its median), as a unit vector `[3]`."""
    f = frames.astype(np.float32)
    background = np.median(f.reshape(len(f), -1, 3), axis=1)
    excess = np.clip(f - background[:, None, None, :], 0, None).reshape(-1, 3).mean(axis=0)
    return excess / np.linalg.norm(excess)


def _nearest_centroid_accuracy(feats: np.ndarray, labels: np.ndarray, train: np.ndarray) -> float:
    centroids = np.stack([feats[train & (labels == c)].mean(axis=0) for c in range(len(CLASSES))])
    dist = ((feats[~train][:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float((dist.argmin(axis=1) == labels[~train]).mean())


def test_classes_are_separable_from_pictures_and_from_sound():
    colour, mel_profile, labels = [], [], []
    for ci in range(len(CLASSES)):
        for seed in range(5):
            frames, wav = make_clip(ci, seed, duration_s=4.0, size=32)
            colour.append(_colour_feature(frames))
            mel_profile.append(mel_spectrogram(wav).numpy().mean(axis=1))  # mean mel per bin [80]
            labels.append(ci)
    labels = np.array(labels)
    train = np.arange(len(labels)) % 5 < 3  # seeds 0-2 train the centroids, seeds 3-4 are held out
    assert _nearest_centroid_accuracy(np.array(colour), labels, train) == 1.0
    assert _nearest_centroid_accuracy(np.array(mel_profile), labels, train) == 1.0


def _visual_onsets(frames: np.ndarray) -> set[int]:
    """Frames where the object brightens (the brightest channel of the brightest pixel jumps)."""
    peak = frames.reshape(len(frames), -1).max(axis=1).astype(int)
    return set((np.nonzero(peak[1:] > peak[:-1] + 20)[0] + 1).tolist())


def _audio_onsets(wav: np.ndarray, n_frames: int, fps: float) -> set[int]:
    """Frames k whose start time k / fps is an audio onset: the 3 ms after are >4x louder than the 10 ms before.

    Measured: shifting the sound by 3 ms (66 samples) either way breaks the match for every class.
    """
    out = set()
    for k in range(1, n_frames):
        s = int(round(k * SR / fps))
        before = np.sqrt(np.mean(wav[s - 220:s] ** 2))
        after = np.sqrt(np.mean(wav[s:s + 66] ** 2))
        if after > 4 * before:
            out.add(k)
    return out


@pytest.mark.parametrize("fps", [21.5, 25.0])
def test_sound_onsets_are_on_the_frames_where_the_event_is_seen(fps):
    for ci in range(len(CLASSES)):
        for seed in range(2):
            frames, wav = make_clip(ci, seed, duration_s=5.0, size=32, fps=fps)
            seen, heard = _visual_onsets(frames), _audio_onsets(wav, len(frames), fps)
            assert seen and seen == heard, (CLASSES[ci], seed, sorted(seen ^ heard))
            planned = {int(round(t * fps)) for t in clip_onsets(ci, seed, duration_s=5.0, fps=fps)}
            assert planned <= seen  # drum rolls add one visible + audible onset per hit


def test_write_dataset_files_labels_and_splits(tmp_path):
    n = 18  # 3 clips per class -> 1 train, 1 valid, 1 test each
    paths = write_synthetic_dataset(tmp_path / "ds", n, duration_s=2.0, seed=3, size=32, jobs=2)
    assert len(paths) == n and all(p.is_file() for p in paths)
    assert paths[7].relative_to(tmp_path / "ds").as_posix() == "videos/tone/tone_0001.mp4"
    with open(tmp_path / "ds" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "split"] and len(rows) == n
    for row in rows:
        assert (tmp_path / "ds" / row["path"]).is_file() and row["path"].split("/")[1] == row["label"]
    per_class = Counter((r["label"], r["split"]) for r in rows)
    assert all(per_class[(c, s)] == 1 for c in CLASSES for s in ("train", "valid", "test"))
    # The files hold the clips: real H.264 + AAC that decode back to the generated pictures and sound.
    info = probe(paths[1])
    assert info.has_video and info.has_audio and info.fps == 21.5 and (info.width, info.height) == (32, 32)
    frames, wav = make_clip(1, _clip_seed(3, 1), duration_s=2.0, size=32)
    decoded = read_frames(paths[1])
    assert decoded.shape == frames.shape and np.abs(decoded.astype(int) - frames).mean() < 3
    audio = load_audio(paths[1])
    assert audio.shape == wav.shape and np.abs(clip_mel(audio) - clip_mel(wav)).mean() < 0.01
    # Same arguments -> same labels file (serial and parallel writers agree).
    first = (tmp_path / "ds" / "labels.csv").read_text()
    write_synthetic_dataset(tmp_path / "again", n, duration_s=2.0, seed=3, size=32, jobs=1)
    assert (tmp_path / "again" / "labels.csv").read_text() == first


def _clip_seed(seed: int, j: int) -> int:
    return int(np.random.SeedSequence([seed, j]).generate_state(1)[0])


def test_split_sizes_are_about_70_15_15():
    assert split_counts(25) == {"train": 17, "valid": 4, "test": 4}
    assert split_counts(100) == {"train": 70, "valid": 15, "test": 15}
    assert split_counts(3) == {"train": 1, "valid": 1, "test": 1}
    assert split_counts(2) == {"train": 2, "valid": 0, "test": 0}
    with pytest.raises(DataError):
        write_synthetic_dataset("/nonexistent-never-written", 0)
