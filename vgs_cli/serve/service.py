"""The warm generation service behind `vgs serve`: no gradio here; the page and the HTTP API call it.

    svc = Service(load_bundle(resolve_models("runs"), vocoder="melgan"), Path("serve_out"), Limits())
    svc.calibrate()                                   # one 1-s warm-up request: measured speeds
    svc.estimate(12.0, samples=2)                     # -> Estimate(seconds, tokens), before a request
    result = svc.generate("clip.mp4", Settings(samples=2, seed=0), report=lambda frac, msg: print(msg))

A request runs exactly `generate.batch.generate_video` (what `vgs generate VIDEO -o out.wav --mux ...
--spectrogram ...` runs), so the same seed and settings give the same wav as the CLI. Progress comes from
two taps that change no numbers: a forward hook on the GPT (one forward = one sampled token for every row)
and a vocoder wrapper that reports when decoding has finished and vocoding starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vgs_cli.audio.io import load_audio, probe
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import DataError, VgsError
from vgs_cli.generate.batch import generate_video, numbered
from vgs_cli.generate.engine import Bundle, GenerateOptions, sampling_gpt, steps_for_samples, video_duration

Report = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)
MAX_SAMPLES = 10


def _quiet(fraction: float, message: str) -> None:
    pass


@dataclass(frozen=True)
class Limits:
    max_seconds: float = 600.0  # longest video accepted
    max_upload_mb: float = 200.0
    keep_minutes: float = 60.0  # uploads and results older than this are deleted


@dataclass(frozen=True)
class Settings:
    """One request's settings (the page's controls; `vgs generate`'s options of the same names)."""

    samples: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    class_name: str | None = None
    vocoder: str = "melgan"

    def options(self, **speed: str) -> GenerateOptions:
        """`speed`: the server-wide quantize/precision (fixed at start-up: the GPT is quantized once)."""
        return GenerateOptions(samples=self.samples, temperature=self.temperature, top_k=self.top_k,
                               top_p=self.top_p, seed=self.seed, class_name=self.class_name, **speed)


@dataclass(frozen=True)
class Speeds:
    """Measured on this server (the warm-up, then the latest request)."""

    s_per_frame: float  # visual features, per video frame at 21.5 fps
    s_per_token: float  # sampling, per code token per sample (5 tokens per 16 mel frames)
    s_per_audio_s: float  # decoding + vocoding + writing, per second of audio per sample

    @property
    def tokens_per_s(self) -> float:
        return 1.0 / max(self.s_per_token, 1e-9)


@dataclass(frozen=True)
class Estimate:
    seconds: float
    tokens: int


@dataclass
class Result:
    folder: Path
    wavs: list[Path]
    videos: list[Path]  # the input video with each sample as its sound track
    spectrogram: Path  # the generated mel(s), one panel per sample
    real_spectrogram: Path | None  # the video's own sound, when it has one
    seconds: float  # the video's (and each wav's) length
    elapsed: float
    timings: dict[str, float]


class _ReportingVocoder:
    """The request's vocoder, telling the progress bar when decoding is over and when the audio is done."""

    def __init__(self, inner, before: Callable[[], None], after: Callable[[], None]):
        self.inner, self.before, self.after = inner, before, after
        self.name, self.sample_rate, self.hop_length = inner.name, inner.sample_rate, inner.hop_length

    def vocode(self, mel01):
        self.before()
        wav = self.inner.vocode(mel01)
        self.after()
        return wav


class Service:
    def __init__(self, bundle: Bundle, out_dir: Path, limits: Limits = Limits(), *, gl_iters: int = 32,
                 visual_weights: str | None = None, quantize: str = "none", precision: str = "fp32"):
        self.bundle, self.limits, self.gl_iters, self.visual_weights = bundle, limits, gl_iters, visual_weights
        self.speed = _speed_options(bundle, quantize, precision)
        self.out_dir = Path(out_dir)
        self.requests_dir = self.out_dir / "requests"
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        self._vocoders = {bundle.vocoder.name: bundle.vocoder}
        self.speeds: Speeds | None = None
        self._local = threading.local()  # the token callback of the request running in this thread
        self._using: Counter[Path] = Counter()  # files and folders of running requests: never cleaned
        self._using_lock = threading.Lock()
        bundle.gpt.register_forward_hook(self._on_forward)  # after quantizing: that may swap the GPT's layers

    # ------------------------------------------------------------------------------------------ what it offers
    @property
    def vocoders(self) -> list[str]:
        """The loaded vocoder first; Griffin-Lim is always possible (no weights)."""
        return list(dict.fromkeys([self.bundle.vocoder.name, "griffinlim"]))

    @property
    def classes(self) -> list[str]:
        return list(self.bundle.extra.get("classes") or []) if self.bundle.gpt.cfg.uses_class else []

    def _vocoder(self, name: str):
        if name not in self._vocoders:
            from vgs_cli.generate.vocode import load_vocoder

            self._vocoders[name] = load_vocoder(name, None, device=self.bundle.device, n_iter=self.gl_iters)
        return self._vocoders[name]

    # ------------------------------------------------------------------------------------------------ checks
    def check_settings(self, s: Settings) -> None:
        if not 1 <= s.samples <= MAX_SAMPLES:
            raise VgsError(f"samples must be 1-{MAX_SAMPLES}, got {s.samples}")
        if not s.temperature > 0:
            raise VgsError(f"temperature must be > 0, got {s.temperature}")
        if s.top_k is not None and s.top_k < 1:
            raise VgsError(f"top-k must be at least 1 (or empty for all codes), got {s.top_k}")
        if s.top_p is not None and not 0 < s.top_p <= 1:
            raise VgsError(f"top-p must be in (0, 1], got {s.top_p}")
        if s.vocoder not in self.vocoders:
            raise VgsError(f"unknown vocoder {s.vocoder!r} (this server has {', '.join(self.vocoders)})")
        if self.classes and s.class_name not in self.classes:
            raise VgsError(f"this model is class-conditioned: pick a class ({', '.join(self.classes[:12])})")

    def check_video(self, path: str | Path) -> float:
        """The video's length in seconds, or a one-line VgsError saying what is wrong with the upload."""
        path = Path(path)
        name = path.name
        if not path.is_file():
            raise VgsError(f"{name}: the upload is gone (it may have expired); upload it again")
        mb = path.stat().st_size / 2**20
        if mb > self.limits.max_upload_mb:
            raise VgsError(f"{name} is {mb:.1f} MB; this server takes uploads up to {self.limits.max_upload_mb:g} MB "
                           "(--max-upload-mb)")
        try:
            info = probe(path)
        except DataError:
            raise VgsError(f"{name} is not a video file that ffmpeg can read; upload a video (mp4, mov, webm, ...)") from None
        if not info.has_video:
            raise VgsError(f"{name} has no video stream (an audio-only file?); upload a video")
        seconds = video_duration(path)
        if seconds > self.limits.max_seconds:
            raise VgsError(f"{name} is {seconds:.0f} s long; this server takes videos up to "
                           f"{self.limits.max_seconds:g} s (--max-seconds): cut it shorter")
        return seconds

    # ------------------------------------------------------------------------------------------- estimate
    def estimate(self, seconds: float, samples: int = 1) -> Estimate | None:
        """Expected wall time of a request from the measured speeds (None before any measurement)."""
        tokens = self._tokens(int(round(seconds * SPEC.sample_rate)))
        if self.speeds is None:
            return None
        sp = self.speeds
        frames = seconds * SPEC.fps if self.bundle.gpt.cfg.uses_feats else 0.0
        # linear in samples: an upper bound (the samples are one batch, which costs less than N runs)
        total = frames * sp.s_per_frame + samples * (tokens * sp.s_per_token + seconds * sp.s_per_audio_s)
        return Estimate(total, tokens)

    def _tokens(self, n_audio: int) -> int:
        """Code tokens per sample for `n_audio` samples of sound (code columns x rows per column)."""
        cfg = self.bundle.gpt.cfg
        return steps_for_samples(n_audio, cfg) * cfg.grid[0]

    # ------------------------------------------------------------------------------------------- in use
    @contextlib.contextmanager
    def using(self, *paths: Path) -> Iterator[None]:
        """Mark `paths` in use (the cleanup skips them and what holds them) while the block runs."""
        held = [Path(p).resolve() for p in paths]
        with self._using_lock:
            self._using.update(held)
        try:
            yield
        finally:
            with self._using_lock:
                self._using.subtract(held)
                self._using = +self._using  # drop the zero counts

    def in_use(self) -> set[Path]:
        with self._using_lock:
            return set(self._using)

    @property
    def busy(self) -> bool:
        """A request is running."""
        return bool(self.in_use())

    # ------------------------------------------------------------------------------------------- generate
    def _on_forward(self, module, args, output) -> None:
        callback = getattr(self._local, "on_token", None)
        if callback is not None:
            callback()

    def generate(self, video: str | Path, settings: Settings, report: Report = _quiet) -> Result:
        """Sound for one video: wav(s), the spectrogram PNG(s) and the muxed mp4(s) in a fresh request folder."""
        self.check_settings(settings)
        video = Path(video)
        folder = self.requests_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        # the upload and the results are in use until the request is over: the cleanup leaves them alone
        with self.using(video, folder):
            return self._generate(video, folder, settings, report)

    def _generate(self, video: Path, folder: Path, settings: Settings, report: Report) -> Result:
        seconds = self.check_video(video)
        folder.mkdir(parents=True)
        n_audio = int(round(seconds * SPEC.sample_rate))
        tokens = self._tokens(n_audio)
        t0 = time.perf_counter()
        marks: dict[str, float] = {}
        count = 0
        every = max(1, tokens // 50)  # ~50 progress updates, whatever the length

        def on_token() -> None:
            nonlocal count
            if count == 0:
                marks["features"] = time.perf_counter()
            count += 1
            if count % every == 0 or count == tokens:
                report(0.15 + 0.65 * count / tokens, f"sampling: {count}/{tokens} tokens")
            if count == tokens:
                marks["sampling"] = time.perf_counter()
                report(0.8, "decoding: codes -> spectrogram")

        def before_vocoding() -> None:
            marks["decoding"] = time.perf_counter()
            report(0.85, f"vocoding: spectrogram -> waveform ({settings.vocoder})")

        def after_vocoding() -> None:
            report(0.95, "writing the wav, the spectrogram and the video with its new sound track")

        voc = _ReportingVocoder(self._vocoder(settings.vocoder), before_vocoding, after_vocoding)
        bundle = dataclasses.replace(self.bundle, vocoder=voc)
        what = "features: reading the video's frames" if self.bundle.gpt.cfg.uses_feats else "starting"
        report(0.02, what)
        self._local.on_token = on_token
        try:
            wavs = generate_video(bundle, video, folder / "sound.wav", settings.options(**self.speed), mux=folder / "video.mp4",
                                  spectrogram=folder / "spectrogram.png", visual_weights=self.visual_weights,
                                  log=lambda msg: None)
        finally:
            self._local.on_token = None
        end = time.perf_counter()
        real = self._real_spectrogram(video, folder / "real.png", seconds)
        timings = {"features": marks.get("features", t0) - t0,
                   "sampling": marks.get("sampling", end) - marks.get("features", t0),
                   "decoding": marks.get("decoding", end) - marks.get("sampling", end),
                   "vocoding+writing": end - marks.get("decoding", end)}
        self._update_speeds(seconds, tokens, settings.samples, timings)
        videos = [numbered(folder / "video.mp4", k, len(wavs)) for k in range(len(wavs))]
        return Result(folder, wavs, videos, folder / "spectrogram.png", real, seconds, end - t0, timings)

    def compare(self, folder: str | Path, seed: int) -> Path:
        """`vgs generate --compare` for a finished request with several samples: `folder/compare.mp4`, the clip
        once per sample with that sample's sound and a caption (the page's "compare" button)."""
        from vgs_cli.generate.compare import write_compare

        folder = Path(folder).resolve()
        if folder.parent != self.requests_dir.resolve():
            raise VgsError("compare works on this server's own request folders")
        wavs = sorted(folder.glob("sound_*.wav"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        clip = folder / "video_1.mp4"
        if len(wavs) < 2 or not clip.is_file():
            raise VgsError("nothing to compare: the request's files are gone (cleaned up after --keep-minutes) or "
                           "it made one sample; generate again with 2 or more samples")
        with self.using(folder):
            return write_compare(clip, wavs, folder / "compare.mp4", seed=seed)

    def _real_spectrogram(self, video: Path, out: Path, seconds: float) -> Path | None:
        """The mel of the video's own sound track (same scale as the generated one), or None without one."""
        from vgs_cli.audio import spec
        from vgs_cli.audio.plot import save_mel_png

        try:
            wav = load_audio(video, duration_s=seconds)
        except DataError:
            return None
        if wav is None or not len(wav):
            return None
        save_mel_png(out, [("the video's own sound", spec.mel_spectrogram(np.asarray(wav)).numpy())])
        return out

    def _update_speeds(self, seconds: float, tokens: int, samples: int, t: dict[str, float]) -> None:
        frames = max(1.0, seconds * SPEC.fps)
        self.speeds = Speeds(s_per_frame=t["features"] / frames, s_per_token=t["sampling"] / (tokens * samples),
                             s_per_audio_s=(t["decoding"] + t["vocoding+writing"]) / (max(seconds, 0.1) * samples))

    def calibrate(self, seconds: float = 1.0) -> Speeds:
        """Warm-up requests on a synthetic clip: load the feature extractor, then measure the speeds."""
        from vgs_cli.data.video import write_video

        # a fresh folder of its own (in the server's tmp/): removing it afterwards cannot touch anyone's files
        clip = Path(tempfile.mkdtemp(prefix="vgs-warmup-")) / "warmup.mp4"
        n = max(2, int(round(seconds * 25)))
        frames = np.zeros((n, 64, 64, 3), np.uint8)
        frames[:, :, :, 0] = (np.arange(n) * 9 % 255)[:, None, None]
        write_video(clip, frames, 25.0)
        settings = Settings(vocoder=self.bundle.vocoder.name, class_name=(self.classes or [None])[0])
        try:
            for _ in range(2):  # the first run pays one-off costs (weights paged in, allocator, ffmpeg cache)
                shutil.rmtree(self.generate(clip, settings).folder, ignore_errors=True)
        finally:
            shutil.rmtree(clip.parent, ignore_errors=True)
        assert self.speeds is not None
        return self.speeds

    # -------------------------------------------------------------------------------------------- cleanup
    def cleanup(self, folders: list[Path], now: float | None = None, keep: set[Path] = frozenset()) -> int:
        """Delete the entries of `folders` (request folders, gradio's uploads) older than --keep-minutes, except
        those holding a file in use: a running request's (`in_use`) or one of `keep` (queued requests' uploads,
        the examples' copies)."""
        cutoff = (now if now is not None else time.time()) - self.limits.keep_minutes * 60
        held = {Path(p).resolve() for p in keep}
        held |= self.in_use()  # read last: a queued request that started meanwhile is in one of the two
        removed = 0
        for root in folders:
            if not root.is_dir():
                continue
            for entry in root.iterdir():
                try:
                    real = entry.resolve()
                    if any(p == real or p.is_relative_to(real) for p in held) or _newest_mtime(entry) >= cutoff:
                        continue
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                    removed += 1
                except FileNotFoundError:  # removed meanwhile (gradio's own cache cleaner)
                    continue
        return removed


def _speed_options(bundle: Bundle, quantize: str, precision: str) -> dict[str, str]:
    """GenerateOptions' quantize/precision for every request; an int8 GPT is made once, here."""
    GenerateOptions(quantize=quantize, precision=precision)  # checks the pair (one-line VgsError)
    if quantize != "none":
        sampling_gpt(bundle, quantize)  # in place; every request's bundle copy then says so
    return {"quantize": quantize, "precision": precision}


def _newest_mtime(path: Path) -> float:
    if path.is_file():
        return path.stat().st_mtime
    times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
    return max(times, default=path.stat().st_mtime)
