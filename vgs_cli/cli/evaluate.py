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


ROWS = [("FID", "fid", None), ("KID", "kid_mean", "kid_std"), ("ISc", "isc_mean", "isc_std"), ("MKL", "mkl", None),
        ("FD_PaSST", "fd_passt", None), ("FD_PANNs", "fd_panns", None), ("FD_VGGish", "fd_vggish", None),
        ("KL_PANNs", "kl_panns", "kl_panns_ci95"), ("KL_PaSST", "kl_passt", "kl_passt_ci95"),
        ("IS_PANNs", "is_panns_mean", "is_panns_std"), ("IS_PaSST", "is_passt_mean", "is_passt_std"),
        ("IB-score", "ib", "ib_ci95"), ("DeSync (s)", "desync", "desync_ci95")]


def evaluate(
    real: str = typer.Option(..., "--real", help="Shard folder of the real clips, optionally SHARDS:SPLIT "
                                                 "(default split: test if it has clips, else valid); for today's "
                                                 "metrics also a folder of real audio files <clip_id>.wav."),
    fake: Path = typer.Option(..., "--fake", help="Folder of generated sounds: <clip_id>_sample_<k>.npy mels "
                                                  "[80, T>=848] on [0, 1] and/or .wav files (any system)."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Melception (or VGGish-ish) checkpoint "
                                              "(for fid, kid, isc, mkl)."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated: fid, kid, isc, mkl (2021); "
                                          "fd_passt, fd_panns, fd_vggish, kl_panns, kl_passt, is_panns, is_passt, "
                                          "ib, desync (av-benchmark); or all. Default: fid,kid,isc,mkl."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="av-benchmark (MMAudio's Table 1 set) or "
                                           "specvqgan (fid, kid, isc, mkl)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results to this JSON file."),
    per_file: Optional[Path] = typer.Option(None, "--per-file", help="Write per clip and sample KL / IB / DeSync "
                                            "(with several samples: mean and 95% interval) to this CSV."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Folder holding the metric networks' "
                                               "published files (offline machines; default: the cache, "
                                               "downloading what is missing)."),
    videos: Optional[Path] = typer.Option(None, "--videos", help="Source videos for ib/desync, <clip_id>.mp4 "
                                          "(default for a shard split: the videos its shards record)."),
    audio_length: float = typer.Option(8.0, "--audio-length", min=0.1, help="Seconds of each clip the "
                                       "av-benchmark metrics score (its default 8; PaSST always sees 10 s)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Spectrograms per classifier batch."),
    device: Optional[str] = typer.Option(None, "--device", callback=checks.device, help="cpu or cuda (default: "
                                         "cuda when available for the classifier, cpu for the av-benchmark networks)."),
    fake_kind: str = typer.Option("auto", "--fake-kind", help="auto (mels when present, else audio), mel or wav."),
    isc_splits: int = typer.Option(10, "--isc-splits", min=1, help="Splits for the Inception Score (ISc and IS)."),
    kid_subsets: int = typer.Option(100, "--kid-subsets", min=1, help="Random subsets for KID."),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size", min=2, help="Items per KID subset (capped by the set sizes)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the real clips' features."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Leave out the av-benchmark metrics whose "
                                      "weights are not on this machine (no download), saying which."),
) -> None:
    """Score generated sounds against real ones: FID, KID, ISc, MKL (Melception) and the av-benchmark metrics."""
    from rich.console import Console
    from rich.table import Table

    from vgs_cli.metrics.av_eval import AVSettings, parse_selection
    from vgs_cli.metrics.evaluate import EvalSettings
    from vgs_cli.metrics.protocols import evaluate_protocols

    chosen = parse_selection(metrics, protocol)
    if classifier is None:  # the default model's Melception (make demo), else the official one in the cache
        from vgs_cli.loading.default_model import default_classifier

        classifier = default_classifier()
        if classifier is not None:
            typer.echo(f"classifier: {classifier} (the default; --classifier to choose)")
    settings = EvalSettings(batch_size=batch_size, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                            isc_splits=isc_splits, fake_kind=fake_kind, use_cache=not no_cache)
    av_settings = AVSettings(batch_size=min(batch_size, 8), audio_length=audio_length, is_splits=isc_splits,
                             use_cache=not no_cache)
    result = evaluate_protocols(real, fake, chosen, classifier=classifier, spec_settings=settings,
                                av_settings=av_settings, device=device, weights_dir=weights_dir, videos=videos,
                                json_out=json_out, per_file=per_file, progress=_progress,
                                skip_missing=skip_missing)
    if result.get("skipped"):
        files = sorted(set(result["skipped"].values()))
        typer.echo(f"skipped {', '.join(result['skipped'])}: no weights on this machine ({', '.join(files)}; "
                   "`vgs download --metrics` fetches them)")
    if "n_fake" not in result:  # --skip-missing left nothing to score
        typer.echo("nothing scored: every metric asked for was skipped" + (f"; wrote {json_out}" if json_out else ""))
        return

    table = Table(title=f"vgs eval: {result['n_fake']} fake vs {result['n_real']} real"
                  + (f" ({result['split']})" if "split" in result else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    m = result["metrics"]
    for label, key, spread in ROWS:
        if key in m:
            extra = m.get(spread) if spread else None
            table.add_row(label, f"{m[key]:.4f}" + (f" ± {extra:.4f}" if extra is not None and extra == extra else ""))
    console = Console()
    console.print(table)
    if "mkl" in m:
        console.print(f"MKL over {m['mkl_pairs']} pairs ({result['n_fake_matched']}/{result['n_fake']} fakes matched)")
    for key in ("kl_panns", "kl_passt", "ib", "desync"):
        if f"{key}_ci95" in m:
            console.print(f"{key}: ± is the 95% interval over {m[f'{key}_samples']} samples per clip")
    if "classifier_stage" in result:
        console.print(f"classifier {result['classifier_stage']} sha256 {result['classifier_sha256'][:16]}…")
    for what, path in (("results", json_out), ("per-file scores", per_file)):
        if path:
            console.print(f"{what} in {path}")
