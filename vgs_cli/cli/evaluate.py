"""`vgs eval`: argument parsing and printing; `vgs_cli.metrics.evaluate.evaluate` does the work."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vgs_cli.cli import checks


def _progress(label: str, total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"{label} clips", unit="clip", leave=False, disable=None)
    return bar.update


def evaluate(
    real: str = typer.Option(..., "--real", help="Shard folder of the real clips, optionally SHARDS:SPLIT "
                                                 "(default split: test if it has clips, else valid)."),
    fake: Path = typer.Option(..., "--fake", help="Folder of generated sounds: <clip_id>_sample_<k>.npy mels "
                                                  "[80, T>=848] on [0, 1] and/or .wav files (any system)."),
    classifier: Path = typer.Option(..., "--classifier", help="Melception (or VGGish-ish) checkpoint."),
    metrics: str = typer.Option("fid,kid,isc,mkl", "--metrics", help="Comma-separated: fid, kid, isc, mkl (or all)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results to this JSON file."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Spectrograms per classifier batch."),
    device: Optional[str] = typer.Option(None, "--device", callback=checks.device, help="cpu or cuda (default: cuda when available)."),
    fake_kind: str = typer.Option("auto", "--fake-kind", help="auto (mels when present, else audio), mel or wav."),
    isc_splits: int = typer.Option(10, "--isc-splits", min=1, help="Splits for the Inception Score."),
    kid_subsets: int = typer.Option(100, "--kid-subsets", min=1, help="Random subsets for KID."),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size", min=2, help="Items per KID subset (capped by the set sizes)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the real clips' features."),
) -> None:
    """Score generated sounds against real ones: FID, KID, ISc (on the fakes) and MKL (paired by clip id)."""
    from rich.console import Console
    from rich.table import Table

    from vgs_cli.metrics.evaluate import EvalSettings, parse_metrics
    from vgs_cli.metrics.evaluate import evaluate as run_eval

    settings = EvalSettings(metrics=parse_metrics(metrics), batch_size=batch_size, kid_subsets=kid_subsets,
                            kid_subset_size=kid_subset_size, isc_splits=isc_splits, fake_kind=fake_kind,
                            use_cache=not no_cache)
    result = run_eval(real, fake, classifier, settings, device=device, json_out=json_out, progress=_progress)

    table = Table(title=f"vgs eval: {result['n_fake']} fake vs {result['n_real']} real ({result['split']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    m = result["metrics"]
    rows = [("FID", "fid", None), ("KID", "kid_mean", "kid_std"), ("ISc", "isc_mean", "isc_std"), ("MKL", "mkl", None)]
    for label, key, std in rows:
        if key in m:
            table.add_row(label, f"{m[key]:.4f}" + (f" ± {m[std]:.4f}" if std else ""))
    console = Console()
    console.print(table)
    if "mkl" in m:
        console.print(f"MKL over {m['mkl_pairs']} pairs ({result['n_fake_matched']}/{result['n_fake']} fakes matched)")
    console.print(f"classifier {result['classifier_stage']} sha256 {result['classifier_sha256'][:16]}…"
                  + (f"; results in {json_out}" if json_out else ""))
