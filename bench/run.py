"""`make bench`: run every benchmark module once and print one table (also saved as bench_out/bench.json).

Numbers are measured on the machine that runs this (the README's results section says which one). Paper-size
models use random weights: timing does not depend on the values.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

# Order = the order of the pipeline.
MODULES = ["spec", "prepare", "datasets", "trainer", "codebook", "gpt", "quantize", "vocoder", "train_steps", "generate",
           "cpu_paths", "serve", "official", "metrics", "av_metrics"]


def main(argv: list[str] | None = None) -> int:
    from vgs_cli.cpu import cpu_info

    only = set((argv if argv is not None else sys.argv[1:]))
    console = Console()
    # what the CPU offers (read, not assumed): every number below holds for this CPU only
    table = Table(title=f"vgs benchmark ({platform.processor() or platform.machine()}, "
                        f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads)\n"
                        f"CPU: {cpu_info().summary()}")
    table.add_column("area")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    table.add_column("unit")
    results: list[dict] = []
    for name in MODULES:
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("bench"):
                continue
            raise
        console.print(f"[bold]bench {name}[/] ...")
        try:
            rows = mod.rows()
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            rows = [(f"FAILED: {type(exc).__name__}: {exc}"[:100], float("nan"), "")]
        for label, value, unit in rows:
            table.add_row(name, label, _fmt(value), unit)
            results.append({"area": name, "measurement": label, "value": value, "unit": unit})
        console.print(f"  done in {time.perf_counter() - t0:.1f} s")
    console.print(table)
    out = Path("bench_out")
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    console.print(f"saved {out / 'bench.json'}")
    return 0


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
