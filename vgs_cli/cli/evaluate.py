"""`vgs eval` (owned by the evaluation work)."""

import typer

from vgs_cli.errors import VgsError


def evaluate(fake: str = typer.Option(..., "--fake", help="Folder of generated wavs or mels.")) -> None:
    raise VgsError("vgs eval is not implemented yet")
