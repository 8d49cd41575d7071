"""Typed, frozen configuration: one dataclass tree per stage, presets `vas`, `vggsound`, `tiny`."""

from vgs_cli.config.base import Config, apply_overrides, config_from_dict, preset_names

__all__ = ["Config", "apply_overrides", "config_from_dict", "preset_names"]
