"""Every declared dependency (pyproject's [project].dependencies and extras other than dev) is imported
somewhere under vgs_cli: a package nothing imports installs for nothing (issue 27: moviepy was one)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# distribution name -> the modules that count as using it (default: the name with - as _, lower case)
IMPORT_NAMES = {
    "pyyaml": ("yaml",), "imageio-ffmpeg": ("imageio_ffmpeg",), "pillow": ("PIL",), "yt-dlp": ("yt_dlp",),
    "gradio_client": ("gradio_client",), "scikit-learn": ("sklearn",),
    "tensorboard": ("tensorboard", "torch.utils.tensorboard"),  # torch's writer is tensorboard's front end
}


def _declared() -> dict[str, str]:
    """distribution -> where it is declared (`dependencies` or `extra <name>`)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for where, reqs in [("dependencies", project["dependencies"]),
                        *((f"extra {name}", reqs) for name, reqs in project.get("optional-dependencies", {}).items()
                          if name != "dev")]:
        for req in reqs:
            found[re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0].lower()] = where
    return found


def _imported() -> set[str]:
    """Every module imported under vgs_cli (top-level and inside functions), as written, and every module run
    as `python -m <module>` (a command list holding "-m", "<module>": yt-dlp runs that way, one process per clip)."""
    names: set[str] = set()
    for path in (ROOT / "vgs_cli").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.List, ast.Tuple)):
                items = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
                names.update(b for a, b in zip(items, items[1:], strict=False) if a == "-m" and isinstance(b, str))
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _uses(imported: set[str], module: str) -> bool:
    return any(name == module or name.startswith(module + ".") for name in imported)


def test_every_declared_dependency_is_imported():
    declared, imported = _declared(), _imported()
    assert {"torch", "moviepy", "tensorboard", "gradio"} <= set(declared)  # the parse found the real lists
    unused = [f"{dist} ({where})" for dist, where in declared.items()
              if not any(_uses(imported, m) for m in IMPORT_NAMES.get(dist, (dist.replace("-", "_"),)))]
    assert not unused, f"declared but never imported under vgs_cli: {', '.join(unused)}"


def test_the_check_catches_an_unused_name():
    imported = _imported()
    assert _uses(imported, "moviepy") and _uses(imported, "torch.utils.tensorboard")
    assert not _uses(imported, "no_such_package_vgs") and not _uses(imported, "torc")
