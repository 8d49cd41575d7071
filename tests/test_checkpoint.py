"""The checkpoint format (atomic, weights_only, self-describing) and rebuilding models from it."""

from __future__ import annotations

import importlib
import os

import _toy_task as T
import pytest
import torch

from vgs_cli import checkpoint as ck
from vgs_cli.errors import CheckpointError
from vgs_cli.loading import models as loading
from vgs_cli.train.trainer_utils import rng_state, set_rng_state


def _save(path, stage="toy", **kw):
    model = T.ToyModel(T.ToyModelConfig())
    args = dict(stage=stage, config=T.ToyConfig().to_dict(), state_dict=model.state_dict(), extra={"step": 3})
    return ck.save_checkpoint(path, **{**args, **kw}), model


def test_round_trip_is_weights_only_loadable(tmp_path):
    model = T.ToyModel(T.ToyModelConfig())
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    rng = rng_state()
    expected = torch.rand(3)
    path, _ = _save(tmp_path / "a.ckpt", state_dict=model.state_dict(),
                    train_state={"optimizers": {"main": opt.state_dict()}, "rng": [rng], "best": None})
    raw = torch.load(path, weights_only=True)  # the file itself, no helper: must not need pickle globals
    assert raw["format"] == "vgs-checkpoint" and raw["format_version"] == ck.FORMAT_VERSION
    ckpt = ck.load_checkpoint(path, stage="toy")
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in model.state_dict().items())
    assert ckpt["config"] == T.ToyConfig().to_dict() and ckpt["extra"] == {"step": 3}
    fresh = torch.optim.Adam(T.ToyModel(T.ToyModelConfig()).parameters())
    fresh.load_state_dict(ckpt["train_state"]["optimizers"]["main"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    set_rng_state(ckpt["train_state"]["rng"][0])  # the RNG state survives the trip: same draws again
    assert torch.equal(torch.rand(3), expected)


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path, model = _save(tmp_path / "last.ckpt")

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _save(path, extra={"step": 99})
    monkeypatch.undo()
    ckpt = ck.load_checkpoint(path)
    assert ckpt["extra"] == {"step": 3}
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temp file left behind


def test_wrong_format_version_stage_and_corruption_are_clear_errors(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a vgs checkpoint"):
        ck.load_checkpoint(tmp_path / "plain.pt")
    path, _ = _save(tmp_path / "v.ckpt")
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "format_version": 99}, tmp_path / "v99.ckpt")
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        ck.load_checkpoint(tmp_path / "v99.ckpt")
    with pytest.raises(CheckpointError, match="is a 'toy' checkpoint, expected codebook or vocoder"):
        ck.load_checkpoint(path, stage=("codebook", "vocoder"))
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable vgs checkpoint"):
        ck.load_checkpoint(tmp_path / "cut.ckpt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        ck.load_checkpoint(tmp_path / "nope.ckpt")


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": ck.FORMAT, "format_version": ck.FORMAT_VERSION, "x": _Evil(str(marker))},
               tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused to load"):
        ck.load_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------- load_model
@pytest.fixture
def toy_models(monkeypatch):
    monkeypatch.setitem(loading.MODELS, "toy", (T.ToyConfig, T.ToyModel))


def test_load_model_rebuilds_from_the_file_alone(tmp_path, toy_models):
    cfg = T.ToyConfig(model=T.ToyModelConfig(in_dim=5, out_dim=3))
    model = T.ToyModel(cfg.model)
    ck.save_checkpoint(tmp_path / "m.ckpt", stage="toy", config=cfg.to_dict(), state_dict=model.state_dict())
    loaded, loaded_cfg, ckpt = loading.load_model(tmp_path / "m.ckpt", stage="toy")
    assert loaded_cfg == cfg and not loaded.training and ckpt["stage"] == "toy"
    x = torch.randn(2, 5)
    assert torch.equal(loaded(x), model(x))


def test_load_model_errors_name_the_problem(tmp_path, toy_models):
    good = T.ToyModel(T.ToyModelConfig()).state_dict()
    bad = {"linear.weight": torch.zeros(2, 5), "extra.weight": torch.zeros(1)}
    _save(tmp_path / "bad.ckpt", state_dict=bad)
    with pytest.raises(CheckpointError, match=r"missing linear\.bias; unexpected extra\.weight; "
                                              r"wrong shape linear\.weight \(2, 5\) vs \(2, 4\)"):
        loading.load_model(tmp_path / "bad.ckpt")
    _save(tmp_path / "cfg.ckpt", state_dict=good, config={**T.ToyConfig().to_dict(), "colour": 1})
    with pytest.raises(CheckpointError, match="unknown key"):
        loading.load_model(tmp_path / "cfg.ckpt")
    _save(tmp_path / "ok.ckpt", state_dict=good)
    with pytest.raises(CheckpointError, match="expected codebook"):
        loading.load_model(tmp_path / "ok.ckpt", stage="codebook")
    _save(tmp_path / "other.ckpt", stage="mystery", state_dict=good)
    with pytest.raises(CheckpointError, match="stage 'mystery' has no model to load"):
        loading.load_model(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="without checkpoints/best.ckpt"):
        loading.load_model(tmp_path)  # a folder that is no run folder


def test_run_folders_resolve_and_stages_peek_without_loading(tmp_path, toy_models):
    run = tmp_path / "run"
    assert loading.run_checkpoint(run) is None
    last, _ = _save(run / "checkpoints" / "last.ckpt")
    assert loading.resolve_checkpoint(run) == last
    best, model = _save(run / "checkpoints" / "best.ckpt")
    assert loading.resolve_checkpoint(run) == best and loading.resolve_checkpoint(best) == best
    loaded, _, _ = loading.load_model(run, "toy")  # run folders load like their best file
    assert torch.equal(loaded.linear.weight, model.linear.weight)
    assert loading.peek_stage(best) == "toy"
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    assert loading.peek_stage(tmp_path / "junk.ckpt") is None and loading.peek_stage(tmp_path / "none") is None
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")  # a torch file, not a vgs checkpoint
    assert loading.peek_checkpoint(tmp_path / "plain.pt") is None


@pytest.mark.parametrize("stage", sorted(loading.MODELS))
def test_every_stage_in_the_table_round_trips(tmp_path, stage):
    """The DEVELOPERS.md table against the real classes: tiny preset -> model -> file -> identical model."""
    config_cls, model_cls = loading.MODELS[stage]
    cfg = importlib.import_module(config_cls.__module__).PRESETS["tiny"]
    if getattr(cfg.model, "num_classes", None) == 0:  # filled in from the shards by make_task
        cfg = cfg.replace(model=cfg.model.replace(num_classes=7))
    torch.manual_seed(0)
    model = model_cls(cfg.model)
    ck.save_checkpoint(tmp_path / "m.ckpt", stage=stage, config=cfg.to_dict(), state_dict=model.state_dict())
    loaded, loaded_cfg, _ = loading.load_model(tmp_path / "m.ckpt", stage=stage)
    assert type(loaded) is type(model) and loaded_cfg == cfg and not loaded.training
    theirs = loaded.state_dict()
    assert theirs.keys() == model.state_dict().keys()
    assert all(torch.equal(theirs[k], v) for k, v in model.state_dict().items())
