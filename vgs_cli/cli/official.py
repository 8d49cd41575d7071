"""`vgs import specvqgan` and `vgs download` (owned by the official-checkpoint work)."""

import typer

from vgs_cli.errors import VgsError

import_app = typer.Typer(no_args_is_help=True)


def download(name: str = typer.Argument(..., help="Published file name (see `vgs download --list`).")) -> None:
    raise VgsError("vgs download is not implemented yet")
