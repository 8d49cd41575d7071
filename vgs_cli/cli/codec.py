"""`vgs codec encode|decode` (owned by the codebook work)."""

import typer

app = typer.Typer(no_args_is_help=True)
