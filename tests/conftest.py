"""Shared fixtures. `reference_dir` skips cleanly when ../shared/reference is absent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _cli import run_vgs

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("VGS_REFERENCE", ROOT.parent / "shared" / "reference"))

# Keep the 2-core CI machine responsive when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Longest first (LPT): `make test` runs `-n 2 --dist loadfile`, so each file's module fixtures are built once, on
# one worker, and files start in this order; what is left at the end is short files on both workers instead
# of one long file on one (the old 480-clip margin file, started last, ran ~13 min with the other worker idle).
# Measured seconds per file (2026-12-07, summed durations of a `-n 2` run on the idle machine):
# 85, 52, 50, 28, 27, 21, 20, 18, 16, 16, 15, 13, 12, 12, 12.
HEAVY_FIRST = (
    "test_transformer_synthetic.py",
    "test_failures_slow.py",
    "test_serve_security.py",
    "test_generate_scale.py",
    "test_serve.py",
    "test_features_quant.py",
    "test_classify_train.py",
    "test_av_metrics_audio.py",
    "test_generate.py",
    "test_codebook_train.py",
    "test_reproduce.py",
    "test_transformer_train.py",
    "test_codec.py",
    "test_ddp.py",
    "test_finetune_margin.py",
)
# The same for the fast tests (`-m "not slow"`; measured worker seconds 15, 15, 13, 10, 10, 9, 9, 8, 7). The
# first one builds `tiny_shards` (~15 s); the three after it do not use it, so the other worker has work
# while the build runs instead of waiting on the lock (it waited 9 s when two users started together).
FAST_FIRST = (
    "test_lpaps.py",
    "test_official_import.py",
    "test_failures.py",
    "test_finetune.py",
    "test_eval_cli.py",
    "test_dataset.py",
    "test_transformer_train.py",
    "test_official_download.py",
    "test_melception.py",
)


def pytest_configure(config):
    # pytest-xdist >= 3.5 reorders `--dist loadfile` files by their number of tests unless told not to, which
    # silently overrode HEAVY_FIRST and FAST_FIRST (the 2-test margin file, then the slowest, started near the end)
    if getattr(config.option, "loadscopereorder", False):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    fast_only = "not slow" in (config.option.markexpr or "")
    order = FAST_FIRST if fast_only else HEAVY_FIRST + FAST_FIRST
    rank = {name: i for i, name in enumerate(order)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable: order kept within


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference (real VAS clips, mels, features, splits, checkpoint manifests) or skip."""
    if not (REFERENCE / "README.md").is_file():
        pytest.skip("shared reference material not present")
    return REFERENCE


TINY_SHARDS_CLIPS = 18


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """A small prepared dataset, built once per test session (shared by pytest-xdist workers via a lock).

    `vgs prepare synthetic` with 18 procedural clips of 10 s (6 classes round robin: chirp, drum_roll,
    impact, noise_burst, siren, tone; 3 per class), 64x64 video, split per class into 1 train / 1 valid /
    1 test, so every split has 6 clips and every class appears in every split. One shard
    (`shard_0-of-1.h5`) holding per clip: `mel` float32 [80, 860], `wav` int16 [220500] (read back as
    float32), `feats/efficientnet_lite0` float32 [215, 1280] (real ImageNet weights, 64 px crop), `label`
    (index into the sorted class list), `id` like "chirp/chirp_0000", `split`. The source mp4 files
    and labels.csv are in `<root>/source`. Treat it as read-only (copy it to modify).
    """
    import fcntl

    from vgs_cli.config.prepare import PRESETS
    from vgs_cli.data.shards import read_manifest
    from vgs_cli.prepare.folder import prepare_synthetic

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by all workers of this session
    root = base / "tiny_shards"
    with open(base / "tiny_shards.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker builds, the others wait and reuse
        try:
            if not (root / "manifest.json").is_file():
                cfg = PRESETS["tiny"].replace(image_size=64)
                prepare_synthetic(root, cfg, n_clips=TINY_SHARDS_CLIPS, duration_s=10.0, seed=0, size=64, jobs=1,
                                  progress=False, log=lambda msg: None)
            read_manifest(root)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root


@pytest.fixture
def vgs(monkeypatch, capsys):
    """`vgs ARGS...` in this process (what `python -m vgs_cli` runs, without a new interpreter importing torch
    again): -> CompletedProcess with the exit code and the captured stdout/stderr."""

    def call(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = run_vgs(monkeypatch, *args)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return call


@pytest.fixture
def clean_cache(tmp_path, monkeypatch):
    """An empty cache folder (VGS_CACHE) and no $VGS_MODEL: a fresh machine."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VGS_CACHE", str(cache))
    monkeypatch.delenv("VGS_MODEL", raising=False)
    return cache
