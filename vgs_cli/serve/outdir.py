"""The server's own folder (`--out`): which subfolders are the server's, so it cleans and publishes only those.

    requests/  one folder per request (wavs, videos with the new sound, spectrogram PNGs)   published, cleaned
    uploads/   gradio's uploads and its copies of results and examples (gradio serves it)   published, cleaned
    examples/  copies or hard links of the example videos (rebuilt at every start)         published
    tmp/       temp files (TMPDIR)                                                          cleaned
    cache/     gradio's example cache, matplotlib's and huggingface's caches                never cleaned

`--out` may be an existing folder with the user's own files: `.vgs-serve.json` records the subfolders a server
made (or found empty and took). A subfolder it did not make is never cleaned; one that would be published
(`requests`, `uploads`, `examples`) and already holds someone's files is refused, since the server would publish
or delete them. Everything else in `--out` is never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vgs_cli.errors import VgsError
from vgs_cli.fsutil import ensure_dir, raise_output_error, write_json

MARKER = ".vgs-serve.json"
PUBLISHED = ("requests", "uploads", "examples")
PRIVATE = ("tmp", "cache")


@dataclass(frozen=True)
class OutDir:
    root: Path
    owned: frozenset[str]  # the subfolders this server (or an earlier one) made: only those are cleaned

    @property
    def requests(self) -> Path:
        return self.root / "requests"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def examples(self) -> Path:
        return self.root / "examples"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def cleanable(self) -> list[Path]:
        """The folders whose old entries the janitor may delete (the server's own only)."""
        return [self.root / name for name in ("requests", "uploads", "tmp") if name in self.owned]


def _recorded(root: Path) -> set[str]:
    try:
        names = json.loads((root / MARKER).read_text()).get("folders", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {n for n in names if n in PUBLISHED + PRIVATE} if isinstance(names, list) else set()


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def claim(root: Path) -> OutDir:
    """Make (or take back) the server's subfolders of `root`; -> OutDir. A subfolder in the way: VgsError."""
    root = ensure_dir(root).resolve()
    recorded = _recorded(root)
    owned: set[str] = set()
    for name in PUBLISHED + PRIVATE:
        path = root / name
        mine = name in recorded and path.is_dir() and not path.is_symlink()
        if mine or not (path.exists() or path.is_symlink()) or _empty_dir(path):
            try:
                path.mkdir(exist_ok=True)
            except OSError as exc:
                raise_output_error(exc, path)
                raise
            owned.add(name)
        elif not path.is_dir():
            raise VgsError(f"--out {root}: {path.name} is a file, but vgs serve needs that name for its own folder; "
                           "give another --out")
        elif name in PUBLISHED:
            raise VgsError(f"--out {root}: {name}/ holds files vgs serve did not write, and the server would publish "
                           f"and delete what is in {name}/; give a new or empty --out folder")
        # a user's own tmp/ or cache/: used as it is, never cleaned (nothing in them is published)
    write_json(root / MARKER, {"folders": sorted(owned),
                               "note": "vgs serve's own subfolders of this folder: it cleans only these"})
    return OutDir(root, frozenset(owned))
