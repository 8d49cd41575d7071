"""`vgs reproduce NAME --data SHARDS`: argument parsing and the table; `vgs_cli.reproduce.run` does the work."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _fmt(x, std=None) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.4f}" + (f" ± {std:.4f}" if std is not None else "")


MODERN = [("FD_PaSST", "fd_passt"), ("FD_PANNs", "fd_panns"), ("FD_VGGish", "fd_vggish"), ("KL_PANNs", "kl_panns"),
          ("KL_PaSST", "kl_passt"), ("IS_PANNs", "is_panns_mean"), ("IB-score", "ib"), ("DeSync (s)", "desync")]


def _modern_table(console, modern: dict) -> None:
    """Today's protocol for the row (no paper numbers exist for it), and what it could not score here."""
    from rich.table import Table

    m = modern.get("metrics") or {}
    rows = [(label, m[key]) for label, key in MODERN if m.get(key) is not None]
    if rows:
        table = Table(title="today's protocol (av-benchmark; MMAudio's Table 1 metrics)")
        table.add_column("metric")
        table.add_column("vgs", justify="right")
        for label, value in rows:
            table.add_row(label, _fmt(value))
        console.print(table)
    for note in modern.get("notes") or []:
        console.print(note)
    if modern.get("skipped"):
        files = ", ".join(sorted(set(modern["skipped"].values())))
        console.print(f"today's protocol: {', '.join(modern['skipped'])} not scored (missing here: {files}; "
                      "`vgs download --metrics` fetches the weights)")


def reproduce(
    name: str = typer.Argument(..., help="An official transformer: the alias or run name of a transformer in "
                               "`vgs download --list` (e.g. vas_c_212feats_resnet50)."),
    data: Path = typer.Option(..., "--data", help="Shard folder of the transformer's dataset with its features "
                              "(`vgs prepare vas|vggsound`; official features ingested or extracted)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder: samples/ and reproduce.json "
                                       "(default: reproduce/NAME)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N clips: a quick, partial "
                                        "run (said so everywhere; not comparable with the paper)."),
    models: Optional[Path] = typer.Option(None, "--models", help="Where the official files are found or "
                                          "downloaded to (default: the cache folder's official/, where `vgs "
                                          "download` puts them)."),
    samples: Optional[int] = typer.Option(None, "--samples", "-n", min=1, help="Samples per clip (default: the "
                                          "reference's for the row: 10 on VAS, 1 on VGGSound; fewer is partial)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="Override the row's reference top-k (VAS "
                                        "transformers on the VAS codebook: 64, else 512); the run is then not the "
                                        "paper's protocol, and says so."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Override the "
                                                "reference's temperature (1.0); likewise not the paper's protocol."),
    split: Optional[str] = typer.Option(None, "--split", help="Evaluation split (default: the paper's: VGGSound "
                                        "test, VAS valid)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Clips sampled together."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sampling."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Mirror of the official files (default: "
                                           "$VGS_OFFICIAL_BASE_URL, else the official server)."),
) -> None:
    """Reproduce one row of the paper's table: fetch the models, sample as the reference did, score, compare.

    Resumable (a rerun skips finished clips) and shareable among GPUs: `torchrun --nproc_per_node N -m vgs_cli
    reproduce ...`."""
    from rich.console import Console
    from rich.table import Table

    from vgs_cli.cache import cache_path
    from vgs_cli.reproduce.run import ReproduceOptions
    from vgs_cli.reproduce.run import reproduce as run

    out = out or Path("reproduce") / name
    models = models or cache_path("official")  # the same folder `vgs download` (no -o) fills
    opts = ReproduceOptions(models=models, limit=limit, samples=samples, top_k=top_k, temperature=temperature,
                            split=split, batch_size=batch_size, seed=seed, device=device, base_url=base_url)
    r = run(name, data, out, opts, log=typer.echo)
    if r is None:  # a torchrun rank other than 0: rank 0 prints
        return
    title = (f"vgs reproduce {r['name']}: setting {r['setting']}, {r['condition']}"
             + (f" ({r['features']})" if r["features"] else "")
             + f"; {r['clips']} {r['split']} clips x {r['samples_per_clip']}; top-k {r['sampler']['top_k']}, "
             f"temperature {r['sampler']['temperature']:g}")
    table = Table(title=title)
    for col, justify in (("metric", "left"), ("vgs", "right"), ("paper", "right"), ("difference", "right")):
        table.add_column(col, justify=justify)
    for row in r["table"]:
        table.add_row(row["metric"], _fmt(row["ours"], row.get("std")), _fmt(row["paper"]), _fmt(row["difference"]))
    console = Console()
    console.print(table)
    if r["partial"]:
        console.print(f"PARTIAL RUN ({r['partial_reason']}): not the paper's protocol, the numbers are not "
                      "comparable with the paper's")
    _modern_table(console, r["modern"])
    if r["sampler"]["note"]:
        console.print(f"SAMPLER CHANGED ({r['sampler']['note']}): the numbers are not the paper's protocol")
    console.print(f"sampler: {r['sampler']['reference']['source']}")
    console.print(f"results in {out / 'reproduce.json'}; samples in {r['samples_dir']}")
