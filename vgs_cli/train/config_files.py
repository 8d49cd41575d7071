"""Reading a stage config from JSON: `--config FILE`, a run folder's `config.json`, merged over a base.

Shared by `runner.py` (presets, resumed runs) and `init.py` (`--init`), which must not import each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vgs_cli.errors import ConfigError, VgsError


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, nested dicts merged key by key (a new dict; the inputs are not changed)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from `path`; a missing, unreadable or non-object file is a one-line error naming `what`."""
    if not path.is_file():
        raise VgsError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VgsError(f"{path}: cannot read {what} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a JSON object")
    return data


def config_file_dict(config_file: str | Path | None) -> dict[str, Any]:
    """The stage config in `--config FILE` ({} without one)."""
    if config_file is None:
        return {}
    data = read_json(Path(config_file), "config file")
    # A run folder's config.json (or a checkpoint-style dump) nests the stage config under "config".
    return data["config"] if isinstance(data.get("config"), dict) and "stage" in data else data
