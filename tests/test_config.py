"""Strict typed configs: unknown keys and wrong types fail loudly, overrides are strict, round trips exact."""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Literal, Optional

import _toy_task as T
import pytest

from vgs_cli.config.base import Config, apply_overrides, preset_names
from vgs_cli.config.train import TrainConfig
from vgs_cli.errors import ConfigError

STAGE_CONFIGS = ["codebook", "transformer", "vocoder", "melception", "vggishish", "prepare"]


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    size: int = 3
    mode: Literal["a", "b"] = "a"
    scale: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Outer(Config):
    name: str
    inner: Inner = dataclasses.field(default_factory=Inner)
    dims: tuple[int, ...] = (1, 2)
    flag: bool = False

    @property
    def total(self) -> int:
        return sum(self.dims) * self.inner.size


def test_round_trip_and_derived_sizes_are_not_stored():
    cfg = Outer(name="x", inner=Inner(size=4, mode="b", scale=0.5), dims=(3, 4), flag=True)
    data = json.loads(cfg.to_json())
    assert data == {"name": "x", "inner": {"size": 4, "mode": "b", "scale": 0.5}, "dims": [3, 4], "flag": True}
    back = Outer.from_dict(data)
    assert back == cfg and isinstance(back.dims, tuple) and back.total == 28
    assert "total" not in data and "effective_batch" not in TrainConfig().to_dict()
    assert TrainConfig(batch_size=4, grad_accum=3).effective_batch == 12
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "y"  # type: ignore[misc]


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "nmae": 1}, r"Outer: unknown key\(s\) nmae \(allowed: name, inner, dims, flag\)"),
    ({"name": "x", "inner": {"sise": 1}}, r"Outer\.inner: unknown key\(s\) sise"),
    ({"name": 3}, r"Outer\.name: expected a string, got 3"),
    ({"name": "x", "inner": {"size": "3"}}, r"Outer\.inner\.size: expected an integer, got '3'"),
    ({"name": "x", "inner": {"size": True}}, r"Outer\.inner\.size: expected an integer"),
    ({"name": "x", "inner": {"size": 2.5}}, r"Outer\.inner\.size: expected an integer"),
    ({"name": "x", "inner": {"mode": "c"}}, r"Outer\.inner\.mode: 'c' is not one of \['a', 'b'\]"),
    ({"name": "x", "inner": {"scale": "big"}}, r"Outer\.inner\.scale: expected a number"),
    ({"name": "x", "dims": [1, "2"]}, r"Outer\.dims\[1\]: expected an integer"),
    ({"name": "x", "dims": 5}, r"Outer\.dims: expected a list"),
    ({"name": "x", "flag": "yes"}, r"Outer\.flag: expected true/false"),
    ({"name": "x", "inner": [1]}, r"Outer\.inner: expected a mapping"),
    ({}, r"Outer: .*missing 1 required positional argument: 'name'"),
])
def test_strict_loading_names_the_bad_field(data, message):
    with pytest.raises(ConfigError, match=message):
        Outer.from_dict(data)


def test_numbers_are_coerced_only_where_safe():
    cfg = Outer.from_dict({"name": "x", "inner": {"scale": 2}})
    assert cfg.inner.scale == 2.0 and isinstance(cfg.inner.scale, float)
    assert Outer.from_dict({"name": "x", "inner": {"scale": None}}).inner.scale is None


def test_overrides_parse_json_and_are_strict():
    cfg = Outer(name="x")
    out = apply_overrides(cfg, ["inner.size=7", "inner.mode=b", "dims=[5, 6, 7]", "flag=true", "name=hello world",
                                "inner.scale=1e-3"])
    assert out == Outer(name="hello world", inner=Inner(size=7, mode="b", scale=1e-3), dims=(5, 6, 7), flag=True)
    assert cfg == Outer(name="x")  # the original is untouched (frozen)
    assert apply_overrides(cfg, ['name="42"']).name == "42"  # quoted JSON keeps a number-looking string
    with pytest.raises(ConfigError, match="override 'inner.colour': unknown key 'colour'"):
        apply_overrides(cfg, ["inner.colour=1"])
    with pytest.raises(ConfigError, match="override 'inner.size.x': unknown key 'x'"):
        apply_overrides(cfg, ["inner.size.x=1"])
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        apply_overrides(cfg, ["inner.size"])
    with pytest.raises(ConfigError, match=r"Outer\.inner\.size: expected an integer, got 'seven'"):
        apply_overrides(cfg, ["inner.size=seven"])


def test_train_config_rejects_unknown_schedule_and_precision():
    with pytest.raises(ConfigError, match=r"schedule: 'step' is not one of"):
        TrainConfig.from_dict({"schedule": "step"})
    with pytest.raises(ConfigError, match=r"precision: 'fp8' is not one of"):
        apply_overrides(TrainConfig(), ["precision=fp8"])


@pytest.mark.parametrize("stage", STAGE_CONFIGS)
def test_stage_presets_round_trip_through_json(stage):
    module = importlib.import_module(f"vgs_cli.config.{stage}")
    assert {"tiny", "vas", "vggsound"} <= set(module.PRESETS), preset_names(module.PRESETS)
    for name, cfg in module.PRESETS.items():
        back = type(cfg).from_dict(json.loads(cfg.to_json()))
        assert back == cfg, (stage, name)
        data = cfg.to_dict()
        data["not_a_field"] = 1
        with pytest.raises(ConfigError, match="not_a_field"):
            type(cfg).from_dict(data)


def test_toy_stage_config_used_by_the_trainer_tests_is_strict_too():
    cfg = T.ToyConfig()
    assert T.ToyConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"ToyConfig\.train\.stpes|unknown key\(s\) stpes"):
        T.ToyConfig.from_dict({**cfg.to_dict(), "train": {**cfg.train.to_dict(), "stpes": 3}})


def test_a_record_cannot_be_set_but_round_trips_from_files():
    """`finetune.lr_scale` is what vgs records about LoRA's default rate (train/init.py): `--set` of it is
    refused with a line that names what to set instead, while a config (or checkpoint) carrying it loads."""
    from vgs_cli.config.transformer import PRESETS, TransformerConfig

    tiny = PRESETS["tiny"]
    with pytest.raises(ConfigError, match=r"finetune\.lr_scale.*a record vgs writes.*set train\.lr instead"):
        apply_overrides(tiny, ["finetune.lr_scale=3"])
    recorded = tiny.replace(finetune=tiny.finetune.replace(lr_scale=10.0))
    assert TransformerConfig.from_dict(json.loads(recorded.to_json())).finetune.lr_scale == 10.0
    assert apply_overrides(recorded, ["train.lr=1e-4"]).finetune.lr_scale == 10.0  # other keys: as before
    assert "RECORDS" not in {f.name for f in dataclasses.fields(TransformerConfig)}
