"""`vgs generate` (owned by the generation work)."""

import typer

from vgs_cli.errors import VgsError


def generate(source: str = typer.Argument(..., help="Video file, folder of videos, or shard folder.")) -> None:
    raise VgsError("vgs generate is not implemented yet")
