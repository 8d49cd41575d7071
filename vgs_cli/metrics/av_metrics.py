"""The audio-visual metrics of the av-benchmark protocol: DeSync (Synchformer) and IB-score (ImageBind-huge).

    desync_scores(pairs, weights_dir=None, device="cpu") -> [{"desync": s, "windows": [{"start_s", "offset_s"}]}]
    ib_scores(pairs, weights_dir=None, device="cpu")     -> [{"ib": cos, "windows": [{"start_s", "ib"}]}]

Each pair is a ground-truth video (its frames) and a generated audio file; the result lists follow the
pairs' order. `vgs eval` (metrics/evaluate.py) pairs the files and aggregates; this module only scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AVPair:
    key: str  # clip id (pairing key)
    sample: str  # the fake audio file's name (one clip can have several samples)
    video: Path  # the source video (ground-truth frames)
    audio: Path  # the generated audio file


def desync_scores(pairs: Sequence[AVPair], *, weights_dir: Path | None, device: str,
                  batch_size: int = 8) -> list[dict]:
    """Per pair, in order: {"desync": float seconds, "windows": [{"start_s": float, "offset_s": float}, ...]}.

    "desync" is the mean |offset| over the windows (av-benchmark: the first and the last 4.8-s window)."""
    raise NotImplementedError("DeSync is being written (issue 26)")


def ib_scores(pairs: Sequence[AVPair], *, weights_dir: Path | None, device: str,
              batch_size: int = 8) -> list[dict]:
    """Per pair, in order: {"ib": float cosine, "windows": [{"start_s": float, "ib": float}, ...]}."""
    raise NotImplementedError("IB-score is being written (issue 26)")
