"""`vgs export merged`: a LoRA adapter (or LoRA run) + its base -> one plain transformer checkpoint.

The same file `vgs train transformer ... --merge` writes; `vgs_cli.train.finetune.write_merged` does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("merged")
def merged(source: Path = typer.Argument(..., help="adapter.ckpt, a LoRA run's checkpoint, or its run folder."),
           out: Path = typer.Option(..., "--out", "-o", help="Merged transformer checkpoint to write."),
           base: Optional[Path] = typer.Option(None, "--base", help="The adapter's base transformer (default: the path it recorded; the SHA-256 must match)."),
           force: bool = typer.Option(False, "--force", help="Replace an existing output (never the adapter itself or its base).")) -> None:
    """Fold LoRA adapters into their base: W + alpha/rank * B A, one plain transformer checkpoint."""
    from vgs_cli.train.finetune import write_merged

    typer.echo(f"wrote {write_merged(source, out, base=base, force=force)}")
