"""`vgs info PATH`: shard folder, checkpoint or run folder summary."""

from pathlib import Path

import typer

from vgs_cli.errors import VgsError


def info(path: Path = typer.Argument(..., help="Shard folder, checkpoint file or run folder.")) -> None:
    raise VgsError("vgs info is not implemented yet")
