"""`vgs train <stage>`: argument parsing only; `vgs_cli.train.runner.run` does the work.

Every stage accepts the same core options; a few add their own (codebook: --lpaps; transformer: --codebook,
--condition, --feat-frames). Works the same single-process and under `torchrun --nproc_per_node N`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)

DATA = typer.Option(..., "--data", "-d", help="Shard folder written by `vgs prepare`.")
PRESET = typer.Option(None, "--preset", "-p", help="Config preset: vas, vggsound or tiny (default tiny for a new run; a resumed run keeps its own).")
RUN = typer.Option(..., "--run", "-o", help="Run folder (config, metrics.jsonl, checkpoints). Re-running resumes.")
CONFIG = typer.Option(None, "--config", help="JSON config file (strict: unknown keys are errors).")
SET = typer.Option([], "--set", help="Override a config value, e.g. --set train.lr=2e-4 (repeatable).")
STEPS = typer.Option(None, "--steps", help="Optimiser steps (train.steps).")
BATCH = typer.Option(None, "--batch-size", "-b", help="Per-process batch size (train.batch_size).")
PRECISION = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (fp16 only on GPU).")
DEVICE = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available).")
RESUME = typer.Option(False, "--resume", help="Require an existing run to resume (re-running resumes anyway).")


def _run(stage: str, data: Path, preset: Optional[str], run: Path, config: Optional[Path], overrides: list[str],
         steps: Optional[int], batch_size: Optional[int], precision: Optional[str], device: Optional[str],
         resume: bool, **stage_opts) -> None:
    from vgs_cli.train.runner import run as run_stage

    sets = list(overrides)
    if steps is not None:
        sets.append(f"train.steps={steps}")
    if batch_size is not None:
        sets.append(f"train.batch_size={batch_size}")
    if precision is not None:
        sets.append(f'train.precision="{precision}"')
    run_stage(stage, data=data, preset=preset, run_dir=run, config_file=config, overrides=sets,
              device=device, require_resume=resume, **stage_opts)


@app.command("codebook")
def codebook(data: Path = DATA, preset: Optional[str] = PRESET, run: Path = RUN, config: Optional[Path] = CONFIG,
             overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
             precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME,
             lpaps: str = typer.Option("none", "--lpaps", help="VGGish-ish checkpoint for the perceptual loss, or none."),
             ) -> None:
    """Train the spectrogram codebook (VQGAN with L1 + LPAPS + PatchGAN)."""
    _run("codebook", data, preset, run, config, overrides, steps, batch_size, precision, device, resume, lpaps=lpaps)


@app.command("transformer")
def transformer(data: Path = DATA, preset: Optional[str] = PRESET, run: Path = RUN, config: Optional[Path] = CONFIG,
                overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
                precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME,
                codebook: Path = typer.Option(..., "--codebook", help="Trained codebook checkpoint (frozen)."),
                condition: Optional[str] = typer.Option(None, "--condition", help="feats, class, feats+class or none (default: the preset's, feats; a resumed run keeps its own)."),
                feat_frames: Optional[int] = typer.Option(None, "--feat-frames", help="Visual frames in the condition: 1, 5 or 212 (default: the preset's; a resumed run keeps its own)."),
                extractor: Optional[str] = typer.Option(None, "--extractor", help="Visual features to use (default: the only/first one in the shards)."),
                sync: bool = typer.Option(False, "--sync", help="Also add each code's time-aligned visual features to its input (not in the paper; same as --set model.sync=true)."),
                ) -> None:
    """Train the GPT that samples codebook indices given the video condition."""
    if sync:
        overrides = [*overrides, "model.sync=true"]
    _run("transformer", data, preset, run, config, overrides, steps, batch_size, precision, device, resume,
         codebook=codebook, condition=condition, feat_frames=feat_frames, extractor=extractor)


@app.command("vocoder")
def vocoder(data: Path = DATA, preset: Optional[str] = PRESET, run: Path = RUN, config: Optional[Path] = CONFIG,
            overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
            precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME) -> None:
    """Train the MelGAN vocoder (mel -> waveform) on the stored waveforms."""
    _run("vocoder", data, preset, run, config, overrides, steps, batch_size, precision, device, resume)


@app.command("melception")
def melception(data: Path = DATA, preset: Optional[str] = PRESET, run: Path = RUN, config: Optional[Path] = CONFIG,
               overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
               precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME) -> None:
    """Train Melception, the spectrogram classifier behind FID/KID/ISc/MKL."""
    _run("melception", data, preset, run, config, overrides, steps, batch_size, precision, device, resume)


@app.command("vggishish")
def vggishish(data: Path = DATA, preset: Optional[str] = PRESET, run: Path = RUN, config: Optional[Path] = CONFIG,
              overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
              precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME) -> None:
    """Train VGGish-ish, the classifier whose features the LPAPS perceptual loss uses."""
    _run("vggishish", data, preset, run, config, overrides, steps, batch_size, precision, device, resume)
