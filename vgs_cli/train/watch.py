"""Training you can watch: TensorBoard event files and `curves.png` beside `metrics.jsonl` (rank 0 only).

    watch = Watch(run_dir, enabled=is_main)   # run_dir/tb/: `tensorboard --logdir runs/` shows every run
    watch.scalars(row)                         # every number of a metrics.jsonl row, as `<split>/<key>`
    watch.after_validation(step)               # the step's samples/ PNGs and wavs, curves.png redrawn, flushed
    summarize(run_dir / "metrics.jsonl")       # {split: {key: {"last", "best", "best_step"}}} for `vgs info`

The images and sounds are the ones the stage already writes to `samples/` at a validation (their names carry
`step<NNNNNNN>`): codebook reconstructions, vocoder wavs and their mels. TensorBoard is a core dependency
(README: watching a run should not need an extra); its writer comes through `torch.utils.tensorboard`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vgs_cli.fsutil import atomic_path

SKIP = frozenset({"step", "split", "best", "epoch"})
# metrics where larger is better (everything else is a loss, an error or a rate that `best` takes the min of)
HIGHER = ("acc", "perplexity", "usage", "samples_per_s", "isc")


class Watch:
    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir, self.tb = Path(run_dir), None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tb"))

    def scalars(self, row: dict[str, Any]) -> None:
        if self.tb is None:
            return
        split = row.get("split", "train")
        for key, value in row.items():
            if key not in ("step", "split") and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.tb.add_scalar(f"{split}/{key}", value, row["step"])

    def after_validation(self, step: int) -> None:
        """Mirror this step's sample files to TensorBoard, redraw curves.png, flush (so a live board sees it)."""
        if self.tb is None:
            return
        for path in sorted((self.run_dir / "samples").glob(f"*step{step:07d}*")):
            try:
                if path.suffix == ".png":
                    from PIL import Image

                    image = np.asarray(Image.open(path).convert("RGB"))
                    self.tb.add_image(f"samples/{_tag(path, step)}", image, step, dataformats="HWC")
                elif path.suffix == ".wav":
                    import soundfile as sf

                    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
                    self.tb.add_audio(f"samples/{_tag(path, step)}", wav.mean(axis=1)[None], step, sample_rate=sr)
            except (OSError, ValueError):
                continue  # a sample file that cannot be read is no reason to stop training
        draw_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _tag(path: Path, step: int) -> str:
    """`reconstructions_step0000004.png` -> `reconstructions`; `step0000004_chirp_0001.wav` -> `chirp_0001`."""
    return path.stem.replace(f"step{step:07d}", "").strip("_") or path.stem


def read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
    return events


def _curve_keys(events: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for e in events:
        for k, v in e.items():
            if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool) and "loss" in k:
                keys.setdefault(k)
    return list(keys)[:6]


def draw_curves(metrics: Path, out: Path) -> Path | None:
    """curves.png: one panel per loss in metrics.jsonl, train and valid against the step (None: nothing yet)."""
    events = read_events(metrics)
    keys = _curve_keys(events)
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for split, style in (("train", "-"), ("valid", "o-")):
            pts = [(e["step"], e[key]) for e in events if e.get("split", "train") == split
                   and isinstance(e.get(key), (int, float)) and e[key] is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=split, markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(metrics.parent.name, fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return out


def summarize(metrics: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Per split and metric: the last value, the best (min, or max for accuracies/perplexity/usage) and its step."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for e in read_events(metrics):
        split = str(e.get("split", "train"))
        for k, v in e.items():
            if k in SKIP or not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                continue
            row = out.setdefault(split, {}).setdefault(k, {"last": v, "best": v, "best_step": e.get("step")})
            row["last"] = v
            better = v > row["best"] if any(h in k for h in HIGHER) else v < row["best"]
            if better:
                row["best"], row["best_step"] = v, e.get("step")
    return out
