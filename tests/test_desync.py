"""DeSync: Synchformer's layout and loading, av-benchmark's preprocessing numbers, windows, short clips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vgs_cli.audio.io import write_wav
from vgs_cli.data.video import write_video
from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.loading import metric_nets_av
from vgs_cli.metrics import av_metrics
from vgs_cli.metrics import sync_inputs as si
from vgs_cli.models.motionformer import DividedAttention, ViTSize
from vgs_cli.models.synchformer import OFFSET_GRID_S, Synchformer, SynchformerConfig

TINY = SynchformerConfig(video=ViTSize(32, 1, 2, 64), audio=ViTSize(32, 1, 2, 64), dim=32, layers=1, heads=2)


def _manifest(reference_dir):
    return json.loads((reference_dir / "checkpoint_keys" / "synchformer_state_dict.json").read_text())


def test_synchformer_has_the_published_names_shapes_and_size(reference_dir):
    man = _manifest(reference_dir)
    with torch.device("meta"):
        model = Synchformer(SynchformerConfig())
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(own) == list(man["keys"])  # same 513 names, same order
    assert own == man["keys"]
    assert sum(p.numel() for p in model.parameters()) == man["params"] == 237_460_245


@pytest.mark.slow
def test_a_random_state_dict_in_the_published_layout_loads_strictly_through_weights_dir(reference_dir, tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in _manifest(reference_dir)["keys"].items()}
    torch.save(state, tmp_path / "synchformer_state_dict.pth")
    model, sha = metric_nets_av.load_synchformer(tmp_path, "cpu")
    loaded = model.state_dict()
    for k in ("transformer.off_head.weight", "afeat_extractor.ast.embeddings.position_embeddings",
              "vfeat_extractor.patch_embed_3d.proj.weight"):
        assert torch.equal(loaded[k], state[k])
    assert len(sha) == 64 and not model.training


def test_a_file_of_another_layout_is_one_line_naming_the_keys(tmp_path):
    state = Synchformer(TINY).state_dict()
    state["transformer.off_head.kernel"] = state.pop("transformer.off_head.weight")
    torch.save(state, tmp_path / "synchformer_state_dict.pth")
    with pytest.raises(CheckpointError) as err:
        metric_nets_av.load_synchformer(tmp_path, "cpu")  # the published sizes: every shape differs too
    msg = str(err.value)
    assert "\n" not in msg and "missing" in msg and "off_head.kernel" in msg

    (tmp_path / "synchformer_state_dict.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable torch weights file") as err:
        metric_nets_av.load_synchformer(tmp_path, "cpu")
    assert "\n" not in str(err.value)


def test_no_weights_in_weights_dir_names_the_file_and_its_url(tmp_path):
    with pytest.raises(VgsError) as err:
        metric_nets_av.load_synchformer(tmp_path, "cpu")
    msg = str(err.value)
    assert "synchformer_state_dict.pth" in msg and "github.com/hkchengrex/MMAudio" in msg and "\n" not in msg


def test_offset_grid_is_21_classes_from_minus_2_to_2_seconds():
    assert OFFSET_GRID_S.shape == (21,)
    assert OFFSET_GRID_S[0] == -2.0 and OFFSET_GRID_S[-1] == 2.0 and abs(OFFSET_GRID_S[10]) < 1e-6
    assert torch.allclose(OFFSET_GRID_S.diff(), torch.full((20,), 0.2))


def test_segments_and_windows_of_a_10_s_a_5_s_and_a_60_s_clip():
    # 10 s: 250 frames at 25 fps and 160000 samples at 16 kHz give the same 30 segments
    assert si.segment_count(250, si.SEG_FRAMES, si.SEG_STEP) == 30
    assert si.segment_count(160000, si.SEG_SAMPLES, si.SEG_HOP_SAMPLES) == 30
    assert [s * si.SEGMENT_S for s in si.window_starts(30)] == pytest.approx([0.0, 5.12])
    # 5 s: exactly 14 segments = one window, which is both the first and the last
    assert si.segment_count(125, 16, 8) == si.segment_count(80000, 10240, 5120) == 14
    assert si.window_starts(14) == [0]
    assert si.window_starts(13) == []
    # 60 s: every 4.8 s (15 segments) without overlapping the last window, which ends the clip
    starts = si.window_starts(si.segment_count(1500, 16, 8))
    assert starts == list(range(0, 151, 15)) + [172]
    assert 13 * si.SEGMENT_S + si.SEG_FRAMES / si.FPS == pytest.approx(4.8)


def test_log_mels_have_66_frames_and_the_protocol_normalisation():
    seg = torch.randn(2, si.SEG_SAMPLES) * 0.1
    mel = si.log_mels(seg)
    assert mel.shape == (2, 66, 128)
    # frame 66 is the zero padding in log space, normalised: (0 + 4.2677393) / (2 * 4.5689974)
    assert torch.allclose(mel[:, 65], torch.full((2, 128), 4.2677393 / (2 * 4.5689974)))
    # frames 0..64 from an independent computation: HTK mel triangles filter by filter, numpy's FFT
    mel_pts = np.linspace(0.0, 2595.0 * np.log10(1.0 + 8000.0 / 700.0), 130)
    hz = 700.0 * (10.0 ** (mel_pts / 2595.0) - 1.0)
    freqs = np.linspace(0.0, 8000.0, 513)
    fb = np.stack([np.maximum(0.0, np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)))
                   for lo, c, hi in zip(hz[:-2], hz[1:-1], hz[2:], strict=True)])  # [128, 513]
    x = np.pad(seg[0].numpy().astype(np.float64), 512, mode="reflect")
    win = np.zeros(1024)
    win[312:712] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann 400, centred in 1024
    frames = np.stack([x[i * 160:i * 160 + 1024] * win for i in range(65)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    ref = (np.log(power @ fb.T + 1e-6) + 4.2677393) / (2 * 4.5689974)
    np.testing.assert_allclose(mel[0, :65].numpy(), ref, atol=2e-4)


def test_audio_at_16k_keeps_a_tone_and_torchaudios_length(tmp_path):
    sr = 22050
    t = np.arange(sr) / sr
    wav = torch.from_numpy(np.sin(2 * np.pi * 440 * t).astype(np.float32))
    out = si.load_audio16k(write_wav(tmp_path / "tone.wav", wav.numpy(), sr, subtype="FLOAT"))
    assert out.shape == (math.ceil(sr * 16000 / 22050),)
    expect = np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    np.testing.assert_allclose(out[200:-200].numpy(), expect[200:-200], atol=2e-3)  # interior: no edge effects


def test_frames_at_25_fps_resized_and_centre_cropped(tmp_path):
    frames = np.zeros((60, 240, 320, 3), np.uint8)  # 2 s at 30 fps, left half dark, right half bright
    frames[:, :, :160] = 40
    frames[:, :, 160:] = 200
    write_video(tmp_path / "v.mp4", frames, fps=30)
    out = si.load_frames(tmp_path / "v.mp4")
    assert out.shape == (50, 3, 224, 224)  # 2 s at 25 fps
    # 240 -> 224 short side, 320 -> 298 long side (truncated), crop 224 from x = 37: both halves stay
    assert out[:, :, :, :50].mean().item() == pytest.approx((40 / 255 - 0.5) / 0.5, abs=0.03)
    assert out[:, :, :, -50:].mean().item() == pytest.approx((200 / 255 - 0.5) / 0.5, abs=0.03)
    segs = si.video_segments(out)
    assert segs.shape == (5, 16, 3, 224, 224) and torch.equal(segs[1, 0], out[8])


def test_divided_attention_equals_attention_written_per_group():
    torch.manual_seed(0)
    att = DividedAttention(16, 2)
    t, n = 3, 4
    x = torch.randn(2, 1 + t * n, 16)
    q, k, v = att.qkv(x).chunk(3, dim=-1)

    def attend(qi, ki, vi):  # one group, heads split by hand: [L, 16] -> [L, 16]
        outs = []
        for h in range(2):
            sl = slice(8 * h, 8 * h + 8)
            w = torch.softmax(qi[:, sl] @ ki[:, sl].T / math.sqrt(8), dim=-1)
            outs.append(w @ vi[:, sl])
        return torch.cat(outs, dim=1)

    for over in ("time", "space"):
        expect = torch.empty(2, 1 + t * n, 16)
        for b in range(2):
            expect[b, 0] = attend(q[b, :1], k[b], v[b])[0]
            groups = [[1 + f * n + p for f in range(t)] for p in range(n)] if over == "time" else \
                [[1 + f * n + p for p in range(n)] for f in range(t)]
            for idx in groups:
                keys = [0, *idx]
                expect[b, idx] = attend(q[b, idx], k[b, keys], v[b, keys])
        torch.testing.assert_close(att(x, t, over), att.proj(expect), atol=1e-5, rtol=1e-5)


def _clip(tmp_path, name, seconds, fps=30, sr=22050):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (int(seconds * fps), 48, 64, 3), dtype=np.uint8)
    video = write_video(tmp_path / f"{name}.mp4", frames, fps=fps)
    audio = write_wav(tmp_path / f"{name}.wav", rng.standard_normal(int(seconds * sr)).astype(np.float32) * 0.1, sr)
    return av_metrics.AVPair(key=name, sample=f"{name}.wav", video=video, audio=audio)


@pytest.fixture
def tiny_synchformer(monkeypatch, tmp_path):
    torch.manual_seed(0)
    model = Synchformer(TINY).eval()
    monkeypatch.setattr(av_metrics, "load_synchformer", lambda weights_dir, device: (model, "0" * 64))
    monkeypatch.setenv("VGS_CACHE", str(tmp_path / "cache"))
    return model


def test_desync_scores_per_clip_and_per_window_and_short_clips(tmp_path, tiny_synchformer):
    pairs = [_clip(tmp_path, "ten", 10.0), _clip(tmp_path, "five", 5.0), _clip(tmp_path, "short", 3.0)]
    out = av_metrics.desync_scores(pairs, weights_dir=None, device="cpu", batch_size=8)
    ten, five, short = out
    assert [w["start_s"] for w in ten["windows"]] == pytest.approx([0.0, 5.12])
    assert [w["start_s"] for w in five["windows"]] == [0.0]
    for r in (ten, five):
        assert 0.0 <= r["desync"] <= 2.0 and math.isfinite(r["desync"])
        assert all(round(w["offset_s"] * 5) == pytest.approx(w["offset_s"] * 5) for w in r["windows"])  # on the grid
        assert r["desync"] == pytest.approx((abs(r["windows"][0]["offset_s"]) + abs(r["windows"][-1]["offset_s"])) / 2)
    assert short["desync"] is None and short["windows"] == [] and "4.8-s" in short["skipped"]
    # the video features are cached: a second run reads them and gives the same numbers
    cached = list((tmp_path / "cache" / "features").rglob("*.npy"))
    assert len(cached) == 3
    assert av_metrics.desync_scores(pairs[:2], weights_dir=None, device="cpu") == out[:2]


def test_audio_shorter_than_the_video_is_scored_over_the_audio(tmp_path, tiny_synchformer):
    pair = _clip(tmp_path, "ten", 10.0)
    rng = np.random.default_rng(1)
    short_audio = write_wav(tmp_path / "gen.wav", rng.standard_normal(16000 * 6).astype(np.float32) * 0.1, 16000)
    out = av_metrics.desync_scores([av_metrics.AVPair("ten", "gen.wav", pair.video, short_audio)],
                                   weights_dir=None, device="cpu")
    # 6 s of audio: 17 segments, windows at 0 and 3 (0.96 s), never another file's audio
    assert [w["start_s"] for w in out[0]["windows"]] == pytest.approx([0.0, 0.96])


def test_no_pairs_need_no_weights():
    assert av_metrics.desync_scores([], weights_dir=None, device="cpu") == []
