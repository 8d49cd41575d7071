"""`vgs info PATH`: a readable summary of a shard folder (or one shard), a checkpoint or a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vgs_cli.errors import VgsError

_console = Console()


def _table(title: str, rows: list[tuple[str, Any]]) -> Table:
    _console.print(f"[bold]{title}[/]", soft_wrap=True)  # a table title would wrap at the table's width
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(str(key), value if isinstance(value, str) else json.dumps(value, default=str))
    return table


def print_shards(root: str | Path, manifest: dict[str, Any] | None = None) -> None:
    """Counts per split, classes, spectrogram/extractor settings and failures of a shard folder."""
    from vgs_cli.data.shards import read_failures, read_manifest
    from vgs_cli.loading.feature_paths import recorded_precision

    root = Path(root)
    m = manifest if manifest is not None else read_manifest(root)
    classes = m["classes"]
    rows = [("folder", str(root)), ("clips", f"{m['clips']} ({', '.join(f'{k} {v}' for k, v in m['splits'].items())})"),
            ("shards", f"{len(m['shards'])} of {m['num_shards']}" + (f", missing {m['missing_shards']}" if m["missing_shards"] else "")),
            ("classes", f"{len(classes)}: {', '.join(classes[:12])}{' ...' if len(classes) > 12 else ''}"),
            ("without audio", str(m.get("no_audio", 0))), ("failures", str(m["failures"])),
            ("wav", m["wav_dtype"]), ("settings", m["settings"]), ("vgs version", m["vgs_version"]),
            ("command", m.get("command") or "-")]
    _console.print(_table("dataset", rows))
    _console.print("[bold]visual features[/]")
    ext = Table()
    for col in ("name", "dim", "image size", "weights", "precision", "random"):
        ext.add_column(col)
    for name, st in m["extractors"].items():
        ext.add_row(name, str(st["dim"]), str(st.get("image_size", "-")), str(st.get("weights", "-")),
                    recorded_precision(st), "[bold red]YES[/]" if st.get("random_weights") else "no")
    _console.print(ext)
    spec = m["spec"]
    _console.print(f"spectrogram: {spec['sample_rate']} Hz, {spec['n_mels']} mels {spec['fmin']:g}-{spec['fmax']:g} Hz, "
                   f"hop {spec['hop_length']}, {spec['stored_frames']} frames stored")
    failures = read_failures(root)
    for fl in failures[:10]:
        _console.print(f"  failed: {fl.get('source') or fl['id']}: {fl['reason']}")
    if len(failures) > 10:
        _console.print(f"  ... and {len(failures) - 10} more in {root / 'failures.jsonl'}")


def print_checkpoint(path: Path) -> None:
    from vgs_cli.checkpoint import checkpoint_summary, load_checkpoint

    summary = checkpoint_summary(load_checkpoint(path))
    _console.print(_table(f"checkpoint {path}", list(summary.items())))


def _last_metrics(path: Path) -> dict[str, dict[str, Any]]:
    """The last metrics.jsonl event of each split."""
    last: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            last[str(event.get("split", "train"))] = event
    return last


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        rows += _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return rows


def print_run(run: Path) -> None:
    """Config, last step and metrics, checkpoints present of a run folder."""
    cfg_path = run / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    _console.print(_table(f"run {run}", _flatten(cfg)[:60] or [("config.json", "missing")]))
    from vgs_cli.train.watch import summarize

    last_steps = {split: event.get("step") for split, event in _last_metrics(run / "metrics.jsonl").items()}
    for split, values in summarize(run / "metrics.jsonl").items():
        table = Table(title=f"{split} metrics (last step {last_steps.get(split)})", title_justify="left")
        for col in ("metric", "last", "best", "best at step"):
            table.add_column(col)
        for key, v in values.items():
            table.add_row(key, f"{v['last']:.6g}", f"{v['best']:.6g}", str(v["best_step"]))
        _console.print(table)
    extras = [name for name in ("curves.png", "tb") if (run / name).exists()]
    if extras:
        _console.print(f"watch: {', '.join(str(run / n) for n in extras)} (`tensorboard --logdir {run.parent}`)",
                       soft_wrap=True)
    ckpts = sorted((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").is_dir() else []
    _console.print("checkpoints: " + (", ".join(f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)" for p in ckpts) or "none"),
                   soft_wrap=True)


def info(path: Path = typer.Argument(..., help="Shard folder, shard file, checkpoint file or run folder.")) -> None:
    """Summarise a shard folder, checkpoint or run folder."""
    from vgs_cli.data.shards import shard_files, shard_info

    if not path.exists():
        raise VgsError(f"no such file or folder: {path}")
    if path.is_file() and path.suffix == ".h5":
        one = shard_info(path)
        one.pop("ids")
        one["failures"] = len(one["failures"])
        _console.print(_table(f"shard {path}", list(one.items())))
    elif path.is_file():
        print_checkpoint(path)
    elif shard_files(path) or (path / "manifest.json").is_file():
        print_shards(path)
    elif any((path / n).exists() for n in ("config.json", "metrics.jsonl", "checkpoints")):
        print_run(path)
    else:
        raise VgsError(f"{path} is not a shard folder, checkpoint or run folder")
