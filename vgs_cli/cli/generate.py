"""`vgs generate SOURCE -o OUT --model DIR`: parse options, call pipeline.generate*, print what was written."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Iterator, Optional

import typer

from vgs_cli.cli import checks
from vgs_cli.errors import Interrupted, VgsError


def generate(
    source: Path = typer.Argument(..., help="A video file, a folder of videos, or a shard folder (batch mode)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output wav (one video) or output folder (batch mode)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Folder (or run folders) with the codebook, transformer and vocoder checkpoints (default: $VGS_MODEL, else the default model: `vgs models`)."),
    transformer: Optional[Path] = typer.Option(None, "--transformer", help="Transformer checkpoint (overrides --model)."),
    codebook: Optional[Path] = typer.Option(None, "--codebook", help="Codebook checkpoint (default: the transformer's)."),
    base: Optional[Path] = typer.Option(None, "--base", help="With a LoRA adapter as --transformer: its base transformer (default: the path the adapter recorded; the SHA-256 must match)."),
    vocoder_ckpt: Optional[Path] = typer.Option(None, "--vocoder-ckpt", help="MelGAN vocoder checkpoint (overrides --model)."),
    vocoder: str = typer.Option("melgan", "--vocoder", help="melgan or griffinlim."),
    samples: int = typer.Option(1, "--samples", "-n", min=1, help="Samples per video (out_1.wav ... when > 1)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Softmax temperature (> 0)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="Sample among the k >= 1 most likely codes (default: all)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus sampling mass (0-1]."),
    greedy: bool = typer.Option(False, "--greedy", help="Always take the most likely code."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same sound."),
    class_name: Optional[str] = typer.Option(None, "--class", help="Class name for class-conditioned transformers."),
    mux: Optional[Path] = typer.Option(None, "--mux", help="Also write the video with the generated sound track (mp4)."),
    spectrogram: Optional[Path] = typer.Option(None, "--spectrogram", help="Also write the generated mel spectrogram(s) as PNG."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="One video: also write an mp4 that plays the clip "
                                           "once per sample with its sound and a caption (sample k of N, seed S)."),
    split: str = typer.Option("test", "--split", help="Shard split to generate for (batch mode on shards)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Clips sampled together (batch mode on shards)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N clips of the split."),
    visual_weights: Optional[Path] = typer.Option(None, "--visual-weights", help="Weights file of the visual feature extractor."),
    device: Optional[str] = typer.Option(None, "--device", callback=checks.device, help="cpu or cuda (default: cuda when available)."),
    gl_iters: int = typer.Option(32, "--gl-iters", min=1, help="Griffin-Lim iterations (with --vocoder griffinlim)."),
    quantize: str = typer.Option("none", "--quantize", help="none or int8: int8 transformer weights on the CPU "
                                 "(about 2x faster sampling; its measured effect on the output: README)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (GPU): sample the transformer "
                                  "under autocast with the key/value cache in that dtype."),
    window_stride: int = typer.Option(1, "--window-stride", min=1, max=52, help="Videos longer than 9.85 s: "
                                      "code columns (0.19 s each) drawn per slide of the window; 1 = the paper, "
                                      "k = about k times faster beyond the first window, with less context."),
    shard_index: Optional[int] = typer.Option(None, "--shard-index", min=0, help="Shard splits: generate only this share "
                                              "of the clips (one job of a SLURM array; with --num-shards)."),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", min=1, help="Shard splits: the number of shares "
                                             "(jobs) the clips are split into."),
    merge: bool = typer.Option(False, "--merge", help="Shard splits: only check that OUT holds every clip's "
                               "samples (after all shards) and write OUT/samples.json; loads no model."),
    verbose: bool = typer.Option(False, "--verbose", help="Also print what the CPU offers (AVX2 / AVX-512 / VNNI / "
                                 "BF16 / AMX) and which feature and transformer path ran."),
) -> None:
    """Generate sound for a video (as long as the video), a folder of videos or a shard split.

    A shard split can be shared among processes: run under `torchrun --nproc_per_node N -m vgs_cli generate
    ...` and/or with --shard-index/--num-shards (one output folder; finished clips are skipped on a rerun)."""
    from vgs_cli.generate.batch import generate_folder, generate_video, is_shard_folder
    from vgs_cli.generate.engine import GenerateOptions, load_bundle
    from vgs_cli.loading.default_model import resolve

    if samples < 1:
        raise VgsError("--samples must be at least 1")
    if temperature <= 0:
        raise VgsError("--temperature must be > 0 (use --greedy for argmax)")
    if top_p is not None and not 0 < top_p <= 1:
        raise VgsError("--top-p must be in (0, 1]")
    if not source.exists():
        raise VgsError(f"no such file or folder: {source}")
    sharded = shard_index is not None or num_shards is not None or merge or _under_torchrun()
    if sharded and not is_shard_folder(source):
        raise VgsError("--shard-index/--num-shards, --merge and torchrun work on a shard folder "
                       f"(prepared with `vgs prepare`); {source} is not one")
    if (shard_index is None) != (num_shards is None):
        raise VgsError("--shard-index and --num-shards go together (e.g. --shard-index 0 --num-shards 4)")
    if shard_index is not None and num_shards is not None and shard_index >= num_shards:
        raise VgsError(f"--shard-index {shard_index} is outside 0..{num_shards - 1} (--num-shards {num_shards})")
    if merge:
        from vgs_cli.generate.scale import merge as merge_outputs

        m = merge_outputs(source, out, limit)
        typer.echo(f"{out}: complete, {m['clips']} {m['split']} clips x {m['samples_per_clip']} samples; "
                   f"wrote {out / 'samples.json'}" + _twice(m["written_twice"]))
        return
    opts = GenerateOptions(samples=samples, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                           seed=seed, class_name=class_name, quantize=quantize, precision=precision,
                           window_stride=window_stride)
    paths = resolve(model, transformer=transformer, codebook=codebook, vocoder_ckpt=vocoder_ckpt, vocoder=vocoder)
    paths = dataclasses.replace(paths, base=base)  # ModelPaths is frozen
    typer.echo(f"model: {paths.source or paths.transformer}")
    if compare is not None and not source.is_file():
        raise VgsError("--compare works on one video file (it plays that clip once per sample)")
    if is_shard_folder(source):
        if out.suffix.lower() == ".wav":
            raise VgsError(f"batch mode writes a folder: --out {out} looks like a file")
        with _kept_on_interrupt(out):
            _split(paths, source, out, opts, vocoder=vocoder, device=device, gl_iters=gl_iters, split=split,
                   batch_size=batch_size, limit=limit, shard=(shard_index or 0, num_shards or 1))
        return
    bundle = load_bundle(paths, vocoder=vocoder, device=device, gl_iters=gl_iters)
    weights = str(visual_weights) if visual_weights else None
    if source.is_file():
        if out.suffix.lower() != ".wav":
            raise VgsError(f"--out must be a .wav file for a single video, got {out}")
        written = generate_video(bundle, source, out, opts, mux=mux, spectrogram=spectrogram,
                                 visual_weights=weights, log=typer.echo)
        _report(bundle, opts, verbose)
        for p in written:
            typer.echo(f"wrote {p}")
        if mux is not None:
            typer.echo(f"wrote {mux}" + (" (one per sample)" if samples > 1 else ""))
        if spectrogram is not None:
            typer.echo(f"wrote {spectrogram}")
        if compare is not None:
            from vgs_cli.generate.compare import write_compare

            typer.echo(f"wrote {write_compare(source, written, compare, seed=seed)} ({len(written)} x the clip)")
        return
    if out.suffix.lower() == ".wav":
        raise VgsError(f"batch mode writes a folder: --out {out} looks like a file")
    with _kept_on_interrupt(out):
        summary = generate_folder(bundle, source, out, opts, visual_weights=weights, log=typer.echo)
    _report(bundle, opts, verbose)
    typer.echo(f"{out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


@contextlib.contextmanager
def _kept_on_interrupt(out: Path) -> Iterator[None]:
    """Ctrl-C in batch mode: every finished clip's files are complete (written atomically) and a re-run skips them."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"the finished clips in {out} are kept; re-run the same command to generate the rest") from None


def _report(bundle, opts, verbose: bool) -> None:
    """--verbose: the CPU's instruction sets and the path each stage ran (`generate.engine.speed_report`)."""
    from vgs_cli.generate.engine import speed_report

    if verbose:
        for line in speed_report(bundle, opts):
            typer.echo(line)


def _under_torchrun() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE") or 1) > 1


def _twice(ids: list[str]) -> str:
    return f" (note: {len(ids)} clips were generated more than once, e.g. {ids[0]})" if ids else ""


def _split(paths, source: Path, out: Path, opts, *, vocoder: str, device: Optional[str], gl_iters: int,
           split: str, batch_size: int, limit: Optional[int], shard: tuple[int, int]) -> None:
    """A shard split, this process's share (torchrun rank x --shard-index); rank 0 prints the check."""
    from datetime import timedelta

    from vgs_cli import dist
    from vgs_cli.generate.engine import load_bundle
    from vgs_cli.generate.scale import generate_split
    from vgs_cli.generate.workers import Worker

    # the ranks meet once, at the end: wait as long as the slowest rank may lag (not torch's 10-30 min)
    env = dist.init_distributed(device, timeout=timedelta(days=7))
    try:
        worker = Worker(env.rank, env.world_size, *shard)
        bundle = load_bundle(paths, vocoder=vocoder, device=str(env.device), gl_iters=gl_iters)
        s = generate_split(bundle, source, out, opts, split=split, batch_size=batch_size, limit=limit,
                           worker=worker, log=typer.echo)
    finally:
        if env.created:
            dist.destroy()
    if env.rank != 0:
        return
    typer.echo(f"{out}: clips {s['clips']}, generated {s['generated']}, skipped {s['skipped']}"
               + (f" ({worker.count} workers)" if worker.count > 1 else ""))
    if s["complete"]:
        typer.echo(f"{out}: complete, every clip has {opts.samples} sample(s); wrote {out / 'samples.json'}"
                   + _twice(s["written_twice"]))
    else:
        typer.echo(f"{out}: {s['missing']} clips still missing (other shards' share); run `vgs generate "
                   f"{source} -o {out} --merge` once every shard is done")
