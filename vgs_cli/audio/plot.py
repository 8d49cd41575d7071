"""Spectrogram pictures (PNG) for run folders, `vgs generate --spectrogram` and the codec."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from vgs_cli.fsutil import atomic_path


def save_mel_png(path: str | os.PathLike, panels: Sequence[tuple[str, np.ndarray]], dpi: int = 80) -> None:
    """One row per `(title, mel)` panel; `mel` is `[80, T]` on [0, 1] (low frequencies at the bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels)), squeeze=False)
    for ax, (title, mel) in zip(axes[:, 0], panels, strict=True):
        ax.imshow(np.asarray(mel), origin="lower", aspect="auto", vmin=0.0, vmax=1.0, cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame (256 samples)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
