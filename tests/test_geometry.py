"""The time geometry (mel frames and video frames per code column, the condition window) comes from the
configs the checkpoints carry, so a codebook that downsamples time 8x (not the paper's 16x) trains and
generates end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vgs_cli.audio.io import read_wav
from vgs_cli.config.spec import SPEC
from vgs_cli.config.transformer import GPTConfig


@pytest.mark.parametrize("grid, mel, video", [((5, 53), 16, 4), ((10, 106), 8, 2), ((20, 212), 4, 1)])
def test_geometry_follows_the_grid(grid, mel, video):
    cfg = GPTConfig(grid=grid)
    assert cfg.mel_frames_per_column == mel and cfg.video_frames_per_column == video
    # every codebook the 848-frame crop allows sees the reference's 212 centre frames of 215 (offset 1)
    assert cfg.feat_window == 212 == SPEC.model_video_frames and cfg.feat_offset == 1
    # a column's video frames are its mel frames' duration at 21.5 fps, to within half a frame
    assert abs(video - mel * SPEC.hop_length / SPEC.sample_rate * SPEC.fps) < 0.5


def test_a_codebook_of_another_grid_is_refused(tmp_path):
    """Without a recorded codebook hash, the vocabulary and the grid (hence the time geometry) must agree."""
    from vgs_cli.checkpoint import save_checkpoint
    from vgs_cli.config.codebook import PRESETS as CB
    from vgs_cli.config.transformer import PRESETS as T
    from vgs_cli.errors import VgsError
    from vgs_cli.loading.models import check_codebook_match
    from vgs_cli.models.vqgan import VQGAN

    def codebook(path, ch_mult):
        cfg = CB["tiny"].replace(model=CB["tiny"].model.replace(ch_mult=ch_mult))
        return save_checkpoint(path, stage="codebook", config=cfg.to_dict(), state_dict=VQGAN(cfg.model).state_dict())

    t_cfg = T["tiny"]  # 64 codes, the paper's 5x53 grid
    transformer = {"config": t_cfg.to_dict(), "extra": {}}
    check_codebook_match(transformer, codebook(tmp_path / "16x.ckpt", (1, 1, 2, 2, 4)))
    with pytest.raises(VgsError, match=r"10x106 grid \(downsampling 8x\) but the transformer predicts 5x53"):
        check_codebook_match(transformer, codebook(tmp_path / "8x.ckpt", (1, 2, 2, 4)))


def _video(path: Path, seconds: float, fps: float = 25.0) -> Path:
    from vgs_cli.data.video import write_video

    n = int(round(seconds * fps))
    frames = np.zeros((n, 64, 64, 3), np.uint8)
    frames[..., 0] = (np.arange(n) * 9 % 255)[:, None, None]
    write_video(path, frames, fps)
    return path


@pytest.mark.slow
def test_a_codebook_downsampling_8x_trains_and_generates_end_to_end(tiny_shards, tmp_path):
    """Codebook (4 levels: 8x) -> codes cache -> GPT on a 10x106 grid -> `generate` of a 12 s video: the
    window slides past 106 columns, the condition moves 2 video frames per column, and the wav is as long
    as the video and sounds to its end. With the 16x constants this code used to hard-wire, only 65 columns
    were sampled and the second half of the wav was padding (silence)."""
    from vgs_cli.generate.batch import generate_video
    from vgs_cli.generate.engine import GenerateOptions, load_bundle, resolve_models, steps_for_samples
    from vgs_cli.train.runner import run

    data = tmp_path / "shards"  # a private copy: the codes cache is written next to the data
    shutil.copytree(tiny_shards, data)
    torch.manual_seed(0)
    run("codebook", data=data, preset="tiny", run_dir=tmp_path / "codebook", device="cpu",
        overrides=["model.ch_mult=[1,2,2,4]", "train.steps=2", "train.eval_every=2", "train.eval_batches=1",
                   "train.batch_size=2", "num_plots=0"])
    run("transformer", data=data, preset="tiny", run_dir=tmp_path / "transformer", device="cpu",
        overrides=["train.steps=2", "train.eval_every=2", "train.batch_size=2"],
        codebook=tmp_path / "codebook" / "checkpoints" / "best.ckpt", condition="feats", feat_frames=5,
        extractor=None)

    paths = resolve_models(tmp_path / "transformer", vocoder="griffinlim")  # codebook: the recorded one
    bundle = load_bundle(paths, vocoder="griffinlim", device="cpu", gl_iters=2)
    cfg = bundle.gpt.cfg
    assert cfg.grid == (10, 106) and bundle.codebook.cfg.downsample == 8
    assert (cfg.mel_frames_per_column, cfg.video_frames_per_column, cfg.feat_window) == (8, 2, 212)

    seconds = 12.0
    video = _video(tmp_path / "v.mp4", seconds)
    (out,) = generate_video(bundle, video, tmp_path / "out.wav", GenerateOptions(seed=0), log=lambda s: None)
    wav, sr = read_wav(out)
    assert sr == SPEC.sample_rate and abs(len(wav) - seconds * SPEC.sample_rate) <= SPEC.hop_length
    assert np.isfinite(wav).all() and np.abs(wav[-SPEC.sample_rate:]).max() > 1e-3  # sound to the last second
    n = int(round(seconds * SPEC.sample_rate))
    assert steps_for_samples(n, cfg) == 130  # ceil(1034 mel frames / 8) > 106: the window slid 24 columns
