"""ShardDataset: the reference crops/resampling, split filtering, lazy per-process handles, collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vgs_cli.config.spec import SPEC
from vgs_cli.data import shard_writer, shards
from vgs_cli.data.dataset import ShardDataset, collate, resample_indices, sample_feats
from vgs_cli.errors import DataError

D = 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 clips: feats[t, :] = 1000 * clip + t (so frame picks are readable), mel[f, t] = t / 1000 + clip."""
    root = tmp_path_factory.mktemp("ds")
    recs = []
    for i in range(8):
        t = np.arange(SPEC.num_video_frames, dtype=np.float32)
        feats = np.repeat((1000.0 * i + t)[:, None], D, axis=1)
        mel = np.tile(np.arange(SPEC.stored_frames, dtype=np.float32) / 1000.0, (SPEC.n_mels, 1)) + i
        wav = np.full(SPEC.num_samples, 0.01 * i, np.float32) if i != 7 else None
        recs.append(shards.ClipRecord(id=f"c{i}", split="train" if i < 6 else "valid", mel=mel,
                                      feats={"toy": feats, "big": np.zeros((SPEC.num_video_frames, 3), np.float32)},
                                      wav=wav, label=i % 3, source=f"c{i}.mp4"))
    shard_writer.write_clips(root, recs, classes=["a", "b", "c"], num_shards=2, wav_dtype="float32",
                       extractors={"toy": {"dim": D}, "big": {"dim": 3}})
    return root


def test_resample_indices_match_the_reference_rule():
    # ResampleFrames(feat_sample_size) on the 212 centre-cropped frames, worked out by hand:
    # linspace(0, 212, n, endpoint=False) floored, + 212 // (n + 1).
    assert resample_indices(212, 1).tolist() == [106]
    assert resample_indices(212, 5).tolist() == [35, 77, 119, 162, 204]
    assert resample_indices(212, 212).tolist() == list(range(212))
    assert resample_indices(212, 2).tolist() == [70, 176]
    with pytest.raises(DataError):
        resample_indices(212, 0)
    with pytest.raises(DataError):
        resample_indices(212, 213)


def test_sample_feats_crops_centre_then_resamples():
    feats = np.arange(215, dtype=np.float32)[:, None].repeat(2, axis=1)  # row t holds t
    assert sample_feats(feats, None)[:, 0].tolist() == list(range(215))
    assert sample_feats(feats, 212)[:, 0].tolist() == list(range(1, 213))  # (215 - 212) // 2 = 1
    assert sample_feats(feats, 5)[:, 0].tolist() == [36, 78, 120, 163, 205]
    assert sample_feats(feats, 1)[:, 0].tolist() == [107]


def test_items_have_the_documented_shapes_and_values(folder):
    ds = ShardDataset(folder, "train", fields=("mel", "feats", "label", "wav", "id"), feat_frames=5, extractor="toy")
    assert len(ds) == 6 and ds.classes == ["a", "b", "c"] and ds.feat_dim == D
    by_id = {ds[k]["id"]: ds[k] for k in range(len(ds))}
    assert sorted(by_id) == [f"c{i}" for i in range(6)]
    item = by_id["c4"]
    assert item["mel"].shape == (SPEC.n_mels, SPEC.model_frames) and item["mel"].dtype == torch.float32
    start = (SPEC.stored_frames - SPEC.model_frames) // 2  # 6
    assert torch.allclose(item["mel"][0], torch.arange(start, start + 848, dtype=torch.float32) / 1000 + 4)
    assert item["feats"].shape == (5, D)
    assert item["feats"][:, 0].tolist() == [4000 + t for t in (36, 78, 120, 163, 205)]
    assert item["wav"].shape == (SPEC.num_samples,) and torch.allclose(item["wav"], torch.tensor(0.04))
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 1
    assert isinstance(item["index"], int)


def test_crop_modes_and_feature_selection(folder):
    full = ShardDataset(folder, "train", fields=("mel", "feats"), mel_crop=None)
    assert full[0]["mel"].shape == (80, 860)
    assert full.extractor in ("toy", "big") and full[0]["feats"].shape[0] == 215  # default: first extractor
    rnd = ShardDataset(folder, "train", fields=("mel",), mel_crop="random", seed=0)
    starts = {int(round(float(rnd[0]["mel"][0, 0]) * 1000)) % 1000 for _ in range(40)}
    assert starts <= set(range(0, 13)) and len(starts) > 3  # uniform start in 0..12
    one = ShardDataset(folder, "valid", fields=("feats",), feat_frames=1, extractor="big")
    assert one[0]["feats"].shape == (1, 3)
    with pytest.raises(DataError, match="no 'resnet50' features"):
        ShardDataset(folder, "train", fields=("feats",), extractor="resnet50")
    with pytest.raises(DataError, match="split"):
        ShardDataset(folder, "dev")
    with pytest.raises(DataError, match="unknown dataset field"):
        ShardDataset(folder, "train", fields=("pixels",))


def test_clips_without_audio_are_left_out_of_audio_fields(folder):
    assert len(ShardDataset(folder, "valid", fields=("mel", "id"))) == 1  # c7 has no audio track
    feats_only = ShardDataset(folder, "valid", fields=("feats", "id", "has_audio"), extractor="toy")
    assert sorted(feats_only[k]["id"] for k in range(2)) == ["c6", "c7"]
    assert {feats_only[k]["id"]: feats_only[k]["has_audio"] for k in range(2)} == {"c6": True, "c7": False}


def test_dataloader_workers_reopen_handles_and_collate_keeps_ids(folder):
    ds = ShardDataset(folder, "train", fields=("feats", "label", "id"), feat_frames=212, extractor="toy")
    _ = ds[0]  # the parent now holds open handles; forked workers must not use them
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    batches = list(loader)
    ids = [i for b in batches for i in b["id"]]
    assert sorted(ids) == [f"c{i}" for i in range(6)] and isinstance(batches[0]["id"], list)
    b = batches[0]
    assert b["feats"].shape == (4, 212, D) and b["label"].shape == (4,) and b["index"].tolist() == [0, 1, 2, 3]
    for k, cid in enumerate(b["id"]):
        assert float(b["feats"][k, 0, 0]) == 1000 * int(cid[1:]) + 1


def test_tiny_shards_fixture_is_what_its_docstring_says(tiny_shards):
    m = shards.read_manifest(tiny_shards)
    assert m["clips"] == 18 and m["splits"] == {"train": 6, "valid": 6, "test": 6} and m["failures"] == 0
    assert m["classes"] == ["chirp", "drum_roll", "impact", "noise_burst", "siren", "tone"]
    assert list(m["extractors"]) == ["efficientnet_lite0"] and m["extractors"]["efficientnet_lite0"]["dim"] == 1280
    for split in shards.SPLITS:
        ds = ShardDataset(tiny_shards, split, fields=("mel", "feats", "label", "wav", "id"), feat_frames=212)
        assert sorted(int(ds[k]["label"]) for k in range(len(ds))) == list(range(6))  # every class in every split
    item = ds[0]
    assert item["mel"].shape == (80, 848) and item["feats"].shape == (212, 1280) and item["wav"].abs().max() > 0.01
