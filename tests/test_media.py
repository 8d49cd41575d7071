"""Media decoding: exact 21.5 fps frame timing, sample-accurate audio, clip fitting, muxing, error messages."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vgs_cli.audio.io import ffmpeg_exe, load_audio, mux_audio, parse_probe, probe, read_wav, write_wav
from vgs_cli.data.video import fit_clip, fps_fraction, output_size, read_frames, write_video
from vgs_cli.errors import DataError

SR = 22050


def index_frames(n: int, h: int = 32, w: int = 32) -> np.ndarray:
    """Frames whose flat colour encodes their index (R = low 4 bits, G = high 4 bits, steps of 16)."""
    i = np.arange(n)
    colour = np.stack([(i % 16) * 16 + 8, (i // 16) * 16 + 8, np.full(n, 128)], axis=1).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(colour[:, None, None, :], (n, h, w, 3)))


def decode_index(frames: np.ndarray) -> np.ndarray:
    """Inverse of `index_frames` after lossy coding (16-level steps survive H.264 + yuv420p easily)."""
    mean = frames.reshape(len(frames), -1, 3).astype(np.float64).mean(axis=1)
    return (np.round((mean[:, 0] - 8) / 16) + 16 * np.round((mean[:, 1] - 8) / 16)).astype(int)


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(round(sr * seconds))) / sr)).astype(np.float32)


@pytest.mark.parametrize("src_fps", [24, 25, 30, 60, 29.97])
def test_frames_resampled_to_21_5_fps_show_the_frame_on_screen(tmp_path, src_fps):
    seconds = 3
    n_src = int(round(src_fps * seconds))
    path = write_video(tmp_path / "idx.mp4", index_frames(n_src), fps=src_fps)
    frames = read_frames(path)
    got = decode_index(frames)
    src_rate = Fraction(fps_fraction(src_fps))
    # Output frame k at time k / 21.5 s = 2k/43 s shows source frame floor(t * src_fps) (exact rationals).
    expected = np.array([math.floor(Fraction(2 * k, 43) * src_rate) for k in range(len(got))])
    np.testing.assert_array_equal(got, expected)
    end = Fraction(n_src) / src_rate * Fraction(43, 2)
    assert len(frames) == math.ceil(end)
    assert frames.dtype == np.uint8 and frames.shape[1:] == (32, 32, 3)


def test_variable_frame_rate_source(tmp_path):
    rng = np.random.default_rng(0)
    dur_ms = rng.choice([17, 33, 40, 50, 67, 100], size=60)
    t_ms = np.concatenate([[0], np.cumsum(dur_ms[:-1])])
    # setpts on a 1 ms time base: frame N starts at the sum of the first N durations.
    expr = "+".join(f"{d}*gt(N\\,{i})" for i, d in enumerate(dur_ms[:-1]))
    out = tmp_path / "vfr.mp4"
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "32x32",
           "-framerate", "1000", "-i", "pipe:0", "-vf", f"setpts=({expr})/1000/TB", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, input=index_frames(len(t_ms)).tobytes(), check=True, capture_output=True)
    got = decode_index(read_frames(out))
    # The last source frame whose timestamp is <= k / 21.5 s (t_ms / 1000 <= 2k / 43, in integers).
    expected = np.array([np.nonzero(t_ms * 43 <= 2000 * k)[0].max() for k in range(len(got))])
    np.testing.assert_array_equal(got, expected)
    total_s = (t_ms[-1] + dur_ms[-1]) / 1000
    assert math.floor(total_s * 21.5) <= len(got) <= math.ceil(total_s * 21.5)
    assert len(np.unique(got)) < len(t_ms)  # some source frames were dropped, some repeated: it really is VFR


def make_vfr_video(path: Path, suffix: str = ".mp4") -> Path:
    """A 3.00-s variable-frame-rate clip: 40 fps frames, every 4th kept in the first 1.5 s (15 at 10 fps, then
    60 at 40 fps: 75 frames, whose average rate does not describe them), re-timed with `-fps_mode vfr`."""
    src = write_video(path.with_name("cfr40.mp4"), index_frames(120), fps=40)
    out = path.with_suffix(suffix)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-vf", "select='gte(t,1.5)+not(mod(n,4))'",
                    "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_video_duration_of_a_variable_frame_rate_clip_comes_from_its_timestamps(tmp_path, suffix):
    """Issue 25: a 3.00-s VFR clip was measured as frames / average fps (3.15 s in mp4, 1.875 s in mkv)."""
    from vgs_cli.generate.engine import video_duration

    path = make_vfr_video(tmp_path / "vfr", suffix)
    info = probe(path)
    assert abs(75 / info.fps - 3.0) > 0.1  # what counting frames gives
    assert abs(video_duration(path) - 3.0) <= 256 / SR


@pytest.mark.parametrize("fps, seconds, suffix", [(25, 3.0, ".mp4"), (29.97, 2.7, ".mp4"), (21.5, 3.3, ".mkv"),
                                                  (30, 2.0, ".webm"), (29.97, 2.7, ".avi")])
def test_video_duration_at_a_constant_rate_is_frames_over_fps_exactly(tmp_path, fps, seconds, suffix):
    """Timestamps that agree with the count change nothing: the same float as frames / fps, bit for bit."""
    from vgs_cli.generate.engine import video_duration

    n = int(round(seconds * fps))
    path = write_video(tmp_path / "cfr.mp4", index_frames(n), fps=fps)
    if suffix != ".mp4":
        codec = {".webm": "libvpx", ".avi": "mpeg4"}.get(suffix, "libx264")
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(path), "-c:v", codec,
                        str(path.with_suffix(suffix))], check=True, capture_output=True)
        path = path.with_suffix(suffix)
    assert video_duration(path) == n / probe(path).fps


def test_read_frames_resizes_and_limits_duration(tmp_path):
    frames = np.zeros((50, 40, 60, 3), np.uint8)
    frames[:, :, :30] = 200  # left half bright: survives any resize
    path = write_video(tmp_path / "wide.mp4", frames, fps=25)
    assert read_frames(path, size=(24, 36)).shape == (43, 24, 36, 3)
    small = read_frames(path, short_side=20)
    assert small.shape == (43, 20, 30, 3)
    assert small[:, :, :12].mean() > 150 and small[:, :, 18:].mean() < 50
    assert read_frames(path, max_duration_s=1.0).shape[0] == math.ceil(21.5)
    assert output_size(398, 224, short_side=112) == (112, 199)
    with pytest.raises(DataError):
        output_size(64, 64, size=(8, 8), short_side=8)


def test_write_video_pads_odd_sizes_and_probe_reads_it(tmp_path):
    frames = np.full((10, 31, 45, 3), 90, np.uint8)
    path = write_video(tmp_path / "odd.mp4", frames, fps=25)
    info = probe(path)
    assert (info.width, info.height, info.has_video, info.has_audio) == (46, 32, True, False)
    assert info.fps == 25 and info.duration_s == pytest.approx(0.4, abs=0.02) and info.n_frames_estimate == 10
    with pytest.raises(DataError):
        write_video(tmp_path / "bad.mp4", frames.astype(np.float32), fps=25)


@pytest.mark.parametrize("file_sr", [44100, 22050])
def test_load_audio_is_sample_accurate(tmp_path, file_sr):
    wav = sine(440.0, file_sr, 2.0)
    write_wav(tmp_path / "s.wav", wav, file_sr)
    write_video(tmp_path / "s.mp4", np.zeros((50, 16, 16, 3), np.uint8), fps=25, wav=wav, sr=file_sr)
    ref = sine(440.0, SR, 2.0)
    from_wav = load_audio(tmp_path / "s.wav")
    from_mp4 = load_audio(tmp_path / "s.mp4")
    assert from_wav.dtype == np.float32 and len(from_wav) == len(ref) == len(from_mp4)
    inner = slice(200, -200)  # the resampler's filter rings at the abrupt start and end of the file
    assert np.abs(from_wav - ref)[inner].max() < 2e-3  # int16 quantisation + resampling
    # AAC: no delay (priming samples trimmed by the edit list) and a small coding error on every sample.
    assert np.abs(from_mp4 - ref)[2000:-2000].max() < 0.01
    assert load_audio(tmp_path / "s.mp4", duration_s=0.5).shape == (11025,)


def test_load_audio_downmixes_stereo_to_the_channel_mean(tmp_path):
    left, right = sine(300.0, SR, 1.0, 0.6), sine(1000.0, SR, 1.0, 0.3)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), SR, subtype="FLOAT")
    mono = load_audio(tmp_path / "st.wav")
    # (L+R)/2 as in the reference's int16 extraction, not ffmpeg's float default (L+R)/sqrt(2).
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-5)


def test_missing_streams_and_bad_files(tmp_path):
    silent = write_video(tmp_path / "silent.mp4", index_frames(20), fps=25)
    assert load_audio(silent) is None
    audio_only = write_wav(tmp_path / "a.wav", sine(500.0, SR, 0.5))
    with pytest.raises(DataError, match="has no video stream"):
        read_frames(audio_only)
    info = probe(audio_only)
    assert info.has_audio and not info.has_video and info.fps is None and info.sample_rate == SR
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 10)
    for fn in (probe, load_audio, read_frames):
        with pytest.raises(DataError, match="cannot read media file"):
            fn(garbage)
        with pytest.raises(DataError, match="no such media file"):
            fn(tmp_path / "missing.mp4")


def test_parse_probe_handles_rotation_and_cover_art():
    text = """Input #0, mov,mp4, from 'x.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 296 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv), 1920x1080, 30 fps, 30 tbr
    Side data:
      displaymatrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC), 48000 Hz, stereo, fltp, 128 kb/s"""
    info = parse_probe(text)
    assert (info.width, info.height, info.fps, info.duration_s) == (1080, 1920, 30.0, 62.5)
    assert info.n_frames_estimate == 1875 and info.sample_rate == 48000 and info.channels == 2
    art = parse_probe("  Duration: 00:00:03.00\n  Stream #0:0: Audio: mp3, 44100 Hz, mono, fltp\n"
                      "  Stream #0:1: Video: png, rgb24(pc), 500x500, 90k tbr, 90k tbn (attached pic)\n")
    assert art.has_audio and not art.has_video and art.channels == 1


def test_fit_clip_loops_pads_and_trims():
    frames = index_frames(5, 4, 4)
    wav = np.arange(1, 8, dtype=np.float32)
    f, w = fit_clip(frames, wav, n_frames=12, n_samples=17, mode="loop")
    np.testing.assert_array_equal(decode_index(f), np.arange(12) % 5)
    np.testing.assert_array_equal(w, np.arange(17) % 7 + 1)
    f, w = fit_clip(frames, wav, n_frames=8, n_samples=10, mode="pad")
    np.testing.assert_array_equal(decode_index(f), [0, 1, 2, 3, 4, 4, 4, 4])
    np.testing.assert_array_equal(w, [1, 2, 3, 4, 5, 6, 7, 0, 0, 0])
    f, w = fit_clip(index_frames(300, 2, 2), np.ones(300000, np.float32))  # long: keep the first 10 s
    assert f.shape[0] == 215 and decode_index(f)[-1] == 214 and w.shape == (220500,)
    f, w = fit_clip(frames, None, n_frames=6)
    assert w is None and len(f) == 6
    with pytest.raises(DataError):
        fit_clip(frames, wav, mode="stretch")
    with pytest.raises(DataError):
        fit_clip(frames[:0], wav)


def test_wav_round_trip_and_resampling(tmp_path):
    wav = sine(1000.0, SR, 1.0, 0.8)
    write_wav(tmp_path / "f.wav", wav, SR, subtype="FLOAT")
    back, sr = read_wav(tmp_path / "f.wav")
    assert sr == SR and back.dtype == np.float32
    np.testing.assert_array_equal(back, wav)
    write_wav(tmp_path / "p.wav", wav * 2, SR)  # out of range: clipped, not wrapped around
    back, _ = read_wav(tmp_path / "p.wav")
    assert back.max() == pytest.approx(1.0, abs=1e-4) and back.min() == pytest.approx(-1.0, abs=1e-4)
    write_wav(tmp_path / "hi.wav", sine(1000.0, 44100, 1.0, 0.8), 44100)
    res, sr = read_wav(tmp_path / "hi.wav")
    assert sr == SR and len(res) == SR
    assert np.abs(res - wav)[100:-100].max() < 2e-3
    assert read_wav(tmp_path / "hi.wav", sr=None)[1] == 44100
    before = (tmp_path / "f.wav").read_bytes()
    with pytest.raises(DataError):
        write_wav(tmp_path / "f.wav", np.zeros((2, 10)), SR)
    assert (tmp_path / "f.wav").read_bytes() == before  # a failed write leaves the old file intact


def test_mux_replaces_audio_and_keeps_video(tmp_path):
    video = write_video(tmp_path / "v.mp4", index_frames(100), fps=25, wav=sine(200.0, SR, 4.0))
    new_audio = write_wav(tmp_path / "new.wav", sine(1000.0, SR, 3.0, 0.4))
    out = mux_audio(video, new_audio, tmp_path / "muxed.mp4")
    info = probe(out)
    assert info.has_video and info.has_audio and info.duration_s == pytest.approx(3.0, abs=0.1)
    got = load_audio(out)
    ref = sine(1000.0, SR, 3.0, 0.4)[: len(got)]
    assert abs(len(got) - 3 * SR) < 2048
    assert np.abs(got - ref)[2000:-2000].max() < 0.01  # the new sound, sample aligned
    frames = read_frames(out)  # the video stream was copied: same frames as the source for the first 3 s
    np.testing.assert_array_equal(decode_index(frames[:60]), decode_index(read_frames(video)[:60]))


def test_video_starting_after_the_audio_stays_on_the_file_clock(tmp_path):
    video = write_video(tmp_path / "v.mp4", index_frames(50), fps=25)
    audio = write_wav(tmp_path / "a.wav", sine(440.0, SR, 2.5))
    out = tmp_path / "late_video.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-itsoffset", "0.1", "-i", str(video), "-i", str(audio),
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(out)], check=True)
    got = decode_index(read_frames(out))
    # Time k/21.5 shows source frame floor((t - 0.1) * 25); before the video starts its first frame is held,
    # so frames stay in sync with the audio, which starts at 0.
    t = np.arange(len(got)) * 2 / 43
    expected = np.maximum(np.floor((t - 0.1) * 25 + 1e-9), 0).astype(int)
    np.testing.assert_array_equal(got[: len(expected) - 1], expected[:-1])
    assert len(load_audio(out)) == pytest.approx(2.5 * SR, abs=2048)


def test_awkward_file_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names: ':' would read as a protocol, a leading '-' as an option
    odd = Path("-clip:1.mp4")
    write_video(odd, index_frames(25), fps=25, wav=sine(440.0, SR, 1.0))
    assert probe(odd).has_audio
    assert len(read_frames(odd)) == math.ceil(21.5) and len(load_audio(odd)) == SR
    wav = write_wav("-new:sound.wav", sine(880.0, SR, 1.0))
    assert probe(mux_audio(odd, wav, "out:x.mp4")).has_video
