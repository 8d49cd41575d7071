"""`vgs train transformer`: the codes cache, config resolution, the optimiser split, learning from features,
and the CLI end to end on the shared tiny synthetic shards.

The codebooks here are built, not trained (tests/_codebook.py): a randomly initialised tiny VQGAN whose code
vectors are set by k-means++ over its own encoder outputs on the training mels (a second, instead of minutes
of VQGAN training). Such codes are deterministic functions of the mel, which is all the transformer needs.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _codebook import build_codebook

from vgs_cli.audio.spec import to_model_range
from vgs_cli.checkpoint import load_checkpoint
from vgs_cli.config.codebook import CodebookConfig
from vgs_cli.config.transformer import PRESETS, TransformerConfig
from vgs_cli.data.dataset import ShardDataset
from vgs_cli.data.shard_writer import write_clips
from vgs_cli.data.shards import ClipRecord, read_manifest
from vgs_cli.errors import ConfigError, DataError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.models import check_codebook_match
from vgs_cli.models.gpt import GPT
from vgs_cli.train.codes_cache import load_or_build_codes
from vgs_cli.train.runner import run
from vgs_cli.train.transformer import load_codebook, param_groups, resolve_config

K = 4  # classes of the toy set


@pytest.fixture(scope="module")
def toy_shards(tmp_path_factory) -> Path:
    """Clips whose sound is fixed by their class: class k pulses mel band k at its own rate; the "video"
    features are the class one-hot plus noise (feats [215, 4]). 32 train / 8 valid clips."""
    root = tmp_path_factory.mktemp("toy") / "shards"
    rng = np.random.default_rng(0)
    t = np.arange(860)
    records = []
    for i in range(40):
        k = i % K
        mel = np.full((80, 860), 0.2, np.float32)
        mel[16 * k:16 * k + 16, (t // (16 * (k + 2))) % 2 == 0] = 0.8
        feats = np.zeros((215, K), np.float32)
        feats[:, k] = 1.0
        feats += 0.1 * rng.standard_normal(feats.shape).astype(np.float32)
        records.append(ClipRecord(id=f"clip{i:03d}", split="train" if i < 32 else "valid", mel=mel,
                                  feats={"toy": feats}, wav=np.zeros(220500, np.float32), label=k))
    write_clips(root, records, classes=[f"c{k}" for k in range(K)], extractors={"toy": {"dim": K, "fps": 21.5}})
    return root


@pytest.fixture(scope="module")
def toy_codebook(toy_shards, tmp_path_factory) -> Path:
    return build_codebook(toy_shards, tmp_path_factory.mktemp("cb") / "codebook.ckpt")


def _valid_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "valid"]


def test_codes_cache_is_reused_and_rebuilt_for_another_codebook(toy_shards, toy_codebook, tmp_path):
    model, _ = load_codebook(toy_codebook)
    encode = lambda mel: model.encode(mel)[1]  # noqa: E731
    sha = file_sha256(toy_codebook)
    first = load_or_build_codes(encode, sha, toy_shards, "valid", torch.device("cpu"), cache_dir=tmp_path)
    assert first.built and first.codes.shape == (8, 5, 53) and first.path.is_file()
    assert first.labels.tolist() == [i % K for i in range(32, 40)] and first.ids[0] == "clip032"
    ds = ShardDataset(toy_shards, "valid", fields=("mel",), mel_crop="center")
    direct = model.encode(to_model_range(ds[3]["mel"])[None, None])[1][0]
    assert np.array_equal(first.codes[3], direct.numpy())  # centre crop, same order as the dataset

    again = load_or_build_codes(encode, sha, toy_shards, "valid", torch.device("cpu"), cache_dir=tmp_path)
    assert not again.built and again.path == first.path and np.array_equal(again.codes, first.codes)

    other = build_codebook(toy_shards, tmp_path / "other.ckpt", seed=1)
    model2, _ = load_codebook(other)
    rebuilt = load_or_build_codes(lambda mel: model2.encode(mel)[1], file_sha256(other), toy_shards, "valid",
                                  torch.device("cpu"), cache_dir=tmp_path)
    assert rebuilt.built and rebuilt.path != first.path
    assert not np.array_equal(rebuilt.codes, first.codes)


def test_resolve_config_takes_sizes_from_data_and_codebook(toy_shards, toy_codebook):
    manifest = read_manifest(toy_shards)
    cb_cfg = CodebookConfig.from_dict(load_checkpoint(toy_codebook)["config"])
    cfg = resolve_config(PRESETS["vas"], manifest, cb_cfg, "feats+class", 5, None)
    m = cfg.model
    assert (m.vocab_size, m.grid, m.feat_dim, m.num_classes, m.feat_frames) == (16, (5, 53), K, K, 5)
    assert cfg.extractor == "toy" and m.n_layer == 24 and m.block_size == 5 + 1 + 265
    assert resolve_config(PRESETS["tiny"], manifest, cb_cfg, "none", 212, None).model.cond_len == 1
    assert resolve_config(PRESETS["tiny"], manifest, cb_cfg, None, None, None).model.feat_frames == 5  # preset's
    with pytest.raises(ConfigError, match="--condition"):
        resolve_config(PRESETS["tiny"], manifest, cb_cfg, "video", 5, None)
    with pytest.raises(DataError, match="no 'resnet50' features"):
        resolve_config(PRESETS["tiny"], manifest, cb_cfg, "feats", 5, "resnet50")
    with pytest.raises(ConfigError, match="--feat-frames"):
        resolve_config(PRESETS["tiny"], manifest, cb_cfg, "feats", 300, None)
    with pytest.raises(DataError, match="class labels"):
        resolve_config(PRESETS["tiny"], {**manifest, "classes": []}, cb_cfg, "class", 5, None)


def test_weight_decay_only_on_linear_weights():
    model = GPT(PRESETS["tiny"].model.replace(condition="feats+class"))
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(n.endswith(".weight") and any(k in n for k in ("attn.", "mlp.", "head")) for n in decayed)
    assert "head.weight" in decayed and "blocks.0.attn.key.weight" in decayed
    kept = {names[id(p)] for p in no_decay["params"]}
    assert {"pos_emb", "tok_emb.weight", "feat_embedder.weight", "cls_embedder.weight", "ln_f.weight",
            "blocks.0.attn.key.bias"} <= kept
    assert len(decayed) + len(kept) == len(names)


@pytest.mark.slow
def test_features_inform_the_codes_the_unconditioned_model_must_guess(toy_shards, toy_codebook, tmp_path):
    """Same data, budget and seed; only --condition differs. With nothing before them, the first time
    column's codes can only be predicted from the condition: the feature model gets them almost exactly,
    the unconditioned one must guess the class (about ln(4)/5 = 0.28 nats per code at best). Measured
    (60 steps): first-step loss 0.050 vs 0.332; whole-clip loss 0.026 vs 0.031 (later codes follow from
    the earlier ones in this toy set, so both models end up near zero there). Zeroing the features the
    task feeds makes the first assertion fail (0.337)."""
    out = {}
    for condition in ("feats", "none"):
        out[condition] = run("transformer", data=toy_shards, preset="tiny", run_dir=tmp_path / condition,
                             overrides=["train.steps=60", "train.eval_every=60"], device="cpu",
                             codebook=toy_codebook, condition=condition, feat_frames=5, extractor=None)
    feats, none = out["feats"], out["none"]
    assert feats["loss_first_step"] < 0.1
    assert none["loss_first_step"] > feats["loss_first_step"] + 0.15
    assert feats["loss"] < none["loss"] + 0.02 and feats["loss"] < 0.2  # learned, and no worse overall
    assert feats["perplexity"] == pytest.approx(np.exp(feats["loss"]), rel=1e-6)


@pytest.mark.parametrize("condition", ["class", "feats+class"])
def test_class_conditions_train_and_resume_with_their_own_settings(toy_shards, toy_codebook, tmp_path, condition):
    def go(steps: int, **opts):
        opts = {"condition": None, "feat_frames": None, "extractor": None, "codebook": toy_codebook, **opts}
        return run("transformer", data=toy_shards, preset="tiny", run_dir=tmp_path / "run",
                   overrides=[f"train.steps={steps}", "train.eval_every=2"], device="cpu", **opts)

    res = go(2, condition=condition, feat_frames=1)
    assert res["step"] == 2 and np.isfinite(res["loss"])
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", stage="transformer")
    assert ckpt["extra"]["condition"] == condition and ckpt["extra"]["classes"] == [f"c{k}" for k in range(K)]
    assert ckpt["state_dict"]["pos_emb"].shape[1] == (1 if condition == "class" else 2) + 265
    # resuming without the options keeps the run's own; other settings or another codebook are refused
    assert go(4)["step"] == 4
    cfg = TransformerConfig.from_dict(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["config"])
    assert cfg.model.condition == condition and cfg.codebook_sha256 == file_sha256(toy_codebook)
    with pytest.raises(VgsError, match=re.escape(f"trained with --condition {condition};")):
        go(6, condition="none")
    other = build_codebook(toy_shards, tmp_path / "other.ckpt", seed=2)
    with pytest.raises(VgsError, match="another codebook"):
        go(6, codebook=other)


@pytest.fixture(scope="module")
def tiny_codebook(tiny_shards, tmp_path_factory) -> Path:
    return build_codebook(tiny_shards, tmp_path_factory.mktemp("tinycb") / "codebook.ckpt")


def test_cli_end_to_end_on_tiny_shards(tiny_shards, tiny_codebook, tmp_path, monkeypatch, capsys):
    from vgs_cli.cli.app import main

    data = tmp_path / "shards"  # a private copy: the codes cache is written next to the data
    shutil.copytree(tiny_shards, data)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["vgs", "train", "transformer", "--data", str(data), "--run", str(run_dir),
                                      "--codebook", str(tiny_codebook), "--condition", "feats",
                                      "--feat-frames", "212", "--steps", "3", "--batch-size", "2",
                                      "--set", "train.eval_every=3", "--device", "cpu"])
    main()
    ckpt = load_checkpoint(run_dir / "checkpoints" / "best.ckpt", stage="transformer")
    cfg = TransformerConfig.from_dict(ckpt["config"])
    manifest = read_manifest(data)
    name = next(iter(manifest["extractors"]))
    assert cfg.model.vocab_size == 16 and cfg.model.feat_frames == 212 and cfg.model.block_size == 477
    assert cfg.model.feat_dim == manifest["extractors"][name]["dim"] and cfg.extractor == name
    assert cfg.model.num_classes == len(manifest["classes"])
    extra = ckpt["extra"]
    assert extra["codebook_sha256"] == file_sha256(tiny_codebook) and extra["extractor"] == name
    assert extra["extractor_settings"] == manifest["extractors"][name] and extra["feat_frames"] == 212
    assert extra["codebook_config"] == load_checkpoint(tiny_codebook)["config"]
    from vgs_cli.loading.models import load_model

    model, loaded_cfg, _ = load_model(run_dir / "checkpoints" / "best.ckpt", "transformer")  # file alone rebuilds it
    assert isinstance(model, GPT) and loaded_cfg == cfg
    valid = _valid_rows(run_dir)[-1]
    assert valid["step"] == 3 and {"loss", "loss_first_step", "accuracy", "perplexity"} <= set(valid)
    assert 0.5 * np.log(16) < valid["loss"] < 2 * np.log(16)  # 3 steps: still near chance
    assert len(list((data / "codes_cache").glob("codes_*.npz"))) == 2  # train + valid, reused on resume

    check_codebook_match(run_dir / "checkpoints" / "last.ckpt", tiny_codebook)
    other = build_codebook(data, tmp_path / "other.ckpt", seed=3)
    with pytest.raises(VgsError, match="not the codebook this transformer was trained with"):
        check_codebook_match(ckpt, other)

    monkeypatch.setattr(sys, "argv", ["vgs", "train", "transformer", "--data", str(data), "--run",
                                      str(tmp_path / "bad"), "--codebook", str(tiny_codebook), "--condition", "video"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "error: --condition must be one of" in capsys.readouterr().err


def test_cli_sync_flag_trains_a_time_aligned_model_that_samples_alike_with_and_without_cache(
        tiny_shards, tiny_codebook, tmp_path, monkeypatch):
    from vgs_cli.cli.app import main
    from vgs_cli.loading.models import load_model
    from vgs_cli.models.sampling import sample

    data = tmp_path / "shards"
    shutil.copytree(tiny_shards, data)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["vgs", "train", "transformer", "--data", str(data), "--run", str(run_dir),
                                      "--codebook", str(tiny_codebook), "--feat-frames", "5", "--sync",
                                      "--steps", "4", "--batch-size", "2", "--set", "train.eval_every=4",
                                      "--set", "train.lr=0.05", "--device", "cpu"])
    main()
    model, cfg, _ = load_model(run_dir / "checkpoints" / "best.ckpt", "transformer")
    assert cfg.model.sync and cfg.model.feat_frames == 5
    assert model.sync_gate.abs().sum() > 0  # the gate opened: the aligned path was trained
    feats = next(iter(ShardDataset(data, "valid", fields=("feats",), feat_frames=5)))["feats"][None].float()
    feats = torch.cat([feats, feats.flip(1)])  # two conditions that differ in timing only
    cached = sample(model, feats, greedy=True)
    torch.testing.assert_close(cached, sample(model, feats, greedy=True, use_cache=False), rtol=0, atol=0)
