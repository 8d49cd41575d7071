"""Waveform I/O: probe media, decode audio with ffmpeg, read/write wav files, mux audio into a video.

Audio is decoded by the ffmpeg binary bundled with imageio-ffmpeg (`-f f32le -ac 1 -ar 22050`): moviepy
returns wrong samples when asked for another sample rate, and ffmpeg's resampler is what the reference
pipeline used to make its 22.05 kHz wavs. imageio-ffmpeg ships no ffprobe, so `probe` parses `ffmpeg -i`.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vgs_cli.config.spec import SPEC
from vgs_cli.errors import DataError
from vgs_cli.fsutil import atomic_path, raise_output_error

SAMPLE_RATE = SPEC.sample_rate  # the spectrogram's rate (config/spec.py): one definition
# Container formats by suffix: atomic writes go to a `.tmp` file, so ffmpeg cannot guess from the name.
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".m4a": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
           ".avi": "avi"}


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary (imageio-ffmpeg's bundled one, or $IMAGEIO_FFMPEG_EXE)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise DataError("imageio-ffmpeg is not installed; it provides the ffmpeg binary vgs decodes with") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `ffmpeg -hide_banner <args>` (`-nostdin` unless feeding stdin); returns the completed process (stdout/stderr as bytes)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "info", *args]
    if stdin is None:
        cmd.insert(1, "-nostdin")
    return subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)


def last_error_line(stderr: bytes | str) -> str:
    """The most informative line of ffmpeg's stderr (its last non-empty one), for one-line errors."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "ffmpeg failed"


def file_arg(path: str | os.PathLike) -> str:
    """A path as an ffmpeg file argument: `file:` keeps names with ':' (or starting with '-') from being
    read as a protocol or an option."""
    return "file:" + str(Path(path).absolute())


def muxer_for(path: str | os.PathLike) -> str:
    """ffmpeg `-f` name for an output path (by suffix, mp4 by default)."""
    return _MUXERS.get(Path(path).suffix.lower(), "mp4")


# ----------------------------------------------------------------------------------------------- probe

@dataclass(frozen=True)
class MediaInfo:
    """What `ffmpeg -i` says about a file (first video and first audio stream)."""

    duration_s: float
    fps: float | None
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    n_frames_estimate: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio): (.*)$", re.MULTILINE)
_SIZE = re.compile(r",\s*(\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_TBR = re.compile(r"([\d.]+)(k?) tbr")
_RATE = re.compile(r"(\d+) Hz")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "7.1": 8}


def _rate(match: re.Match | None) -> float | None:
    if match is None:
        return None
    value = float(match.group(1)) * (1000.0 if match.group(2) else 1.0)
    return value if value > 0 else None


def _parse_video(desc: str, text_after: str) -> tuple[int | None, int | None, float | None]:
    """Width, height (after the display rotation ffmpeg applies when decoding) and frame rate of a stream."""
    size = _SIZE.search(desc)
    width, height = (int(size.group(1)), int(size.group(2))) if size else (None, None)
    fps = _rate(_FPS.search(desc)) or _rate(_TBR.search(desc))
    # ffmpeg auto-rotates decoded frames by the stream's display matrix (side data printed after the line).
    next_stream = text_after.find("Stream #")
    rotation = _ROTATION.search(text_after if next_stream < 0 else text_after[:next_stream])
    if rotation and width and height and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width
    return width, height, fps


def parse_probe(stderr: str) -> MediaInfo:
    """Build a `MediaInfo` from the text `ffmpeg -i <file>` prints (duration 0 when unknown)."""
    dur = _DURATION.search(stderr)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    video = audio = None
    for m in _STREAM.finditer(stderr):
        kind, desc = m.group(1), m.group(2)
        if kind == "Video" and video is None and "attached pic" not in desc:  # cover art is not a video
            video = _parse_video(desc, stderr[m.end():])
        elif kind == "Audio" and audio is None:
            audio = desc
    width, height, fps = video if video else (None, None, None)
    sr = channels = None
    if audio is not None:
        rate = _RATE.search(audio)
        sr = int(rate.group(1)) if rate else None
        parts = [p.strip() for p in audio.split(",")]
        channels = next((_CHANNELS[p] for p in parts if p in _CHANNELS), None)
    n_frames = int(round(duration * fps)) if (fps and duration) else None
    return MediaInfo(duration_s=duration, fps=fps, has_video=video is not None, has_audio=audio is not None,
                     width=width, height=height, n_frames_estimate=n_frames, sample_rate=sr, channels=channels)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Duration, frame rate, size and streams of a media file. Missing or unreadable file -> DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such media file: {path}")
    proc = run_ffmpeg(["-i", file_arg(path)])
    text = proc.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise DataError(f"cannot read media file {path}: {last_error_line(text)}")
    info = parse_probe(text)
    if not info.has_video and not info.has_audio:
        raise DataError(f"media file {path} has neither a video nor an audio stream")
    return info


# ----------------------------------------------------------------------------------------------- audio

def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, duration_s: float | None = None) -> np.ndarray | None:
    """Decode the first audio stream as mono float32 at `sr`: `-> float32[S]`, or None without an audio track.

    Channels are averaged by ffmpeg (`-ac 1`, normalised like the reference's int16 extraction); `duration_s`
    keeps only the first seconds (sample accurate). Samples are not clipped (AAC can overshoot 1.0 a little).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such media file: {path}")
    # rematrix_maxval 1 makes the stereo downmix (L+R)/2 as in the reference's int16 wavs; float output
    # would otherwise get (L+R)/sqrt(2), 3 dB louder (a 0.03 mean shift on the [0, 1] mel scale).
    args = ["-i", file_arg(path), "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(int(sr)),
            "-rematrix_maxval", "1.0"]
    if duration_s is not None:
        if duration_s <= 0:
            raise DataError(f"duration_s must be positive, got {duration_s}")
        args += ["-t", f"{duration_s:.6f}"]
    proc = run_ffmpeg([*args, "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"])
    if proc.returncode != 0:
        info = probe(path)  # raises DataError for unreadable files
        if not info.has_audio:
            return None
        raise DataError(f"cannot decode audio of {path}: {last_error_line(proc.stderr)}")
    wav = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if duration_s is not None:
        wav = wav[: int(round(duration_s * sr))]
    return wav


def write_wav(path: str | os.PathLike, wav: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16",
              comment: str | None = None) -> Path:
    """Atomically write a mono `float[S]` waveform (on [-1, 1]) as a wav file (`PCM_16` or `FLOAT`); `comment`
    goes into the file's INFO chunk (`soundfile.SoundFile(path).comment` reads it: generate's provenance)."""
    import soundfile as sf

    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise DataError(f"write_wav expects a mono waveform [S], got shape {tuple(wav.shape)}")
    if subtype == "PCM_16":
        wav = np.clip(wav, -1.0, 1.0)  # int16 would wrap around otherwise
    path = Path(path)
    with atomic_path(path) as tmp, sf.SoundFile(str(tmp), "w", int(sr), 1, subtype, format="WAV") as fh:
        if comment:
            fh.comment = comment
        fh.write(wav)
    return path


def read_wav(path: str | os.PathLike, sr: int | None = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Read a sound file as mono float32: `-> (float32[S], sr)`, resampled to `sr` (None keeps the file's rate)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such audio file: {path}")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError variants
        raise DataError(f"cannot read audio file {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    wav = data.mean(axis=1).astype(np.float32)
    if sr is None or int(sr) == int(file_sr):
        return wav, int(file_sr)
    import librosa

    wav = librosa.resample(wav, orig_sr=int(file_sr), target_sr=int(sr), res_type="soxr_hq")
    return wav.astype(np.float32), int(sr)


def mux_audio(video_path: str | os.PathLike, wav_path: str | os.PathLike, out_path: str | os.PathLike,
              bitrate: str = "192k") -> Path:
    """Copy the video stream of `video_path`, replace its audio with `wav_path` (AAC), stop at the shorter."""
    video_path, wav_path, out_path = Path(video_path), Path(wav_path), Path(out_path)
    for p in (video_path, wav_path):
        if not p.is_file():
            raise DataError(f"no such media file: {p}")
    with atomic_path(out_path) as tmp:
        proc = run_ffmpeg([
            "-y", "-i", file_arg(video_path), "-i", file_arg(wav_path), "-map", "0:v:0", "-map", "1:a:0",
            "-c:v", "copy", "-c:a", "aac", "-b:a", bitrate, "-shortest", "-f", muxer_for(out_path), file_arg(tmp),
        ])
        if proc.returncode != 0:  # ffmpeg's text may say the output is the problem (disk full, read-only)
            raise_output_error(RuntimeError(last_error_line(proc.stderr)), out_path)
            raise DataError(f"cannot mux {wav_path} into {video_path}: {last_error_line(proc.stderr)}")
    return out_path
