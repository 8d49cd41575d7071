"""Checks of option values that typer's types cannot express, shared by the commands (`callback=`)."""

from __future__ import annotations

from typing import Optional

import typer


def device(value: Optional[str]) -> Optional[str]:
    """`--device`: must exist on this machine; the error lists the devices there are (cpu, cuda:0, ...)."""
    if value is None:
        return None
    from vgs_cli.dist import resolve_device
    from vgs_cli.errors import VgsError

    try:
        resolve_device(value)
    except VgsError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def positive(value: Optional[float]) -> Optional[float]:
    """A float option that must be > 0 when given (typer's `min=` cannot exclude the bound itself)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value
