"""`vgs prepare ...` (owned by the data work: folder, synthetic, vas, vggsound)."""

import typer

app = typer.Typer(no_args_is_help=True)
