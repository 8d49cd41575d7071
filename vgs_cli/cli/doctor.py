"""`vgs doctor [--json]`: print what loading/doctor.py probed; exit 1 with one line per problem."""

from __future__ import annotations

import json

import typer


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def doctor(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Versions, CPU instruction sets, threads, GPUs, ffmpeg, extras, the cache folder, the default model."""
    from vgs_cli.loading.doctor import diagnose

    r = diagnose()
    if as_json:
        typer.echo(json.dumps(r, indent=2, default=str))
    else:
        ff, c, dm = r["ffmpeg"], r["cache"], r["default_model"]
        th = r["threads"]
        lines = [
            f"vgs {r['vgs']}, Python {r['python']}, torch {r['torch']} ({r['platform']})",
            f"CPU: {r['cpu_summary']}",
            f"threads: torch {th['torch']} (interop {th['interop']}), {th['cpus']} CPUs"
            + (f", OMP_NUM_THREADS={th['OMP_NUM_THREADS']}" if th["OMP_NUM_THREADS"] else ""),
            "GPUs: " + (", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in r["gpus"]) or "none"),
            f"ffmpeg: {ff['path']} " + (f"version {ff['version']} (from {ff.get('from')})" if ff["version"]
                                        else "NOT WORKING"),
            "extras: " + ", ".join(f"{name} {'installed' if e['installed'] else 'not installed'}"
                                   for name, e in r["extras"].items()),
            f"cache: {c['path']} ({'from ' + c['from'] if c['from'] != 'default' else 'default'}; "
            f"{_size(c['bytes']) if c['exists'] else 'not created yet'})",
        ]
        for w in c["weights"]:
            lines.append(f"  weights {w['name']}: " + (f"{w['cached']} ({_size(w['bytes'])})" if w["cached"]
                                                     else f"not downloaded ({w['file']})"))
        for f in c["official"]:
            lines.append(f"  official/{f['file']} ({_size(f['bytes'])})")
        lines.append(f"default model: {dm['uses'] or 'none'}")
        lines.append(f"chromium: {r['chromium'] or 'not found'}")
        for line in lines:
            typer.echo(line)
        for note in r["notes"]:
            typer.echo(f"note: {note}")
    for problem in r["problems"]:
        typer.echo(f"problem: {problem}", err=True)
    if r["problems"]:
        raise typer.Exit(1)
