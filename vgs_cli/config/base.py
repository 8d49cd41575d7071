"""Strict (de)serialisation for frozen dataclass configs.

Every stage config is a tree of frozen dataclasses deriving from `Config`. `to_dict` gives plain JSON-able
data (stored inside checkpoints and run folders); `from_dict` rebuilds it and rejects unknown keys, so a
typo in a config file or a checkpoint from an incompatible version fails loudly instead of being ignored.
Derived sizes (token grid, block size, ...) are properties on the dataclasses, never stored fields.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from vgs_cli.errors import ConfigError

T = TypeVar("T", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: frozen dataclass with strict dict round trip."""

    # {dotted key: what it records}: fields vgs writes as a record of the run (kept in config.json and
    # checkpoints so later runs read them) that `--set` may not change. A class attribute, not a field.
    RECORDS: typing.ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
        return config_from_dict(cls, data, where=where or cls.__name__)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _to_plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], *, where: str) -> T:
    """Build `cls` from `data`; unknown keys, missing required keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(fields)})")
    kwargs = {name: _coerce(hints[name], data[name], f"{where}.{name}") for name in fields if name in data}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required field
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        elem = args[0] if args else Any
        items = [_coerce(elem, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Config):
        return config_from_dict(tp, value, where=where)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def split_override(item: str) -> tuple[str, str]:
    """`"a.b.c=value"` -> `("a.b.c", "value")`: the one parse of a `--set` item."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    key, raw = item.split("=", 1)
    return key.strip(), raw


def apply_overrides(cfg: T, overrides: list[str] | tuple[str, ...]) -> T:
    """Apply `a.b.c=value` overrides (value parsed as JSON, else taken as a string), strictly."""
    data = cfg.to_dict()
    for item in overrides:
        key, raw = split_override(item)
        if key in type(cfg).RECORDS:
            raise ConfigError(f"override {key!r}: a record vgs writes, not an option ({type(cfg).RECORDS[key]})")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {key!r}: unknown key {part!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"override {key!r}: unknown key {parts[-1]!r}")
        node[parts[-1]] = value
    return type(cfg).from_dict(data)


def preset_names(presets: dict[str, Any]) -> str:
    return "|".join(sorted(presets))
