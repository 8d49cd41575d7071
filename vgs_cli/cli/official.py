"""`vgs import specvqgan` and `vgs download`: argument parsing and printing; `pipeline.official` does the work."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vgs_cli.errors import VgsError

import_app = typer.Typer(no_args_is_help=True)

STATS = typer.Option(None, "--stats", help="Per-mel-bin statistics for the classifiers "
                     "(train_means_stds_melspec_10s_22050hz.txt; default: next to the file).")
CLASSES = typer.Option(None, "--classes", help="Class names of a class-conditioned transformer, one per line, "
                       "in label order (VAS's 8 are known).")
EXTRACTOR = typer.Option(None, "--extractor", help="Visual features of a transformer whose run config does not "
                         "say: resnet50 or bninception.")
FORCE = typer.Option(False, "--force", help="Replace existing outputs that hold other weights.")
N_HEAD = typer.Option(None, "--n-head", min=1, help="Attention heads of a transformer imported without its run's "
                      "project yaml (no tensor shows them; the paper's 16 is assumed only for width 1024).")


def _options(stats: Optional[Path], classes: Optional[Path], extractor: Optional[str], force: bool,
             n_head: Optional[int] = None):
    from vgs_cli.official.importer import ImportOptions

    names = None
    if classes is not None:
        try:
            names = [line.strip() for line in classes.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise VgsError(f"cannot read {classes}: {exc.strerror or exc}") from None
    return ImportOptions(stats=stats, classes=names, extractor=extractor, force=force, n_head=n_head)


def _report(written) -> None:
    for w in written:
        typer.echo(f"{w.status}: {w.path} ({w.stage}, from {w.source.name})")
        for note in w.notes:
            typer.echo(f"  note: {note}")


@import_app.command("specvqgan")
def specvqgan(
    path: Path = typer.Argument(..., help="An official file (.ckpt/.pt) or folder (unpacked run, or several files)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <stage>.ckpt files (use with --model)."),
    stats: Optional[Path] = STATS, classes: Optional[Path] = CLASSES, extractor: Optional[str] = EXTRACTOR,
    force: bool = FORCE, n_head: Optional[int] = N_HEAD,
    default: bool = typer.Option(False, "--default", help="Make OUT (its transformer, codebook and vocoder) the "
                                 "default model of `vgs generate`."),
) -> None:
    """Convert official SpecVQGAN files (codebook, transformer, MelGAN, Melception, VGGish-ish) into vgs checkpoints."""
    from vgs_cli.official.importer import import_specvqgan

    _report(import_specvqgan(path, out, _options(stats, classes, extractor, force, n_head), log=typer.echo))
    if default:
        from vgs_cli.loading.default_model import set_default

        rec = set_default(out, how=f"vgs import specvqgan {path}")
        typer.echo(f"default model: {out} (transformer {rec['transformer']})")


def _print_list() -> None:
    from vgs_cli.official.registry import listing

    for row in listing():
        alias = f" ({row['alias']})" if row["alias"] else ""
        detail = f": {row['detail']}" if row["detail"] else ""
        typer.echo(f"{row['name']}{alias} [{row['kind']}]{detail}")


def download(
    names: Optional[list[str]] = typer.Argument(None, help="Published names or aliases (see --list)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the imported checkpoints "
                                       "(downloads are kept in OUT/downloads; default: the cache folder's "
                                       "official/, see `vgs doctor`)."),
    default: bool = typer.Option(False, "--default", help="Make the downloaded transformer (with its codebook and "
                                 "the official MelGAN, fetched too) the default model of `vgs generate`."),
    list_: bool = typer.Option(False, "--list", help="List the published files and exit."),
    metrics: bool = typer.Option(False, "--metrics", help="Fetch every metric network's published weights "
                                 "(PaSST, PANNs, VGGish, Synchformer, ...) into the cache, for `vgs eval`."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Mirror to fetch from (default: "
                                           "$VGS_OFFICIAL_BASE_URL, else the official server)."),
    stats: Optional[Path] = STATS, classes: Optional[Path] = CLASSES, extractor: Optional[str] = EXTRACTOR,
    force: bool = FORCE,
) -> None:
    if list_:
        _print_list()
        return
    if metrics:
        _download_metrics()
        if not names:
            return
    from vgs_cli.cache import cache_path
    from vgs_cli.official.fetch import download_official

    out = out or cache_path("official")
    if default:
        _download_default(list(names or []), out, base_url)
        return
    results = download_official(list(names or []), out, _options(stats, classes, extractor, force),
                                base_url=base_url, log=typer.echo)
    for r in results:
        typer.echo(f"{r.name}: {r.file}")
        for note in r.notes:
            typer.echo(f"  note: {note}")
        _report(r.written)


def _download_default(names: list[str], out: Path, base_url: Optional[str]) -> None:
    """`vgs download NAME --default`: the transformer, its codebook and MelGAN (found or fetched as `vgs
    reproduce` does), recorded as the default model."""
    from vgs_cli.loading.default_model import set_default
    from vgs_cli.reproduce.models import find_or_fetch

    if len(names) != 1:
        raise VgsError("--default takes one transformer name (e.g. vgs download vas_c_212feats_resnet50 --default)")
    m = find_or_fetch(names[0], out, base_url=base_url, log=typer.echo, melception=False)
    set_default(None, transformer=m.transformer, codebook=m.codebook, vocoder=m.vocoder,
                how=f"vgs download {names[0]}", name=names[0])
    typer.echo(f"default model: {names[0]} ({m.transformer}, {m.codebook}, {m.vocoder})")


def _download_metrics() -> None:
    """`vgs download --metrics`: each metric network's file into the cache (resumable; checked where published)."""
    from vgs_cli.loading.metric_nets import metric_weight_names
    from vgs_cli.loading.weights import weight_path

    for name in metric_weight_names():
        typer.echo(f"{name}: {weight_path(name)}")
