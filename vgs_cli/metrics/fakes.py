"""The "fake" side of `vgs eval`: a folder of generated (or reconstructed, or any system's) sounds.

Accepted files (anywhere below the folder; hidden files and folders are skipped):
- `<clip_id>_sample_<k>.npy` / `<clip_id>.npy`: mel spectrograms `[80, T]` (or `[1, 80, T]`) on the [0, 1]
  scale, T >= 848 (centre-cropped to 848), as `vgs generate` and `vgs codec reconstruct` write them;
- `.wav` / `.flac` / `.ogg`: any sample rate and channel count; resampled to 22050 Hz mono, padded/trimmed
  to 10 s and turned into the paper's mel (`audio.spec.clip_mel`), then centre-cropped.
When both a mel and a wav exist for one name, `kind="auto"` scores the mel (what the paper evaluates).

Pairing with real clips (MKL) uses the reference's rule: strip `_mel` / `_sample_<k>` from the stem. A
fake in a sub-folder also tries `<sub-folder>/<stem>` (VAS ids are `<class>/<video_id>`) and, for the
reference's `cls_<i>` folders, `<i-th class in sorted order>/<stem>`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from vgs_cli.audio.spec import clip_mel, crop_frames
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import DataError
from vgs_cli.metrics.mkl import clip_key

MEL_EXT = (".npy",)
WAV_EXT = (".wav", ".flac", ".ogg")
KINDS = ("auto", "mel", "wav")
_CLS_DIR = re.compile(r"^cls_(\d+)$")
# [0, 1] mels from a decoder may overshoot a little; values far outside mean a [-1, 1] or dB file
RANGE_SLACK = 0.25


@dataclass(frozen=True)
class FakeItem:
    path: Path
    kind: str  # "mel" or "wav"
    rel: str  # path relative to the folder without the file extension, posix


def scan_fakes(folder: str | Path, kind: str = "auto") -> list[FakeItem]:
    """Every usable file below `folder`, sorted by relative path; one per name (mel preferred in auto)."""
    folder = Path(folder)
    if kind not in KINDS:
        raise DataError(f"--fake-kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not folder.is_dir():
        raise DataError(f"fake folder not found: {folder}")
    by_name: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        suffix = path.suffix.lower()
        found = "mel" if suffix in MEL_EXT else "wav" if suffix in WAV_EXT else None
        if found is not None:
            by_name.setdefault(rel.with_suffix("").as_posix(), {})[found] = path
    items = []
    for name, files in sorted(by_name.items()):
        pick = "mel" if "mel" in files and kind in ("auto", "mel") else "wav" if kind in ("auto", "wav") else None
        if pick is not None and pick in files:
            items.append(FakeItem(files[pick], pick, Path(name).as_posix()))
    if not items:
        what = {"auto": ".npy mels or audio files", "mel": ".npy mels", "wav": "audio files"}[kind]
        raise DataError(f"{folder}: no {what} found (expected <clip_id>_sample_<k>.npy / .wav)")
    return items


def check_wav_fakes(items: Sequence[FakeItem], warn: Callable[[str], None] | None = None) -> None:
    """Audio fakes must cover the classifier's window (848 frames = 9.85 s; the real clips are 10 s): a
    shorter one would be zero-padded and scored as mostly silence, so it is refused. Another sample rate is
    resampled to 22050 Hz, with one note saying so."""
    import soundfile as sf

    need = SPEC.model_frames * SPEC.hop_length / SPEC.sample_rate
    rates: dict[int, int] = {}
    for it in (i for i in items if i.kind == "wav"):
        try:
            info = sf.info(str(it.path))
        except Exception as exc:  # soundfile's own error types
            raise DataError(f"cannot read audio file {it.path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        if info.duration < need - 1e-3:
            raise DataError(f"{it.path}: {info.duration:.2f} s of sound, but the real clips are {SPEC.duration_s:g} s "
                            f"and the classifier scores {need:.2f} s (generate for the shard split: "
                            "`vgs generate SHARDS -o OUT --split SPLIT`)")
        if int(info.samplerate) != SPEC.sample_rate:
            rates[int(info.samplerate)] = rates.get(int(info.samplerate), 0) + 1
    for sr, n in rates.items():
        (warn or _note)(f"note: {n} fake wav(s) are {sr} Hz; they are resampled to {SPEC.sample_rate} Hz, "
                        "the real clips' rate")


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_fake_mel(item: FakeItem) -> torch.Tensor:
    """The 848-frame centre crop `Tensor[80, 848]` on [0, 1] of one fake file."""
    if item.kind == "mel":
        try:
            mel = np.load(item.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{item.path}: not a readable .npy mel ({exc})") from None
        if mel.ndim == 3 and mel.shape[0] == 1:
            mel = mel[0]
        if mel.ndim != 2 or mel.shape[0] != SPEC.n_mels:
            raise DataError(f"{item.path}: expected a mel [{SPEC.n_mels}, T], got shape {list(mel.shape)}")
        if mel.size and (np.nanmin(mel) < -RANGE_SLACK or np.nanmax(mel) > 1 + RANGE_SLACK
                         or not np.isfinite(mel).all()):
            raise DataError(f"{item.path}: mel values must be on the [0, 1] scale "
                            f"(found {np.nanmin(mel):.3g} .. {np.nanmax(mel):.3g})")
        mel_t = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))
    else:
        from vgs_cli.audio.io import read_wav

        wav, _ = read_wav(item.path, SPEC.sample_rate)
        mel_t = clip_mel(torch.from_numpy(wav))
    if mel_t.shape[-1] < SPEC.model_frames:
        raise DataError(f"{item.path}: {mel_t.shape[-1]} frames, need at least {SPEC.model_frames}")
    return crop_frames(mel_t, SPEC.model_frames, "center")


def _candidates(rel: str, classes: Sequence[str]) -> list[str]:
    """Real-id spellings a fake at relative path `rel` (no extension) may refer to, most specific first."""
    parts = rel.split("/")
    key = clip_key(parts[-1])
    out = []
    if len(parts) > 1:
        parent = parts[-2]
        out.append(f"{parent}/{key}")
        m = _CLS_DIR.match(parent)
        ordered = sorted(classes)
        if m and int(m.group(1)) < len(ordered):
            out.append(f"{ordered[int(m.group(1))]}/{key}")
    out.append(key)
    return out


def match_real_ids(items: Sequence[FakeItem], real_ids: Sequence[str], classes: Sequence[str] = ()) -> list[str | None]:
    """The real clip id each fake pairs with (None = no match). Real ids are also reachable by their
    base name (after the last `/`) and with `/` replaced by `_`, when those spellings are unambiguous."""
    lookup: dict[str, str] = {rid: rid for rid in real_ids}
    aliases: dict[str, set[str]] = {}
    for rid in real_ids:
        for alias in (rid.rsplit("/", 1)[-1], rid.replace("/", "_")):
            aliases.setdefault(alias, set()).add(rid)
    for alias, owners in aliases.items():
        if len(owners) == 1 and alias not in lookup:
            lookup[alias] = next(iter(owners))
    out: list[str | None] = []
    for item in items:
        out.append(next((lookup[c] for c in _candidates(item.rel, classes) if c in lookup), None))
    return out
