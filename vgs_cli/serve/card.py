"""The model card the page shows: which checkpoints are loaded (stage, preset, condition, steps, file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vgs_cli.config import codebook, transformer, vocoder
from vgs_cli.generate.engine import Bundle
from vgs_cli.loading.models import peek_checkpoint

# stage -> the presets a checkpoint's model config is compared against (imported: the layer check sees them)
_PRESETS: dict[str, dict[str, Any]] = {"codebook": codebook.PRESETS, "transformer": transformer.PRESETS,
                                       "vocoder": vocoder.PRESETS}


def _peek(path: Path) -> dict[str, Any]:
    """The checkpoint's header without reading its tensors (memory-mapped)."""
    ckpt = peek_checkpoint(path) or {}
    return {k: ckpt.get(k) for k in ("stage", "config", "extra", "vgs_version")}


def preset_of(path: Path, stage: str, config: dict[str, Any] | None) -> str:
    """The run folder's recorded preset (`<run>/config.json`), else the preset whose model config matches,
    else "custom". A preset name is only a label here: the checkpoint's own config is what gets built."""
    run_config = path.parent.parent / "config.json"
    if path.parent.name == "checkpoints" and run_config.is_file():
        try:
            recorded = json.loads(run_config.read_text()).get("preset")
        except (OSError, ValueError):
            recorded = None
        if recorded:
            return str(recorded)
    if stage in _PRESETS and config:
        for name, preset in _PRESETS[stage].items():
            if preset.to_dict().get("model") == config.get("model"):
                return f"{name} (by its model size)"
    return "custom"


def model_card(bundle: Bundle) -> list[dict[str, str]]:
    """One row per loaded model: stage, preset, condition, training steps, source file."""
    rows = []
    paths = bundle.paths
    for stage, path in (("transformer", paths.transformer), ("codebook", paths.codebook), ("vocoder", paths.vocoder)):
        if path is None:
            rows.append({"stage": "vocoder", "preset": "-", "condition": "-", "steps": "-",
                         "file": "none: Griffin-Lim (no weights)"})
            continue
        head = _peek(path)
        extra = head.get("extra") or {}
        condition = "-"
        if stage == "transformer":
            condition = str(bundle.condition)
            if bundle.gpt.cfg.uses_feats:
                condition += f" ({extra.get('extractor', '?')}, {bundle.gpt.cfg.feat_frames} frames)"
        rows.append({"stage": stage, "preset": preset_of(path, stage, head.get("config")), "condition": condition,
                     "steps": str(extra.get("step", "unknown")), "file": str(path.resolve())})
    return rows


def card_markdown(rows: list[dict[str, str]], device: str) -> str:
    """The card as a Markdown table (what the page shows)."""
    lines = ["| stage | preset | condition | training steps | file |", "|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['preset']} | {r['condition']} | {r['steps']} | `{r['file']}` |" for r in rows]
    return "\n".join(lines) + f"\n\nRunning on **{device}**."
