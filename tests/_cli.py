"""Run the `vgs` entry point in-process (what `python -m vgs_cli` runs, without a new interpreter importing torch
again): the exit code `main()` ends with, 0 when it returns normally."""

from __future__ import annotations

import sys


def run_vgs(monkeypatch, *args: str) -> int:
    from vgs_cli.cli.app import main

    monkeypatch.setattr(sys, "argv", ["vgs", *args])
    try:
        main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return 0
