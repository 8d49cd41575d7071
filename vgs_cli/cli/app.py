"""`vgs` entry point: assembles the stage sub-commands and turns user errors into one-line messages."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from vgs_cli import __version__
from vgs_cli.cli import (
    codec,
    doctor,
    evaluate,
    export,
    generate,
    info,
    models,
    official,
    prepare,
    reproduce,
    serve,
    train,
)
from vgs_cli.errors import Interrupted, VgsError
from vgs_cli.fsutil import output_error

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
app.command("eval", help="Score generated sounds against real ones: FID, KID, ISc, MKL (Melception) and the "
            "av-benchmark metrics (FD_PaSST, FD_PANNs, FD_VGGish, KL, IS, IB-score, DeSync).")(evaluate.evaluate)
app.command("info", help="Summarise a shard folder, checkpoint or run folder.")(info.info)
app.add_typer(codec.app, name="codec", help="Use the codebook as a neural audio codec (encode / decode).")
app.add_typer(official.import_app, name="import", help="Convert official SpecVQGAN files into vgs checkpoints.")
app.add_typer(export.app, name="export", help="Write derived checkpoints: `merged` (a LoRA adapter folded into its base).")
app.command("download", help="Download published SpecVQGAN files (MD5-checked) and import them; --metrics: "
            "the metric networks' weights.")(official.download)
app.command("reproduce", help="Reproduce a row of the paper's table with an official transformer: fetch, generate, "
            "score, compare.")(reproduce.reproduce)
app.add_typer(models.app, name="models", help="List the models vgs knows; `vgs models default PATH` sets the model "
              "`vgs generate` uses when none is named.")
app.command("doctor", help="What a bug report needs: versions, CPU, GPUs, ffmpeg, extras, the cache folder, "
            "the default model (--json). Exit 1 with one line per problem.")(doctor.doctor)
app.command("serve", help=serve.HELP, short_help="Serve a web page + HTTP API (warm models; needs the serve extra).")(serve.serve)


def _click_exceptions() -> tuple[type, ...]:
    """Usage-error classes: typer >= 0.20 raises its vendored click's (`typer._click`), older typer click's."""
    found = []
    for name in ("typer._click", "click"):
        try:
            found.append(importlib.import_module(name).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def main() -> None:
    """Run the CLI. A VgsError becomes `error: ...` (one line on stderr) and its exit code (2 bad arguments or
    input, 1 faults such as a full disk, 130 interrupted); VGS_DEBUG=1 shows tracebacks. See `vgs_cli.errors`."""
    debug = os.environ.get("VGS_DEBUG") == "1"
    try:
        # standalone_mode=False: typer returns (not raises) the exit code of `typer.Exit`, including the 130 it
        # makes of a KeyboardInterrupt that no command turned into an `Interrupted` message.
        code = app(standalone_mode=False)
    except VgsError as exc:
        if debug:
            raise
        typer.echo(f"{'interrupted' if isinstance(exc, Interrupted) else 'error'}: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors and real bugs
        if isinstance(exc, _click_exceptions()):  # one line, like every other error
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        if debug:
            raise
        # an OSError no layer named (it carries the file it was about, when there is one)
        err = output_error(exc, exc.filename) if isinstance(exc, OSError) and exc.filename else None
        typer.echo(f"error: {err}" if err else
                   f"error: {type(exc).__name__}: {exc} (set VGS_DEBUG=1 for a traceback)", err=True)
        sys.exit(err.exit_code if err else 1)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        if code == 130:
            typer.echo("interrupted", err=True)
        sys.exit(code)
