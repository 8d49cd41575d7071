"""`vgs models [FOLDER...]` lists the models vgs knows; `vgs models default [PATH]` shows or sets the default
model (what `vgs generate video.mp4 -o out.wav` uses when no model is named). Logic: loading/default_model.py."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=False, invoke_without_command=True)


def _print_rows(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("", "stage", "preset", "condition", "source", "path"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row("*" if r["default"] else "", r["stage"], r["preset"] or "-", r["condition"] or "-",
                      r["source"], r["path"])
    Console().print(table)


@app.callback()
def models(ctx: typer.Context) -> None:
    """List the models vgs knows (the default model marked *, the official cache folder); `vgs models list
    FOLDER...` adds folders; `vgs models default PATH` sets the default."""
    if ctx.invoked_subcommand is None:
        list_models(None)


@app.command("list")
def list_models(folders: Optional[list[Path]] = typer.Argument(None, help="Also list the checkpoints under "
                                                                "these folders.")) -> None:
    """List the default model's checkpoints (*), the official cache folder's and those under FOLDERs."""
    from vgs_cli.cache import cache_path
    from vgs_cli.loading.default_model import known_models, read_record, record_path

    rows = known_models(list(folders or []))
    _print_rows(rows)
    rec = read_record()
    typer.echo(f"default model: {rec.get('model') or rec['transformer']} (set by {rec.get('how')}; {record_path()})"
               if rec else "default model: none (`vgs models default PATH`, or `make demo`)")
    if not rows:
        typer.echo(f"no checkpoints in {cache_path('official')}; `vgs download NAME` puts the official ones there")


@app.command("default")
def default(
    path: Optional[Path] = typer.Argument(None, help="Model folder, run folder or transformer checkpoint to make "
                                          "the default (omit to show the current one)."),
    codebook: Optional[Path] = typer.Option(None, "--codebook", help="Codebook checkpoint (default: the transformer's)."),
    vocoder_ckpt: Optional[Path] = typer.Option(None, "--vocoder-ckpt", help="MelGAN vocoder checkpoint (default: "
                                                "the folder's)."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Melception checkpoint `vgs eval` "
                                              "uses when given no --classifier."),
    by: str = typer.Option("vgs models default", "--by", hidden=True, help="Who set it (recorded)."),
) -> None:
    """Set (or show) the default model: checked now, recorded with absolute paths in the cache folder."""
    from vgs_cli.loading.default_model import read_record, record_path, set_default

    if path is None:
        rec = read_record()
        if rec is None:
            typer.echo("default model: none (`vgs models default PATH`, or `make demo`)")
            return
        for key in ("model", "transformer", "codebook", "vocoder", "classifier", "how", "set_at"):
            typer.echo(f"{key}: {rec.get(key)}")
        return
    rec = set_default(path, how=by, codebook=codebook, vocoder=vocoder_ckpt, classifier=classifier)
    typer.echo(f"default model: {path} (transformer {rec['transformer']}, codebook {rec['codebook']}, "
               f"vocoder {rec['vocoder']}); recorded in {record_path()}")
