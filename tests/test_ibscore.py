"""IB-score: vgs's ImageBind paths equal the package's forward and names (imagebind-unofficial, installed with
--no-deps; skipped when absent), the published layout loads strictly, av-benchmark's inputs (0.5 fps, three
crops, 2-frame clips, Kaldi fbank 128 x 204 and its normalisation), and ib_scores end to end on a tiny model."""

from __future__ import annotations

import importlib
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from _stubs import stub_module
from torch import nn

from vgs_cli.audio.io import write_wav
from vgs_cli.data.video import write_video
from vgs_cli.errors import CheckpointError
from vgs_cli.loading.metric_nets_av import load_imagebind
from vgs_cli.loading.weights import get_entry
from vgs_cli.metrics import av_metrics
from vgs_cli.metrics import ib_inputs as ii
from vgs_cli.metrics.av_metrics import AVPair, ib_one, ib_scores
from vgs_cli.metrics.feature_cache import FeatureCache
from vgs_cli.models.imagebind import ImageBind, ImageBindConfig, dropped_prefixes

TINY = ImageBindConfig(out_dim=24, vision_dim=40, vision_depth=2, vision_heads=4, audio_dim=36, audio_depth=2,
                       audio_heads=4)
# the package's sizes for TINY (its other modalities as small as it allows)
PKG_TINY = dict(out_embed_dim=24, vision_embed_dim=40, vision_num_blocks=2, vision_num_heads=4, audio_embed_dim=36,
                audio_num_blocks=2, audio_num_heads=4, text_embed_dim=16, text_num_blocks=1, text_num_heads=2,
                depth_embed_dim=16, depth_num_blocks=1, depth_num_heads=2, thermal_embed_dim=16,
                thermal_num_blocks=1, thermal_num_heads=2, imu_embed_dim=16, imu_num_blocks=1, imu_num_heads=2)


# ------------------------------------------------------------------------------------ the package's model

_stub = stub_module


class _DropPath(nn.Module):  # timm's DropPath is the identity in eval mode, the only mode used here
    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()

    def forward(self, x):
        return x


def _rearrange(x, expr, **_):  # the package's two einops patterns (sequence-first attention)
    assert expr in ("b l d -> l b d", "l b d -> b l d"), expr
    return x.transpose(0, 1)


def _package(monkeypatch):
    """imagebind.models.imagebind_model without its __init__ (which imports torchaudio and the data code) and
    with timm (DropPath, trunc_normal_: all the model code uses; timm needs torchvision), einops and the text
    tokenizer's imports stubbed."""
    spec = importlib.util.find_spec("imagebind")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("imagebind-unofficial is not installed (pip install --no-deps imagebind-unofficial==0.1.1)")
    pkg = _stub(monkeypatch, "imagebind")
    pkg.__path__ = list(spec.submodule_search_locations)
    _stub(monkeypatch, "timm")
    _stub(monkeypatch, "timm.layers", DropPath=_DropPath,
          trunc_normal_=lambda t, std=1.0, **_: nn.init.trunc_normal_(t, std=std))
    _stub(monkeypatch, "einops", rearrange=_rearrange)
    _stub(monkeypatch, "ftfy")
    _stub(monkeypatch, "regex")  # the text tokenizer's; never built for vision and audio
    for name in ("iopath", "iopath.common"):
        _stub(monkeypatch, name)
    _stub(monkeypatch, "iopath.common.file_io", g_pathmgr=None)
    for name in ("imagebind.models", "imagebind.models.imagebind_model", "imagebind.models.helpers",
                 "imagebind.models.multimodal_preprocessors", "imagebind.models.transformer"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("imagebind.models.imagebind_model")


def _kept(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(dropped_prefixes())}


def test_tiny_imagebind_equals_the_package_forward(monkeypatch):
    ib = _package(monkeypatch)
    torch.manual_seed(0)
    theirs = ib.ImageBindModel(**PKG_TINY).eval()
    ours = ImageBind(TINY).eval()
    ours.load_state_dict(_kept(theirs.state_dict()), strict=True)
    video = torch.randn(2, 3, 3, 2, 224, 224)  # [B, clips x crops, C, T, H, W], as av-benchmark passes it
    audio = torch.randn(2, 3, 1, 128, 204)
    image = torch.randn(2, 3, 224, 224)  # one frame: ImageBind repeats it to a 2-frame clip
    with torch.no_grad():
        t = theirs({"vision": video, "audio": audio})
        o = ours(vision=video, audio=audio)
        t_img, o_img = theirs({"vision": image})["vision"], ours.embed_vision(image)
    assert torch.allclose(o["vision"], t["vision"], atol=1e-5) and torch.allclose(o["audio"], t["audio"], atol=1e-5)
    assert torch.allclose(o_img, t_img, atol=1e-5)
    assert torch.allclose(ours.embed_audio(audio[0]).norm(dim=-1), torch.full((3,), 20.0))  # the logit scale
    with torch.no_grad():  # the comparison sees the weights: a changed audio key/value token changes the output
        ours.modality_trunks["audio"].blocks[1].attn.bias_k.add_(0.5)
        assert not torch.allclose(ours(audio=audio)["audio"], t["audio"], atol=1e-5)


def test_names_and_huge_shapes_equal_imagebind_huge(monkeypatch):
    """The package's model at huge depths (32 vision, 12 audio blocks) but tiny widths: its vision + audio key
    names equal ImageBind(ImageBindConfig()) built on the meta device, and each huge shape is the tiny one with
    the widths scaled (1280 / 768 wide, 4x MLP, 3x in-projection, 1024 out)."""
    ib = _package(monkeypatch)
    theirs = ib.ImageBindModel(**{**PKG_TINY, "vision_num_blocks": 32, "audio_num_blocks": 12}).state_dict()
    with torch.device("meta"):
        ours = ImageBind(ImageBindConfig()).state_dict()
    other = set(theirs) - set(ours)
    assert set(ours) <= set(theirs) and other and all(k.startswith(dropped_prefixes()) for k in other)
    assert not any(k.startswith(dropped_prefixes()) for k in ours)
    scale = {"vision": {40: 1280, 120: 3840, 160: 5120, 24: 1024}, "audio": {36: 768, 108: 2304, 144: 3072, 24: 1024}}
    for key, tiny in theirs.items():
        if key in ours:
            m = scale["vision" if ".vision." in key else "audio"]
            assert tuple(ours[key].shape) == tuple(m.get(d, d) for d in tiny.shape), key
    assert ours["modality_preprocessors.vision.rgbt_stem.proj.1.weight"].shape == (1280, 3, 2, 14, 14)
    assert ours["modality_preprocessors.audio.pos_embedding_helper.pos_embed"].shape == (1, 229, 768)
    assert sum(v.numel() for v in ours.values()) == 719065088 + 1  # parameters + the audio logit-scale buffer


def test_published_layout_loads_strictly_through_weights_dir(tmp_path):
    torch.manual_seed(1)
    model = ImageBind(TINY).eval()
    state = dict(model.state_dict())
    # the other modalities' keys of the published file are set aside by name
    state["modality_trunks.text.blocks.0.norm_1.weight"] = torch.ones(16)
    state["modality_postprocessors.imu.1.log_logit_scale"] = torch.tensor(1.6)
    torch.save(state, tmp_path / "imagebind_huge.pth")
    loaded, sha = load_imagebind(tmp_path, "cpu", cfg=TINY)
    audio = torch.randn(2, 1, 128, 204)
    with torch.no_grad():
        assert torch.equal(loaded.embed_audio(audio), model.embed_audio(audio)) and len(sha) == 64
    for bad in ({"modality_trunks.vision.blocks.9.norm_1.weight": torch.ones(40)},  # not a dropped prefix
                {"modality_heads.vision.2.weight": torch.ones(24, 41)}):
        torch.save({**state, **bad}, tmp_path / "imagebind_huge.pth")
        with pytest.raises(CheckpointError) as err:
            load_imagebind(tmp_path, "cpu", cfg=TINY)
        assert "\n" not in str(err.value) and next(iter(bad)) in str(err.value)
    entry = get_entry("imagebind")  # no checksum is published: none recorded
    assert entry.url == "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
    assert entry.sha256 is None and entry.md5 is None and entry.sha256_prefix is None


# -------------------------------------------------------------------------------------------- the inputs

def _video(path: Path, seconds: float, fps: int = 10, h: int = 48, w: int = 64) -> Path:
    """Grey frames whose level is 10 x the second they are shown in (so the sampled times can be read back)."""
    n = int(round(seconds * fps))
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i] = 10 * (i // fps)
    return write_video(path, frames, fps=fps)


def _grey_level(crop: torch.Tensor) -> float:
    """A CLIP-normalised crop's red channel back on 0-255."""
    return float((crop[0].mean() * ii.CLIP_STD[0] + ii.CLIP_MEAN[0]) * 255)


@pytest.mark.parametrize("seconds,frames", [(8.0, 4), (10.0, 5)])
def test_frames_at_half_fps_and_their_clips(tmp_path, seconds, frames):
    crops = ii.load_crops(_video(tmp_path / "v.mp4", seconds))
    assert crops.shape == (3, frames, 3, 224, 224) and ii.main_frames(seconds) == frames
    # frame k is the one shown at 2k s
    assert [round(_grey_level(crops[1, k]) / 10) for k in range(frames)] == [2 * k for k in range(frames)]
    clips = ii.frame_clips(crops)
    assert clips.shape == (frames - 1, 3, 3, 2, 224, 224)
    assert torch.equal(clips[1, 2, :, 0], crops[2, 1]) and torch.equal(clips[1, 2, :, 1], crops[2, 2])
    one = ii.frame_clips(crops[:, :1])  # a single frame: ImageBind's image input, the frame twice
    assert one.shape == (1, 3, 3, 2, 224, 224) and torch.equal(one[0, :, :, 0], one[0, :, :, 1])


def test_three_crops_along_the_long_side():
    assert ii.crop_offsets(224, 398) == [(0, 0), (0, 87), (0, 174)]
    assert ii.crop_offsets(398, 224) == [(0, 0), (87, 0), (174, 0)]
    assert ii.crop_offsets(224, 301) == [(0, 0), (0, 39), (0, 77)]  # ceil(38.5), not round-half-even's 38
    assert ii.crop_offsets(224, 224) == [(0, 0)] * 3
    # a frame already 224 high is not resized: each crop starts at its offset's column
    frame = torch.arange(400).remainder(256).to(torch.uint8).expand(1, 3, 224, 400).contiguous()
    out = ii.crops(frame)
    assert out.shape == (3, 1, 3, 224, 224)
    for crop, (_, left) in zip(out, ii.crop_offsets(224, 400), strict=True):
        assert round(float(crop[0, 0, 0, 0] * ii.CLIP_STD[0] + ii.CLIP_MEAN[0]) * 255) == left
    # short side to 224, long side truncated: 64 x 48 -> 298 x 224 (298.67)
    assert ii.resize_short(torch.zeros(1, 3, 48, 64, dtype=torch.uint8)).shape == (1, 3, 224, 298)


def _np_fbank(x: np.ndarray) -> np.ndarray:
    """Kaldi's fbank from its definition, in float64: 400-sample frames every 160, DC removed, pre-emphasis 0.97
    (first sample replicated), symmetric Hann, zero-padded to 512, power spectrum, 128 triangular mel bins
    (mel = 1127 ln(1 + f / 700)) from 20 Hz to 8 kHz, log floored at float32 eps. -> [frames, 128]"""
    n = 1 + (len(x) - 400) // 160
    frames = np.stack([x[i * 160:i * 160 + 400] for i in range(n)]).astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    power = np.abs(np.fft.rfft(frames * np.hanning(400), 512)) ** 2
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    lo, hi = mel(20.0), mel(8000.0)
    d = (hi - lo) / 129
    m = mel(16000 / 512 * np.arange(256))[None]
    left = lo + np.arange(128)[:, None] * d
    banks = np.maximum(0, np.minimum((m - left) / d, (left + 2 * d - m) / d))
    return np.log(np.maximum(power[:, :256] @ banks.T, np.finfo(np.float32).eps))


def test_fbank_clips_shape_and_normalisation():
    assert ii.clip_bounds(8 * 16000) == [(0, 32000), (32000, 64000), (64000, 96000)]  # max start / 3, not / 2
    assert ii.clip_bounds(10 * 16000) == [(0, 32000), (42666, 74666), (85333, 117333)]
    assert ii.clip_bounds(16000) == [(0, 32000)] * 3  # shorter than a clip: three times the whole, padded
    rng = np.random.default_rng(0)
    wave = torch.from_numpy(rng.standard_normal((2, 8 * 16000)).astype(np.float32) * 0.1)
    wave[1] += 0.3  # a second channel with an offset: the clip mean is over both, the fbank of channel 0
    mels = ii.audio_clips(wave)
    assert mels.shape == (3, 1, 128, 204)
    clip = wave[:, 32000:64000] - wave[:, 32000:64000].mean()
    want = (_np_fbank(clip[0].numpy().astype(np.float64)).T - ii.FBANK_MEAN) / ii.FBANK_STD  # [128, 198]
    np.testing.assert_allclose(mels[1, 0, :, :198].numpy(), want, atol=5e-4)
    # 198 frames of 2 s, zero-padded (in log space) to 204 before the normalisation
    assert torch.allclose(mels[:, 0, :, 198:], torch.tensor((0 - ii.FBANK_MEAN) / ii.FBANK_STD))


def test_overlapping_clips_see_the_earlier_mean_removal():
    """A 3-s constant: clip 0 (0-2 s) loses its mean in place, so clip 1 (1/3-7/3 s) holds a step (energy) where
    a copy would be constant again (all floor)."""
    assert ii.clip_bounds(48000) == [(0, 32000), (int(Fraction(1, 3) * 16000), int(Fraction(7, 3) * 16000)),
                                     (int(Fraction(2, 3) * 16000), int(Fraction(8, 3) * 16000))]
    mels = ii.audio_clips(torch.full((1, 48000), 0.5))
    floor = (np.log(np.finfo(np.float32).eps) - ii.FBANK_MEAN) / ii.FBANK_STD
    assert torch.allclose(mels[0, 0, :, :198], torch.tensor(floor, dtype=torch.float32), atol=1e-4)
    assert float(mels[1, 0, :, :198].max()) > floor + 1.0


def test_window_starts():
    assert ii.window_starts(4, 4) == [0] and ii.window_starts(5, 4) == [0, 1]
    assert ii.window_starts(15, 4) == [0, 4, 8, 11]  # every frame covered; the last overlaps the one before


# ------------------------------------------------------------------------------------- ib_scores end to end

def _pair(folder: Path, video_s: float, audio_s: float, name: str = "clip") -> AVPair:
    rng = np.random.default_rng(0)
    video = _video(folder / f"{name}.mp4", video_s)
    audio = write_wav(folder / f"{name}.wav", (rng.standard_normal(int(audio_s * 22050)) * 0.1).astype(np.float32),
                      22050)
    return AVPair(name, audio.name, video, audio)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ImageBind(TINY).eval()


def test_ib_scores_through_weights_dir_with_windows_and_the_cache(tmp_path, monkeypatch, tiny_model):
    torch.save(tiny_model.state_dict(), tmp_path / "imagebind_huge.pth")
    monkeypatch.setenv("VGS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(av_metrics, "load_imagebind", lambda wd, dev: load_imagebind(wd, dev, cfg=TINY))
    pairs = [_pair(tmp_path, 10.0, 10.0, "ten"), _pair(tmp_path, 8.0, 10.0, "eight")]
    assert ib_scores([], weights_dir=tmp_path / "nothing_here", device="cpu") == []  # no weights needed
    out = ib_scores(pairs, weights_dir=tmp_path, device="cpu", batch_size=4)
    assert len(out) == 2 and all(-1.0 <= r["ib"] <= 1.0 and np.isfinite(r["ib"]) for r in out)
    # 10-s video and audio: 5 frames, windows of 4 frames (8 s) at 0 and 2 s; the 8-s video fits one window
    assert [w["start_s"] for w in out[0]["windows"]] == [0.0, 2.0]
    assert all(-1.0 <= w["ib"] <= 1.0 for w in out[0]["windows"])
    assert out[1]["windows"] == [{"start_s": 0.0, "ib": out[1]["ib"]}]
    cached = sorted((tmp_path / "cache" / "features").rglob("*.npy"))
    assert len(cached) == 2 and {np.load(p).shape for p in cached} == {(4, 3, 24), (3, 3, 24)}
    again = ib_scores(pairs, weights_dir=tmp_path, device="cpu", batch_size=8)  # other batching, cached video
    assert [r["ib"] for r in again] == pytest.approx([r["ib"] for r in out], abs=1e-5)


def test_ib_one_long_video_windows_and_the_main_score(tmp_path, tiny_model):
    cache = FeatureCache("test-ib", "0" * 64, root=tmp_path / "features")
    pair = _pair(tmp_path, 20.0, 20.0)
    res = ib_one(tiny_model, cache, pair, "cpu", 8)
    # 10 frames: windows at frames 0, 4 and the last one, 6 (0, 8, 12 s)
    assert [w["start_s"] for w in res["windows"]] == [0.0, 8.0, 12.0]
    vemb = torch.from_numpy(cache.get(pair.video))
    assert vemb.shape == (9, 3, 24)
    # the main score: the first 8 s of video (3 clips x 3 crops) against three clips of the whole audio
    with torch.no_grad():
        audio = tiny_model.embed_audio(ii.audio_clips(ii.load_audio(pair.audio))).mean(0)
    want = torch.cosine_similarity(vemb[:3].flatten(0, 1).mean(0), audio, dim=-1)
    assert res["ib"] == pytest.approx(float(want), abs=1e-6)
    # an audio shorter than the video limits the windows to the time both cover
    short = _pair(tmp_path, 20.0, 10.0, "short_audio")
    assert [w["start_s"] for w in ib_one(tiny_model, cache, short, "cpu", 8)["windows"]] == [0.0, 2.0]


def test_a_video_shorter_than_one_clip(tmp_path, tiny_model):
    """One frame at 0.5 fps (under 3 s): scored as ImageBind scores an image, the frame repeated to a clip;
    audio shorter than one fbank frame: skipped with the reason."""
    cache = FeatureCache("test-ib", "0" * 64, root=tmp_path / "features")
    pair = _pair(tmp_path, 1.5, 1.5)
    res = ib_one(tiny_model, cache, pair, "cpu", 8)
    assert -1.0 <= res["ib"] <= 1.0 and res["windows"] == [{"start_s": 0.0, "ib": res["ib"]}]
    with torch.no_grad():
        image = tiny_model.embed_vision(ii.load_crops(pair.video)[:, 0])  # [3 crops, 3, 224, 224] as images
    assert torch.allclose(torch.from_numpy(cache.get(pair.video))[0], image, atol=1e-6)
    tiny = write_wav(tmp_path / "blip.wav", np.zeros(300, np.float32), 16000)  # 300 samples < 400
    skipped = ib_one(tiny_model, cache, AVPair("clip", "blip.wav", pair.video, tiny), "cpu", 8)
    assert skipped["ib"] is None and skipped["windows"] == [] and "25-ms" in skipped["skipped"]
