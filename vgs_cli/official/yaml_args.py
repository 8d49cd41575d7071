"""Read the official YAML files as plain data, never constructing Python objects.

- `<run>/configs/<time>-project.yaml`: the OmegaConf model/data config of a codebook or transformer run
  (plain YAML: `yaml.safe_load` reads it).
- MelGAN's `args.yml`: `yaml.dump` of an argparse Namespace, tagged `!!python/object:argparse.Namespace`,
  with paths as `!!python/object/apply:pathlib.PosixPath [part, ...]`. `TagIgnoringLoader` builds the
  underlying mapping / list / scalar for any `python/...` tag instead of importing and calling anything
  (PosixPath parts are joined into a string).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from vgs_cli.errors import VgsError

_PYTHON_TAG = "tag:yaml.org,2002:python/"


class TagIgnoringLoader(yaml.SafeLoader):
    """SafeLoader that reads `!!python/...` tagged nodes as the plain data underneath the tag."""


def _plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        items = loader.construct_sequence(node, deep=True)
        if suffix.endswith("Path") and all(isinstance(p, str) for p in items):
            return "/".join(items).replace("//", "/")
        return items
    return loader.construct_scalar(node)


TagIgnoringLoader.add_multi_constructor(_PYTHON_TAG, _plain)


def read_yaml(path: str | os.PathLike, *, ignore_python_tags: bool = False) -> dict[str, Any]:
    """A YAML mapping as plain Python data (`ignore_python_tags` for argparse dumps); errors are VgsErrors."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise VgsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=TagIgnoringLoader) if ignore_python_tags else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise VgsError(f"{path}: not readable YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise VgsError(f"{path}: expected a YAML mapping at the top, found {type(data).__name__}")
    return data


def dig(data: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """`data["a"]["b"]["c"]` for "a.b.c", or `default` when any level is missing."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
