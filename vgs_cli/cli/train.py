"""`vgs train <stage>`: argument parsing only; `vgs_cli.train.runner.run` does the work.

Every stage accepts the same core options; a few add their own (codebook: --lpaps; transformer: --codebook,
--condition, --feat-frames). Works the same single-process and under `torchrun --nproc_per_node N`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vgs_cli.cli import checks

app = typer.Typer(no_args_is_help=True)

DATA = typer.Option(..., "--data", "-d", help="Shard folder written by `vgs prepare`.")
PRESET = typer.Option(None, "--preset", "-p", help="Config preset: vas, vggsound or tiny (default tiny for a new run; a resumed run keeps its own).")
RUN = typer.Option(None, "--run", "-o", help="Run folder (config, metrics.jsonl, checkpoints, tb/, curves.png; "
                   "default runs/<stage>). Re-running resumes.")
CONFIG = typer.Option(None, "--config", help="JSON config file (strict: unknown keys are errors).")
SET = typer.Option([], "--set", help="Override a config value, e.g. --set train.lr=2e-4 (repeatable).")
STEPS = typer.Option(None, "--steps", min=1, help="Optimiser steps (train.steps).")
BATCH = typer.Option(None, "--batch-size", "-b", min=1, help="Per-process batch size (train.batch_size).")
PRECISION = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (fp16 only on GPU).")
DEVICE = typer.Option(None, "--device", callback=checks.device, help="cpu or cuda (default: cuda when available).")
RESUME = typer.Option(False, "--resume", help="Require an existing run to resume (re-running resumes anyway).")
INIT = typer.Option(None, "--init", help="Start a NEW run from this checkpoint's weights and config (vgs or imported official; new optimiser, step 0). Not resuming.")
PATIENCE = typer.Option(None, "--patience", help="Early stopping: stop after N validations without a better valid loss (train.patience).")


def _run(stage: str, data: Path, preset: Optional[str], run: Optional[Path], config: Optional[Path], overrides: list[str],
         steps: Optional[int], batch_size: Optional[int], precision: Optional[str], device: Optional[str],
         resume: bool, init: Optional[Path] = None, patience: Optional[int] = None, **stage_opts) -> dict:
    from vgs_cli.train.runner import run as run_stage

    if run is None:
        run = Path("runs") / stage
        typer.echo(f"run folder: {run} (the default; -o to choose)")
    sets = list(overrides)
    if patience is not None:
        sets.append(f"train.patience={patience}")
    if steps is not None:
        sets.append(f"train.steps={steps}")
    if batch_size is not None:
        sets.append(f"train.batch_size={batch_size}")
    if precision is not None:
        sets.append(f'train.precision="{precision}"')
    return run_stage(stage, data=data, preset=preset, run_dir=run, config_file=config, overrides=sets,
                     device=device, require_resume=resume, init=init, **stage_opts)


@app.command("codebook")
def codebook(data: Path = DATA, preset: Optional[str] = PRESET, run: Optional[Path] = RUN, config: Optional[Path] = CONFIG,
             overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
             precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME,
             init: Optional[Path] = INIT, patience: Optional[int] = PATIENCE,
             lpaps: str = typer.Option("none", "--lpaps", help="VGGish-ish checkpoint for the perceptual loss, or none."),
             ) -> None:
    """Train the spectrogram codebook (VQGAN with L1 + LPAPS + PatchGAN)."""
    _run("codebook", data, preset, run, config, overrides, steps, batch_size, precision, device, resume, init, patience, lpaps=lpaps)


@app.command("transformer")
def transformer(data: Path = DATA, preset: Optional[str] = PRESET, run: Optional[Path] = RUN, config: Optional[Path] = CONFIG,
                overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
                precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME,
                init: Optional[Path] = INIT, patience: Optional[int] = PATIENCE,
                codebook: Path = typer.Option(..., "--codebook", help="Trained codebook checkpoint (frozen)."),
                condition: Optional[str] = typer.Option(None, "--condition", help="feats, class, feats+class or none (default: the preset's, feats; a resumed run keeps its own)."),
                feat_frames: Optional[int] = typer.Option(None, "--feat-frames", help="Visual frames in the condition: 1, 5 or 212 (default: the preset's; a resumed run keeps its own)."),
                extractor: Optional[str] = typer.Option(None, "--extractor", help="Visual features to use (default: the only/first one in the shards)."),
                sync: bool = typer.Option(False, "--sync", help="Also add each code's time-aligned visual features to its input (not in the paper; same as --set model.sync=true)."),
                lora_rank: Optional[int] = typer.Option(None, "--lora-rank", min=1, help="Train rank-R LoRA adapters on the frozen --init base; writes checkpoints/adapter.ckpt (finetune.lora_rank). Trains at 10x the base's train.lr unless --set train.lr is given."),
                lora_alpha: Optional[float] = typer.Option(None, "--lora-alpha", callback=checks.positive, help="LoRA scale alpha (update x alpha/rank; default: alpha = rank)."),
                lora_targets: Optional[str] = typer.Option(None, "--lora-targets", help="Comma-separated layer globs for LoRA (default attn.query,attn.key,attn.value,attn.proj,mlp.0,mlp.2)."),
                freeze: list[str] = typer.Option([], "--freeze", help="Freeze parameters matching this glob, e.g. 'blocks.0.*' or tok_emb.weight (repeatable)."),
                new_classes: bool = typer.Option(False, "--new-classes", help="With --init: a new class table for the data's classes, each row started at the mean of the base's class embeddings."),
                merge: bool = typer.Option(False, "--merge", help="After training, also write checkpoints/merged.ckpt: base + adapter as one plain transformer."),
                ) -> None:
    """Train the GPT that samples codebook indices given the video condition."""
    import json

    run = run or Path("runs") / "transformer"

    sets = [*overrides, *(["model.sync=true"] if sync else [])]
    if lora_rank is not None:
        sets.append(f"finetune.lora_rank={lora_rank}")
    if lora_alpha is not None:
        sets.append(f"finetune.lora_alpha={lora_alpha}")
    if lora_targets is not None:
        sets.append(f"finetune.lora_targets={json.dumps([t.strip() for t in lora_targets.split(',') if t.strip()])}")
    if freeze:
        sets.append(f"finetune.freeze={json.dumps(list(freeze))}")
    _run("transformer", data, preset, run, config, sets, steps, batch_size, precision, device, resume, init, patience,
         codebook=codebook, condition=condition, feat_frames=feat_frames, extractor=extractor, new_classes=new_classes)
    if merge:
        from vgs_cli.train.finetune import write_merged

        # best.ckpt, else last; the run's own merged.ckpt is replaced (a resumed run merges again)
        typer.echo(f"wrote {write_merged(run, run / 'checkpoints' / 'merged.ckpt', force=True)}")


@app.command("vocoder")
def vocoder(data: Path = DATA, preset: Optional[str] = PRESET, run: Optional[Path] = RUN, config: Optional[Path] = CONFIG,
            overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
            precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME,
            init: Optional[Path] = INIT, patience: Optional[int] = PATIENCE) -> None:
    """Train the MelGAN vocoder (mel -> waveform) on the stored waveforms."""
    _run("vocoder", data, preset, run, config, overrides, steps, batch_size, precision, device, resume, init, patience)


@app.command("melception")
def melception(data: Path = DATA, preset: Optional[str] = PRESET, run: Optional[Path] = RUN, config: Optional[Path] = CONFIG,
               overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
               precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME,
               init: Optional[Path] = INIT, patience: Optional[int] = PATIENCE) -> None:
    """Train Melception, the spectrogram classifier behind FID/KID/ISc/MKL."""
    _run("melception", data, preset, run, config, overrides, steps, batch_size, precision, device, resume, init, patience)


@app.command("vggishish")
def vggishish(data: Path = DATA, preset: Optional[str] = PRESET, run: Optional[Path] = RUN, config: Optional[Path] = CONFIG,
              overrides: list[str] = SET, steps: Optional[int] = STEPS, batch_size: Optional[int] = BATCH,
              precision: Optional[str] = PRECISION, device: Optional[str] = DEVICE, resume: bool = RESUME,
              init: Optional[Path] = INIT, patience: Optional[int] = PATIENCE) -> None:
    """Train VGGish-ish, the classifier whose features the LPAPS perceptual loss uses."""
    _run("vggishish", data, preset, run, config, overrides, steps, batch_size, precision, device, resume, init, patience)
