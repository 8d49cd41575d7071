"""`vgs doctor`: what a bug report needs, probed from this machine (cli/doctor.py only prints it).

    report = diagnose()      # {"vgs", "python", "torch", "cpu", "threads", "gpus", "ffmpeg", "extras",
                             #  "dependencies", "cache", "default_model", "chromium", "problems", "notes"}

`problems` (each one line) are what stops the core from working: a declared dependency missing, an ffmpeg
binary that does not run (`$IMAGEIO_FFMPEG_EXE` points imageio-ffmpeg, and so vgs, at another binary), a
cache folder that cannot be written. `notes` are worth knowing but not faults (no GPU, an extra not
installed, a default model whose files are gone). Nothing here downloads or writes anything.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from vgs_cli import __version__
from vgs_cli.cache import ENV as CACHE_ENV
from vgs_cli.cache import cache_dir

CHROMIUM = ("chromium", "chromium-browser")  # Debian's package: the browser tests of `vgs serve`


def _requirement_name(req: str) -> tuple[str, str | None]:
    """`'gradio>=6; extra == "serve"'` -> ("gradio", "serve")."""
    name = re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0]
    extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", req)
    return name, extra.group(1) if extra else None


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def dependencies() -> tuple[dict[str, str | None], dict[str, dict[str, str | None]]]:
    """(core dependency -> installed version or None, extra -> {package -> version or None}) as declared
    in vgs's installed metadata (pyproject.toml)."""
    try:
        reqs = md.metadata("vgs").get_all("Requires-Dist") or []
    except md.PackageNotFoundError:  # running from a source tree that was never installed
        return {}, {}
    core: dict[str, str | None] = {}
    extras: dict[str, dict[str, str | None]] = {}
    for req in reqs:
        name, extra = _requirement_name(req)
        (extras.setdefault(extra, {}) if extra else core)[name] = _version(name)
    return core, extras


def ffmpeg() -> dict[str, Any]:
    """The binary vgs decodes with (audio/io.py: imageio-ffmpeg's, or $IMAGEIO_FFMPEG_EXE) and its version."""
    from vgs_cli.audio.io import ffmpeg_exe

    try:
        exe = ffmpeg_exe.__wrapped__()  # not the cached answer: this call is about the binary as it is now
    except Exception as exc:  # imageio-ffmpeg missing or no binary found
        return {"path": None, "version": None, "error": str(exc).splitlines()[0][:200]}
    info: dict[str, Any] = {"path": exe, "version": None, "error": None,
                            "from": "$IMAGEIO_FFMPEG_EXE" if os.environ.get("IMAGEIO_FFMPEG_EXE") else "imageio-ffmpeg"}
    try:
        proc = subprocess.run([exe, "-version"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["error"] = f"{exe} does not run ({type(exc).__name__}: {getattr(exc, 'strerror', None) or exc})"
        return info
    first = proc.stdout.decode(errors="replace").splitlines()[:1]
    if proc.returncode != 0 or not first:
        info["error"] = f"{exe} -version failed (exit {proc.returncode})"
    else:
        info["version"] = first[0].removeprefix("ffmpeg version ").split(" ")[0]
    return info


def gpus() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                    "capability": f"{p.major}.{p.minor}"})
    return out


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def cache() -> dict[str, Any]:
    """The cache folder, its size, the registered weights present and the official downloads."""
    from vgs_cli.loading.weights import listing

    root = cache_dir()
    official = root / "official"
    files = sorted(p for p in official.rglob("*") if p.is_file() and not p.name.startswith(".")) \
        if official.is_dir() else []
    probe = root if root.exists() else next((p for p in root.parents if p.exists()), Path("/"))
    return {"path": str(root), "from": f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else "default",
            "exists": root.is_dir(), "bytes": _folder_bytes(root) if root.is_dir() else 0,
            "writable": os.access(probe, os.W_OK), "weights": listing(),
            "official": [{"file": str(p.relative_to(official)), "bytes": p.stat().st_size} for p in files]}


def default_model() -> dict[str, Any]:
    from vgs_cli.errors import VgsError
    from vgs_cli.loading.default_model import ENV, default_source, read_record, record_path

    out: dict[str, Any] = {"record": str(record_path()), "env": os.environ.get(ENV) or None,
                           "recorded": read_record(), "uses": None, "error": None}
    try:
        out["uses"] = default_source().describe()
    except VgsError as exc:
        out["error"] = str(exc)
    return out


def diagnose() -> dict[str, Any]:
    import torch

    from vgs_cli.cpu import cpu_info

    core, extras = dependencies()
    report: dict[str, Any] = {
        "vgs": __version__, "python": platform.python_version(), "executable": sys.executable,
        "platform": platform.platform(), "torch": torch.__version__,
        "cpu": cpu_info().as_dict(), "cpu_summary": cpu_info().summary(),
        "threads": {"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
                    "cpus": os.cpu_count(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "gpus": gpus(), "ffmpeg": ffmpeg(), "dependencies": core,
        "extras": {name: {"installed": all(v is not None for v in pkgs.values()), "packages": pkgs}
                   for name, pkgs in extras.items() if name != "dev"},
        "cache": cache(), "default_model": default_model(),
        "chromium": next((p for p in map(shutil.which, CHROMIUM) if p), None),
    }
    problems, notes = [], []
    for name, version in core.items():
        if version is None:
            problems.append(f"dependency {name} is not installed: pip install -e . (or make install)")
    if report["ffmpeg"]["error"]:
        problems.append(f"ffmpeg: {report['ffmpeg']['error']} (vgs decodes all media with it; unset "
                        "IMAGEIO_FFMPEG_EXE or point it at a working ffmpeg)")
    if not report["cache"]["writable"]:
        problems.append(f"the cache folder {report['cache']['path']} is not writable: set {CACHE_ENV} to a "
                        "folder you can write")
    if not report["gpus"]:
        notes.append("no GPU: everything runs on the CPU")
    for name in ("serve", "metrics"):
        extra = report["extras"].get(name)
        if extra is None:
            notes.append(f"the [{name}] extra is not declared by this vgs")
        elif not extra["installed"]:
            notes.append(f"the [{name}] extra is not installed: pip install -e \".[{name}]\"")
    if report["default_model"]["error"]:
        notes.append(report["default_model"]["error"])
    if report["chromium"] is None:
        notes.append("Debian's chromium is not there: the browser tests of vgs serve skip")
    report["problems"], report["notes"] = problems, notes
    return report
