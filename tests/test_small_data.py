"""Small datasets (issue 20): every stage validates on an automatic hold-out when the data has no valid split,
and clips shorter than 10 s reach the shards and the training batches at full size.

Toy shards are written directly (no video decoding); the short-clip test runs the real `prepare synthetic`
path on two 3-s clips at 32 px. Training runs are 1 step on tiny presets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vgs_cli.config.spec import SPEC
from vgs_cli.data.dataset import ShardDataset, auto_valid_split
from vgs_cli.data.shard_writer import write_clips
from vgs_cli.data.shards import ClipRecord, iter_clips, read_manifest
from vgs_cli.train.classify import mel_stats
from vgs_cli.train.holdout import ValidSplit
from vgs_cli.train.runner import new_config, run, stage_module

N_TRAIN = 12  # -> 2 held out (round(0.15 * 12)), 10 trained on


def _write(root: Path, n: int, valid: int = 0) -> Path:
    """`n` train (+ `valid`) clips of 2 classes: class k brightens mel band k; a quiet noise wav."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(n + valid):
        k = i % 2
        mel = np.full((80, 860), 0.2, np.float32)
        mel[40 * k:40 * k + 40, ::4] = 0.8
        wav = (0.05 * rng.standard_normal(SPEC.num_samples)).astype(np.float32)
        records.append(ClipRecord(id=f"c{i:02d}", split="train" if i < n else "valid", mel=mel, wav=wav, label=k))
    write_clips(root, records, classes=["a", "b"])
    return root


@pytest.fixture(scope="module")
def no_valid(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("holdout") / "data", N_TRAIN)


def _held_ids(data: Path) -> tuple[set[str], set[str]]:
    ids = ShardDataset(data, "train", fields=("id",)).ids()
    train, valid = auto_valid_split(ids)
    return {ids[i] for i in train}, {ids[i] for i in valid}


def _item_ids(ds) -> list[str]:
    """Clip ids of a task dataset: a Subset of a ShardDataset (possibly wrapped by MelCrops / SegmentDataset)."""
    ds = getattr(ds, "base", ds)
    return [ds.dataset.ids()[i] for i in ds.indices]


def test_shard_ids_match_the_items_and_the_split_is_stable(no_valid):
    data = ShardDataset(no_valid, "train", fields=("id",))
    assert data.ids() == [data[i]["id"] for i in range(len(data))] == [f"c{i:02d}" for i in range(N_TRAIN)]
    train, valid = _held_ids(no_valid)
    assert len(valid) == 2 and len(train) == 10 and not train & valid
    assert _held_ids(no_valid) == (train, valid)  # the same clips every time (a hash, not a random draw)


@pytest.mark.parametrize("stage", ["codebook", "vocoder", "melception", "vggishish"])
def test_every_stage_holds_out_the_same_clips(stage, no_valid, capsys):
    module = stage_module(stage)
    opts = {"lpaps": "none"} if stage == "codebook" else {}
    task = module.make_task(new_config(module, stage, "tiny", None, []), no_valid, **opts)
    train, valid = _held_ids(no_valid)
    assert set(_item_ids(task.train_dataset())) == train
    assert set(_item_ids(task.valid_dataset())) == valid
    assert f"has no valid split: validating on 2 of its {N_TRAIN} training clips" in capsys.readouterr().err


def test_classifier_input_statistics_leave_the_held_out_clips_out(tmp_path):
    """mel_stats (melception / vggishish input standardisation) reads only the clips trained on."""
    mels = {f"c{i:02d}": np.full((80, 860), 0.05 * i, np.float32) for i in range(N_TRAIN)}  # a level per clip
    wav = np.zeros(SPEC.num_samples, np.float32)
    write_clips(tmp_path / "d", [ClipRecord(id=i, split="train", mel=m, wav=wav, label=k % 2)
                                 for k, (i, m) in enumerate(mels.items())], classes=["a", "b"])
    train, _ = _held_ids(tmp_path / "d")
    mean, std = mel_stats(tmp_path / "d", min_std=1e-9)
    levels = np.array([0.05 * int(i[1:]) for i in sorted(train)])  # every frame of a clip is at its level
    np.testing.assert_allclose(mean, levels.mean(), atol=1e-6)
    np.testing.assert_allclose(std, levels.std(), atol=1e-6)
    assert abs(levels.mean() - 0.05 * np.arange(N_TRAIN).mean()) > 0.01  # all 12 clips would differ


def test_data_with_a_valid_split_or_too_few_clips_is_left_alone(tmp_path, capsys):
    own = _write(tmp_path / "own", 8, valid=2)
    assert ValidSplit(own).held_out() is None
    assert capsys.readouterr().err == ""
    few = _write(tmp_path / "few", 5)
    assert ValidSplit(few).held_out() is None
    assert "only 5 training clip(s)" in capsys.readouterr().err


def _record_batches(monkeypatch, task_cls) -> dict[str, list]:
    """Wrap `task_cls`'s train/eval steps to record each batch's ids and mel shape."""
    seen: dict[str, list] = {"train": [], "valid": [], "shape": []}
    train_step, eval_step = task_cls.train_step, task_cls.eval_step

    def train(self, models, batch, ctx):
        seen["train"] += list(batch["id"])
        seen["shape"].append(tuple(batch["mel"].shape))
        return train_step(self, models, batch, ctx)

    def evaluate(self, models, batch):
        seen["valid"] += list(batch["id"])
        return eval_step(self, models, batch)

    monkeypatch.setattr(task_cls, "train_step", train)
    monkeypatch.setattr(task_cls, "eval_step", evaluate)
    return seen


@pytest.mark.parametrize("stage", ["codebook", "vggishish"])
def test_a_run_without_valid_split_writes_best_and_never_trains_on_the_held_out(stage, no_valid, tmp_path,
                                                                                monkeypatch, capsys):
    """One step over all 10 training clips, then validation on the 2 held-out ones -> best.ckpt."""
    module = stage_module(stage)
    task_cls = module.CodebookTask if stage == "codebook" else module.VGGishishTask
    seen = _record_batches(monkeypatch, task_cls)
    sets = ["train.steps=1", "train.batch_size=10", "train.eval_every=1", "train.eval_batches=0"]
    opts = {}
    if stage == "codebook":
        sets += ["train_frames=64", "num_plots=0"]
        opts = {"lpaps": "none"}
    metrics = run(stage, data=no_valid, preset="tiny", run_dir=tmp_path / "run", device="cpu", overrides=sets,
                  **opts)
    train, valid = _held_ids(no_valid)
    assert set(seen["train"]) == train and len(seen["train"]) == 10  # every training clip, no held-out one
    assert sorted(seen["valid"]) == sorted(valid)
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert np.isfinite(metrics["rec_loss" if stage == "codebook" else "loss"])
    assert "validating on 2 of its 12 training clips, held out from training" in capsys.readouterr().err


def test_short_clips_are_padded_into_the_shards_and_trained_on(tmp_path, monkeypatch):
    """Two 3-s synthetic videos through `prepare synthetic` with mode=pad: both stored at 10 s (audio zero-padded,
    the last frame held) and a classifier step trains on full 848-frame crops of both."""
    from vgs_cli.config.prepare import PRESETS
    from vgs_cli.prepare.folder import prepare_synthetic
    from vgs_cli.train.vggishish import VGGishishTask

    data = tmp_path / "short"
    cfg = PRESETS["tiny"].replace(image_size=32, mode="pad")
    manifest = prepare_synthetic(data, cfg, n_clips=2, duration_s=3.0, seed=0, size=32, progress=False,
                                 log=lambda msg: None)
    assert manifest["clips"] == 2 and manifest["failures"] == 0 and manifest["settings"]["mode"] == "pad"
    clips = list(iter_clips(data, fields=("id", "mel", "wav", "feats")))
    sr = SPEC.sample_rate
    for c in clips:
        assert c["wav"].shape == (SPEC.num_samples,) and c["mel"].shape == (80, SPEC.stored_frames)
        assert np.abs(c["wav"][: 2 * sr]).max() > 0.01 and not c["wav"][int(3.5 * sr):].any()  # 3 s, then zeros
        f = c["feats"]["efficientnet_lite0"]
        assert f.shape == (SPEC.num_video_frames, 1280)
        np.testing.assert_array_equal(f[-1], f[80])  # the last decoded frame (3 s = 64.5 frames) is held
    seen = _record_batches(monkeypatch, VGGishishTask)
    run("vggishish", data=data, preset="tiny", run_dir=tmp_path / "run", device="cpu",
        overrides=["train.steps=1", "train.batch_size=2"])
    assert sorted(seen["train"]) == sorted(c["id"] for c in clips)
    assert seen["shape"] == [(2, 80, SPEC.model_frames)]  # full-size crops of the padded 3-s clips
    assert read_manifest(data)["splits"]["train"] == 2
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
