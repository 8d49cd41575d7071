"""`vgs` entry point: assembles the stage sub-commands and turns user errors into one-line messages."""

from __future__ import annotations

import os
import sys

import typer

from vgs_cli import __version__
from vgs_cli.cli import codec, evaluate, generate, info, official, prepare, train
from vgs_cli.errors import VgsError

app = typer.Typer(
    name="vgs",
    help="Visually guided sound generation: turn silent video into sound (SpecVQGAN, reimplemented).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vgs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Visually guided sound generation."""


app.add_typer(prepare.app, name="prepare", help="Turn videos or datasets into HDF5 shards (mels, features, audio).")
app.add_typer(train.app, name="train", help="Train a stage: codebook, transformer, vocoder, melception, vggishish.")
app.command("generate", help="Generate sound for a video, a folder of videos or a shard split.")(generate.generate)
app.command("eval", help="Score generated sounds against real ones: FID, KID, ISc, MKL.")(evaluate.evaluate)
app.command("info", help="Summarise a shard folder, checkpoint or run folder.")(info.info)
app.add_typer(codec.app, name="codec", help="Use the codebook as a neural audio codec (encode / decode).")
app.add_typer(official.import_app, name="import", help="Convert official SpecVQGAN files into vgs checkpoints.")
app.command("download", help="Download published SpecVQGAN files (MD5-checked) and import them.")(official.download)


def main() -> None:
    """Run the CLI; a VgsError becomes `error: ...` on stderr with exit code 2 (VGS_DEBUG=1 shows tracebacks)."""
    debug = os.environ.get("VGS_DEBUG") == "1"
    try:
        app(standalone_mode=False)
    except VgsError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors and real bugs
        try:
            import click
        except ImportError:  # typer >= 0.20 vendors its own click
            from typer import _click as click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (set VGS_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
