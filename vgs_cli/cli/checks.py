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
