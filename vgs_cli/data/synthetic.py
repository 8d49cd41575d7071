"""A procedural audio-visual dataset: every class has its own picture and its own sound, in sync.

Each clip shows one coloured object on a dark background. The object is always visible (dim) so every
frame carries the class; at each event it lights up / grows / moves, and the sound event starts on exactly
that frame (onset sample = round(frame * sr / fps)). Per clip (seeded): event times and lengths, pitch,
colour shade, position, loudness, background shade. Sounds sit inside the mel band (125-7600 Hz) and differ
in spectrum and rhythm; the background is quiet pink noise (never digital silence).

Everything is vectorised numpy, so ~150 ten-second 96x96 clips (with H.264/AAC encoding) take well under
a minute on 2 cores.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vgs_cli.config.spec import SPEC
from vgs_cli.data.video import write_video
from vgs_cli.errors import DataError
from vgs_cli.fsutil import atomic_path

CLASSES = ("impact", "tone", "noise_burst", "chirp", "drum_roll", "siren")
# Colour family per class (RGB on [0, 1]); each clip jitters the shade.
_COLOURS = np.array([
    [1.00, 0.15, 0.10],  # impact: red
    [0.15, 1.00, 0.20],  # tone: green
    [0.20, 0.35, 1.00],  # noise_burst: blue
    [1.00, 0.90, 0.10],  # chirp: yellow
    [1.00, 0.15, 0.90],  # drum_roll: magenta
    [0.10, 0.90, 1.00],  # siren: cyan
])
_REST = 0.35  # brightness of the idle object
SPLITS = (("train", 0.70), ("valid", 0.15), ("test", 0.15))


@dataclass(frozen=True)
class Event:
    """One visible + audible event: starts at frame `start`, lasts `length` frames."""

    start: int
    length: int


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about a clip, drawn once from its seed (pictures and sound both read it)."""

    class_index: int
    events: tuple[Event, ...]
    colour: np.ndarray  # float[3] on [0, 1]
    background: float  # grey level on [0, 1]
    centre: tuple[float, float]  # (y, x) as fractions of the frame
    pitch: float  # Hz: the class's base frequency
    gain: float  # peak amplitude of the events


def _schedule(rng: np.random.Generator, n_frames: int, n_events: int, length: tuple[int, int],
              gap: int) -> tuple[Event, ...]:
    """`n_events` non-overlapping events (lengths in `length`, >= `gap` frames apart) placed at random."""
    lengths = rng.integers(length[0], length[1] + 1, size=n_events)
    while n_events > 1 and lengths.sum() + gap * (n_events + 1) > n_frames:
        n_events -= 1
        lengths = lengths[:n_events]
    free = max(0, n_frames - int(lengths.sum()) - gap * (n_events + 1))
    # Split the free frames into n_events + 1 random parts ("stars and bars"): sorted uniform cut points.
    cuts = np.sort(rng.integers(0, free + 1, size=n_events))
    starts = gap + cuts + np.concatenate([[0], np.cumsum(lengths[:-1] + gap)])
    return tuple(Event(int(s), int(min(ln, n_frames - s))) for s, ln in zip(starts, lengths, strict=True) if s < n_frames)


def plan_clip(class_index: int, seed: int, n_frames: int, fps: float) -> ClipPlan:
    """Draw a clip's random choices. Event counts/lengths are in seconds, converted with `fps`."""
    if not 0 <= class_index < len(CLASSES):
        raise DataError(f"class index {class_index} out of range 0..{len(CLASSES) - 1}")
    rng = np.random.default_rng([int(seed), int(class_index)])
    name = CLASSES[class_index]
    sec = {  # (events min/max, length s min/max, gap s)
        "impact": ((3, 8), (0.25, 0.40), 0.35),
        "tone": ((2, 4), (0.50, 1.50), 0.40),
        "noise_burst": ((3, 7), (0.15, 0.50), 0.35),
        "chirp": ((2, 4), (0.60, 1.20), 0.40),
        "drum_roll": ((2, 3), (0.50, 1.20), 0.50),
        "siren": ((1, 3), (1.00, 2.50), 0.50),
    }[name]
    (lo, hi), (ls, hs), gap = sec
    n_events = int(rng.integers(lo, hi + 1))
    length = (max(1, round(ls * fps)), max(1, round(hs * fps)))
    events = _schedule(rng, n_frames, n_events, length, max(1, round(gap * fps)))
    pitch_range = {"impact": (150, 300), "tone": (400, 1000), "noise_burst": (2500, 3500), "chirp": (250, 400),
                   "drum_roll": (150, 250), "siren": (700, 1100)}[name]
    colour = np.clip(_COLOURS[class_index] + rng.uniform(-0.1, 0.1, 3), 0.0, 1.0) * rng.uniform(0.8, 1.0)
    return ClipPlan(class_index=class_index, events=events, colour=colour, background=float(rng.uniform(0.06, 0.16)),
                    centre=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
                    pitch=float(rng.uniform(*pitch_range)), gain=float(rng.uniform(0.45, 0.7)))


# ------------------------------------------------------------------------------------------- pictures

def _timeline(plan: ClipPlan, n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: activity `float[N]` on [0, 1], seconds since the event's onset and progress on [0, 1)."""
    act, tsec, prog = np.zeros(n_frames), np.zeros(n_frames), np.zeros(n_frames)
    name = CLASSES[plan.class_index]
    for ev in plan.events:
        k = np.arange(ev.length)
        sl = slice(ev.start, ev.start + ev.length)
        if name == "impact":  # a flash that decays like the sound (80 ms time constant)
            act[sl] = np.exp(-k / (0.08 * fps))
        elif name == "drum_roll":  # one bright frame per hit
            act[sl] = (k % hit_period(fps) == 0).astype(float)
        else:
            act[sl] = 1.0
        tsec[sl] = k / fps
        prog[sl] = k / ev.length
    return act, tsec, prog


def hit_period(fps: float) -> int:
    """Frames between drum-roll hits (about 9 hits per second)."""
    return max(2, round(fps / 9.0))


def _siren_rate(plan: ClipPlan) -> float:
    """Siren modulation rate in Hz (1-2 Hz, tied to the pitch; picture and sound share it)."""
    return 1.0 + (plan.pitch - 700.0) / 400.0


def _object_mask(plan: ClipPlan, act: np.ndarray, tsec: np.ndarray, prog: np.ndarray, size: int) -> np.ndarray:
    """Where the object is, per frame: `bool[N, size, size]`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # [H, W] on [0, 1)
    cy, cx = plan.centre
    a = act[:, None, None].astype(np.float32)
    on = (act > 0)[:, None, None]
    name = CLASSES[plan.class_index]
    if name == "impact":  # square that jumps in size when hit
        half = 0.07 + 0.12 * a
        return (np.abs(yy - cy) < half) & (np.abs(xx - cx) < half)
    if name == "drum_roll":  # 2x2 grid of small squares that grow on each hit
        half = 0.04 + 0.05 * a
        return (np.abs(np.abs(yy - cy) - 0.15) < half) & (np.abs(np.abs(xx - cx) - 0.15) < half)
    if name == "tone":  # circle, large while the tone sounds
        return (yy - cy) ** 2 + (xx - cx) ** 2 < (0.08 + 0.12 * a) ** 2
    if name == "siren":  # circle riding up and down with the pitch (higher pitch = higher on screen)
        y = cy - 0.25 * np.sin(2 * np.pi * _siren_rate(plan) * tsec)[:, None, None] * on
        return (yy - y) ** 2 + (xx - cx) ** 2 < 0.14 ** 2
    if name == "noise_burst":  # horizontal bar that thickens
        return np.abs(yy - cy) < 0.02 + 0.10 * a
    x = 0.1 + 0.8 * prog[:, None, None] * on  # chirp: vertical bar sweeping left to right with the pitch
    return np.abs(xx - x) < 0.03 + 0.03 * a


def render_frames(plan: ClipPlan, n_frames: int, size: int, fps: float) -> np.ndarray:
    """The clip's pictures: `uint8[N, size, size, 3]` (object over a dark grey vertical gradient)."""
    act, tsec, prog = _timeline(plan, n_frames, fps)
    mask = _object_mask(plan, act, tsec, prog, size)
    mask = np.broadcast_to(mask, (n_frames, size, size))
    level = np.where(act > 0, _REST + (1 - _REST) * act, _REST)
    obj = _to_uint8(level[:, None] * plan.colour)  # [N, 3]
    ramp = np.linspace(1.0, 1.3, size)[:, None, None]  # [H, 1, 1]: not a flat test card, still cheap to encode
    bg = _to_uint8(np.broadcast_to(plan.background * ramp, (size, size, 3)))  # [H, W, 3]
    # Composite in uint8: 4x less memory traffic than float images.
    return np.where(mask[..., None], obj[:, None, None, :], bg[None])


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- sound

def _shaped_noise(rng: np.random.Generator, n: int, sr: int, band: tuple[float, float] | None) -> np.ndarray:
    """Unit-RMS noise `float[n]`: pink (1/f power) when band is None, else white band-passed to `band` Hz."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    if band is None:
        spec *= 1.0 / np.sqrt(np.maximum(f, 20.0))
    else:
        spec *= (f >= band[0]) & (f <= band[1])
    x = np.fft.irfft(spec, n)
    return x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)


def _envelope(n: int, sr: int, attack_s: float = 0.002, release_s: float = 0.01) -> np.ndarray:
    """Linear attack/release ramps `float[n]` (short attack: the onset stays on its frame)."""
    t = np.arange(n)
    return np.minimum(1.0, np.minimum((t + 1) / max(1.0, attack_s * sr), (n - t) / max(1.0, release_s * sr)))


def _event_sound(plan: ClipPlan, ev: Event, t: np.ndarray, noise: np.ndarray, sr: int, fps: float) -> np.ndarray:
    """The class's sound for one event: `t` = seconds since onset `float[n]`, `noise` = band noise `float[n]`."""
    name, f0 = CLASSES[plan.class_index], plan.pitch
    n = len(t)
    if name == "impact":  # low thump + a broadband click
        x = np.sin(2 * np.pi * f0 * t) * np.exp(-t / 0.08) + 0.6 * noise * np.exp(-t / 0.012)
    elif name == "tone":  # steady harmonic tone
        x = sum(a * np.sin(2 * np.pi * f0 * h * t) for h, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
    elif name == "noise_burst":  # high band noise
        x = noise
    elif name == "chirp":  # exponential sweep f0 -> 12 f0 over the event
        dur, ratio = ev.length / fps, 12.0
        x = np.sin(2 * np.pi * f0 * dur / np.log(ratio) * (ratio ** (t / dur) - 1.0))
    elif name == "drum_roll":  # a hit (mid band noise + low body) at every hit frame
        period = hit_period(fps) / fps
        th = np.mod(t, period)
        x = noise * np.exp(-th / 0.03) + 0.7 * np.sin(2 * np.pi * f0 * th) * np.exp(-th / 0.05)
    else:  # siren: sinusoidal frequency modulation
        freq = f0 + 250.0 * np.sin(2 * np.pi * _siren_rate(plan) * t)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        x = np.sin(phase) + 0.3 * np.sin(2 * phase)
    x = x * _envelope(n, sr)
    return plan.gain * x / max(float(np.abs(x).max()), 1e-9)


_NOISE_BANDS = {"impact": (200.0, 7000.0), "noise_burst": (2000.0, 7000.0), "drum_roll": (600.0, 3000.0)}


def render_audio(plan: ClipPlan, n_samples: int, fps: float, sr: int, seed: int) -> np.ndarray:
    """The clip's sound: `float32[S]`; event k starts at sample round(start_frame * sr / fps)."""
    rng = np.random.default_rng([int(seed), plan.class_index, 1])
    wav = _shaped_noise(rng, n_samples, sr, None) * rng.uniform(0.002, 0.004)  # quiet, never silent
    band = _NOISE_BANDS.get(CLASSES[plan.class_index])
    noise = _shaped_noise(rng, n_samples, sr, band) if band else np.zeros(n_samples)
    for ev in plan.events:
        s0 = int(round(ev.start * sr / fps))
        s1 = min(n_samples, int(round((ev.start + ev.length) * sr / fps)))
        if s1 <= s0:
            continue
        t = np.arange(s1 - s0) / sr
        wav[s0:s1] += _event_sound(plan, ev, t, noise[s0:s1], sr, fps)
    return np.clip(wav, -0.99, 0.99).astype(np.float32)


# ---------------------------------------------------------------------------------------------- clips

def make_clip(class_index: int, seed: int, duration_s: float = SPEC.duration_s, size: int = 96,
              fps: float = SPEC.fps, sr: int = SPEC.sample_rate) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic clip: `(frames uint8[N, size, size, 3], wav float32[S])`, N = round(duration * fps)."""
    if duration_s <= 0 or size < 16 or fps <= 0 or sr <= 0:
        raise DataError(f"bad synthetic clip settings: duration {duration_s} s, size {size}, fps {fps}, sr {sr}")
    n_frames, n_samples = int(round(duration_s * fps)), int(round(duration_s * sr))
    plan = plan_clip(class_index, seed, n_frames, fps)
    return render_frames(plan, n_frames, size, fps), render_audio(plan, n_samples, fps, sr, seed)


def clip_onsets(class_index: int, seed: int, duration_s: float = SPEC.duration_s,
                fps: float = SPEC.fps) -> list[float]:
    """Onset times (s) of the events in `make_clip(class_index, seed, duration_s, fps=fps)`."""
    plan = plan_clip(class_index, seed, int(round(duration_s * fps)), fps)
    return [ev.start / fps for ev in plan.events]


# -------------------------------------------------------------------------------------------- dataset

def split_counts(n: int) -> dict[str, int]:
    """Class-stratified ~70/15/15 split sizes for a class with `n` clips (valid/test >= 1 once n >= 3)."""
    n_valid = n_test = 0
    if n >= 3:
        n_valid = max(1, int(round(n * SPLITS[1][1])))
        n_test = max(1, int(round(n * SPLITS[2][1])))
    return {"train": n - n_valid - n_test, "valid": n_valid, "test": n_test}


def assign_splits(n_per_class: list[int], seed: int) -> list[list[str]]:
    """Per class, a deterministic shuffled list of split names, one per clip (index = clip number)."""
    out = []
    for ci, n in enumerate(n_per_class):
        counts = split_counts(n)
        names = np.array(["train"] * counts["train"] + ["valid"] * counts["valid"] + ["test"] * counts["test"])
        out.append(list(np.random.default_rng([int(seed), ci, 2]).permutation(names)))
    return out


def clip_id(class_index: int, number: int) -> str:
    """`tone_0003`-style clip name."""
    return f"{CLASSES[class_index]}_{number:04d}"


def _write_one(out_dir: Path, class_index: int, number: int, clip_seed: int, duration_s: float, size: int,
               fps: float) -> Path:
    frames, wav = make_clip(class_index, clip_seed, duration_s=duration_s, size=size, fps=fps)
    path = out_dir / "videos" / CLASSES[class_index] / f"{clip_id(class_index, number)}.mp4"
    return write_video(path, frames, fps=fps, wav=wav, sr=SPEC.sample_rate, aac_coder="fast")


def write_synthetic_dataset(out_dir: str | os.PathLike, n_clips: int, duration_s: float = SPEC.duration_s,
                            seed: int = 0, size: int = 96, jobs: int = 1, fps: float = SPEC.fps) -> list[Path]:
    """Write `n_clips` clips (classes round robin) as `<out_dir>/videos/<class>/<class>_<NNNN>.mp4` + labels.csv.

    `labels.csv` has the header `path,label,split` (path relative to `out_dir`, label = class name), the
    format `vgs prepare folder --labels` reads. Same arguments -> identical clips and splits.
    Returns the video paths in clip order.
    """
    if n_clips < 1:
        raise DataError(f"n_clips must be at least 1, got {n_clips}")
    out_dir = Path(out_dir)
    jobs_list = []
    for j in range(n_clips):
        ci, number = j % len(CLASSES), j // len(CLASSES)
        clip_seed = int(np.random.SeedSequence([int(seed), j]).generate_state(1)[0])
        jobs_list.append((ci, number, clip_seed))
    if jobs == 1:
        paths = [_write_one(out_dir, ci, k, s, duration_s, size, fps) for ci, k, s in jobs_list]
    else:
        from joblib import Parallel, delayed

        # Threads suffice: the heavy parts (numpy kernels, the ffmpeg encoder process) release the GIL.
        paths = Parallel(n_jobs=jobs, prefer="threads")(
            delayed(_write_one)(out_dir, ci, k, s, duration_s, size, fps) for ci, k, s in jobs_list)
    n_per_class = [len(range(ci, n_clips, len(CLASSES))) for ci in range(len(CLASSES))]
    splits = assign_splits(n_per_class, seed)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    for path, (ci, number, _) in zip(paths, jobs_list, strict=True):
        writer.writerow([path.relative_to(out_dir).as_posix(), CLASSES[ci], splits[ci][number]])
    with atomic_path(out_dir / "labels.csv") as tmp:
        tmp.write_text(buf.getvalue())
    return list(paths)
