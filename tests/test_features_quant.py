"""Issue 28: the bf16 / int8 visual feature paths (loading/feature_paths.py), the kind recorded and checked,
and the forced-AVX2 fallback.

Quality is asserted against `COSINE_BOUND` (smallest per-frame cosine to the fp32 network) on real VAS frames
when ../shared/reference is present (ResNet-50 with RANDOM weights: the published ones cannot be downloaded
here; EfficientNet-Lite0 with its real weights), and on procedural frames always."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vgs_cli.data.synthetic import plan_clip, render_frames
from vgs_cli.data.video import read_frames
from vgs_cli.errors import DataError, VgsError
from vgs_cli.loading.extractors import (
    FeatureExtractor,
    check_same_features,
    extractor_settings,
    feature_mismatch,
)
from vgs_cli.loading.feature_paths import COSINE_BOUND, generation_precision

ROOT = Path(__file__).resolve().parents[1]


def _cosines(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=1)


def _synthetic_frames(size: int, n: int = 24) -> np.ndarray:
    """`uint8[n, size, size, 3]`: procedural frames of two classes (moving objects on textured ground)."""
    frames = [render_frames(plan_clip(k, seed=k, n_frames=n, fps=21.5), n, size, 21.5) for k in (0, 3)]
    return np.concatenate(frames)[:: 2]


def _real_frames(reference_dir: Path, settings: dict, step: int) -> np.ndarray:
    video = sorted((reference_dir / "vas" / "videos").glob("*/*.mp4"))[1]
    return read_frames(video, short_side=settings["resize_short"], frame_path=settings.get("frame_path", "ffmpeg"))[::step]


def _check_quality(name: str, settings: dict, weights, frames: np.ndarray, precisions: tuple[str, ...]) -> None:
    ref = FeatureExtractor(name, settings, weights, device="cpu")(frames)
    for precision in precisions:
        ext = FeatureExtractor(name, settings, weights, device="cpu", precision=precision)
        out = ext(frames)
        assert ext.precision == precision and out.shape == ref.shape and out.dtype == np.float32
        cos = _cosines(out, ref)
        assert cos.min() >= COSINE_BOUND[precision], (precision, cos.min())
        # the features still tell frames apart (a wrong layout or a constant output would not)
        assert _cosines(out[:1], out[-1:]).item() < cos.min(), precision


@pytest.mark.slow  # ResNet-50 at 224 px, fp32 + int8 calibration + bf16 on 2 cores: ~15 s
def test_resnet50_int8_and_bf16_stay_near_fp32_on_real_frames(reference_dir):
    settings, weights = extractor_settings("resnet50", 224, random_weights=True)
    _check_quality("resnet50", settings, weights, _real_frames(reference_dir, settings, 18), ("int8", "bf16"))


def test_efficientnet_bf16_stays_near_fp32_on_real_frames_with_its_real_weights(reference_dir):
    settings, weights = extractor_settings("efficientnet_lite0", 128)
    _check_quality("efficientnet_lite0", settings, weights, _real_frames(reference_dir, settings, 10), ("bf16",))


def test_int8_and_bf16_stay_near_fp32_on_procedural_frames():
    settings, weights = extractor_settings("resnet50", 64, random_weights=True)
    _check_quality("resnet50", settings, weights, _synthetic_frames(73), ("int8", "bf16"))


def test_efficientnet_static_padding_is_the_same_network():
    from vgs_cli.models.efficientnet import EfficientNetLite0, SameConv2d, static_padding

    torch.manual_seed(0)
    net = EfficientNetLite0().eval()
    x = torch.randn(2, 3, 97, 97)  # odd size: TF's extra bottom/right pixel on the stride-2 convs
    with torch.no_grad():
        ref = net(x)
        assert static_padding(net, 97) == 49 and not any(isinstance(m, SameConv2d) for m in net.modules())
        torch.testing.assert_close(net(x), ref, rtol=1e-5, atol=1e-5)


def test_int8_calibrates_once_on_the_clip_it_is_given():
    settings, _ = extractor_settings("resnet50", 64, random_weights=True)
    frames = _synthetic_frames(73)
    ext = FeatureExtractor("resnet50", settings, None, device="cpu", precision="int8")
    assert not ext.path.calibrated
    few = ext(frames[:2], calibrate_on=frames)  # calibrated on the whole clip, not the 2 frames
    assert ext.path.calibrated and "int8 static" in ext.path.describe()
    whole = FeatureExtractor("resnet50", settings, None, device="cpu", precision="int8")(frames)
    np.testing.assert_allclose(few, whole[:2], rtol=1e-5, atol=1e-5)  # the same network as the whole clip's


def test_the_kind_is_recorded_and_int8_is_refused_where_it_does_not_hold():
    fp32, _ = extractor_settings("resnet50", 64, random_weights=True)
    int8, _ = extractor_settings("resnet50", 64, random_weights=True, precision="int8")
    assert "precision" not in fp32 and int8["precision"] == "int8"  # absent = fp32: older shards still match
    assert FeatureExtractor("resnet50", int8, None, device="cpu").precision == "int8"  # made as recorded
    with pytest.raises(VgsError, match="efficientnet_lite0 has no int8 feature path"):
        extractor_settings("efficientnet_lite0", 128, random_weights=True, precision="int8")
    with pytest.raises(VgsError, match="unknown feature precision 'fp8'"):
        extractor_settings("resnet50", 64, random_weights=True, precision="fp8")
    # generation: the recorded kind; --quantize int8 turns only fp32-trained features into the fast kind the
    # CPU has: bf16 where it is native (AVX512-BF16 / AMX), else int8
    assert generation_precision("resnet50", fp32, "none") == "fp32"
    assert generation_precision("resnet50", fp32, "int8", native_bf16=False) == "int8"
    assert generation_precision("resnet50", fp32, "int8", native_bf16=True) == "bf16"
    from vgs_cli.cpu import cpu_info

    assert generation_precision("resnet50", fp32, "int8") == ("bf16" if cpu_info().bf16 else "int8")
    assert generation_precision("efficientnet_lite0", {}, "int8") == "fp32"
    assert generation_precision("resnet50", {"precision": "bf16"}, "int8", native_bf16=False) == "bf16"
    assert generation_precision("resnet50", {"precision": "int8"}, "none", native_bf16=True) == "int8"


def test_features_made_another_way_are_refused():
    fp32, _ = extractor_settings("resnet50", 64, random_weights=True)
    bf16 = {**fp32, "precision": "bf16"}
    assert feature_mismatch(fp32, dict(fp32)) is None
    assert feature_mismatch(bf16, fp32) == "made in bf16 but the transformer's in fp32"
    with pytest.raises(DataError, match=r"the shards' resnet50 features differ from the transformer's \(made in "
                                        r"fp32 but the transformer's in bf16\): prepare them again"):
        check_same_features("resnet50", fp32, bf16, "the shards'")


def test_generation_from_shards_refuses_features_of_another_kind():
    from types import SimpleNamespace

    from vgs_cli.generate.batch import _check_shard_features

    int8, _ = extractor_settings("resnet50", 64, random_weights=True, precision="int8")
    fp32 = {k: v for k, v in int8.items() if k != "precision"}
    bundle = SimpleNamespace(gpt=SimpleNamespace(cfg=SimpleNamespace(uses_feats=True)),
                             extra={"extractor": "resnet50", "extractor_settings": int8})
    assert _check_shard_features(bundle, {"extractors": {"resnet50": int8}}) == "resnet50"
    with pytest.raises(DataError, match="made in fp32 but the transformer's in int8"):
        _check_shard_features(bundle, {"extractors": {"resnet50": fp32}})


def _toy_shards(root: Path, n: int = 8) -> Path:
    """`n` clips of two classes with 4-d "toy" features (recorded fp32, the default kind)."""
    from vgs_cli.data.shard_writer import write_clips
    from vgs_cli.data.shards import ClipRecord

    rng = np.random.default_rng(0)
    records = [ClipRecord(id=f"clip{i:03d}", split="train", mel=rng.random((80, 860), dtype=np.float32),
                          feats={"toy": rng.standard_normal((215, 4)).astype(np.float32)},
                          wav=(0.1 * rng.standard_normal(220500)).astype(np.float32), label=i % 2) for i in range(n)]
    write_clips(root, records, classes=["a", "b"], extractors={"toy": {"dim": 4, "fps": 21.5}})
    return root


def test_vgs_info_shows_how_the_features_were_made(tmp_path, vgs):
    from vgs_cli.data.shard_writer import write_clips
    from vgs_cli.data.shards import ClipRecord

    rng = np.random.default_rng(0)
    for kind in ("fp32", "int8"):
        records = [ClipRecord(id=f"c{i}", split="train", mel=rng.random((80, 860), dtype=np.float32),
                              feats={"toy": rng.standard_normal((215, 4)).astype(np.float32)}, label=0)
                   for i in range(2)]
        st = {"dim": 4, "fps": 21.5, **({"precision": kind} if kind != "fp32" else {})}
        write_clips(tmp_path / kind, records, classes=["a"], extractors={"toy": st})
        proc = vgs("info", str(tmp_path / kind))
        assert proc.returncode == 0 and "precision" in proc.stdout
        row = next(line for line in proc.stdout.splitlines() if "toy" in line)
        assert kind in row, row


def test_a_transformer_trained_on_one_kind_refuses_shards_of_another_at_training_time(tmp_path, vgs):
    """`vgs train transformer --init BASE` on shards whose features were made another way: one line, exit 2."""
    from _codebook import build_codebook

    from vgs_cli.checkpoint import save_checkpoint
    from vgs_cli.data.shards import read_manifest
    from vgs_cli.train.runner import new_config, run, stage_module

    data = _toy_shards(tmp_path / "data")
    codebook = build_codebook(data, tmp_path / "codebook.ckpt")
    module = stage_module("transformer")
    task = module.make_task(new_config(module, "transformer", "tiny", None, []), data, codebook=codebook)
    state = task.build_models()["model"].state_dict()
    settings = dict(read_manifest(data)["extractors"]["toy"])
    for kind in ("int8", "fp32"):
        st = {**settings, "precision": kind} if kind != "fp32" else settings
        save_checkpoint(tmp_path / f"{kind}.ckpt", stage="transformer", config=task.config.to_dict(), state_dict=state,
                        extra={"extractor": "toy", "extractor_settings": st})
    with pytest.raises(DataError, match="the shards' toy features differ from the transformer's "
                                        r"\(made in fp32 but the transformer's in int8\)"):
        run("transformer", data=data, preset=None, run_dir=tmp_path / "run", device="cpu",
            init=tmp_path / "int8.ckpt", codebook=codebook, overrides=["train.steps=1"])
    proc = vgs("train", "transformer", "--data", str(data), "--init", str(tmp_path / "int8.ckpt"),
               "--codebook", str(codebook), "--run", str(tmp_path / "run2"), "--set", "train.steps=1")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "made in fp32" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    task.check_weights_source(tmp_path / "fp32.ckpt")  # features of the same kind pass
    task.check_weights_source(tmp_path / "new_run" / "last.ckpt")  # a new run (nothing to resume) too


_FALLBACK = """
import json, numpy as np, torch
from vgs_cli.cpu import cpu_info
from vgs_cli.loading.extractors import FeatureExtractor, extractor_settings
from tests.test_features_quant import _synthetic_frames
settings, _ = extractor_settings("resnet50", 64, random_weights=True)
frames = _synthetic_frames(73)
ref = FeatureExtractor("resnet50", settings, None, device="cpu")(frames)
ext = FeatureExtractor("resnet50", settings, None, device="cpu", precision="int8")
out = ext(frames)
cos = torch.nn.functional.cosine_similarity(torch.from_numpy(out), torch.from_numpy(ref), dim=1)
print(json.dumps({"bf16": cpu_info().bf16, "avx512": cpu_info().avx512, "cap": cpu_info().torch_capability,
                  "cos": float(cos.min()), "path": ext.path.describe()}))
"""


@pytest.mark.slow  # a new interpreter importing torch + ResNet-50 twice: ~12 s on 2 cores
def test_forced_avx2_fallback_runs_and_agrees():
    """`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`: no bf16 is chosen, the fp32 and int8 paths run on
    AVX2 kernels and agree within the stated cosine (an AVX2-only CPU's view of the same code)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _FALLBACK], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["bf16"] is False and got["avx512"] is False and got["cap"].upper() == "AVX2", got
    assert got["cos"] >= COSINE_BOUND["int8"] and "AVX2 kernels" in got["path"], got


def _resnet_bundle(settings: dict):
    from vgs_cli.config.transformer import GPTConfig
    from vgs_cli.generate.engine import Bundle, ModelPaths
    from vgs_cli.models.gpt import GPT

    cfg = GPTConfig(vocab_size=8, n_layer=1, n_head=2, n_embd=16, feat_frames=212, feat_dim=2048)
    extra = {"extractor": "resnet50", "extractor_settings": settings}
    return Bundle(GPT(cfg).eval(), None, None, extra, ModelPaths(Path("t"), Path("c"), None), torch.device("cpu"))


def test_generation_makes_features_the_transformer_s_way_and_says_which(tmp_path, monkeypatch):
    """fp32-trained: fp32 features (taken along the recorded frame path, as `video_features`), under
    --quantize int8 bf16 ones where the CPU has native bf16, else int8; bf16-trained: bf16 whatever --quantize
    says. --verbose names the CPU and the path."""
    import functools

    from vgs_cli.data.video import write_video
    from vgs_cli.generate.engine import GenerateOptions, condition_features, speed_report, video_features
    from vgs_cli.loading import feature_paths

    frames = _synthetic_frames(96, 48)  # 48 frames, 96x96
    video = write_video(tmp_path / "v.mp4", frames, 21.5)
    fp32, _ = extractor_settings("resnet50", 64, random_weights=True)
    bundle = _resnet_bundle(fp32)
    plain = condition_features(bundle, video, 53)
    assert bundle._extractor.precision == "fp32"
    full = video_features(bundle, video)  # the reference frame path in both (condition_features had ffmpeg's)
    np.testing.assert_allclose(plain[: len(full)], full, rtol=1e-4, atol=1e-5)
    chosen = feature_paths.generation_precision
    monkeypatch.setattr(feature_paths, "generation_precision", functools.partial(chosen, native_bf16=False))
    quick = condition_features(bundle, video, 53, quantize="int8")
    assert bundle._extractor.precision == "int8"
    assert _cosines(quick, plain).min() >= COSINE_BOUND["int8"]
    report = speed_report(bundle, GenerateOptions(quantize="int8"))
    assert report[0].startswith("cpu: ") and "int8 static" in report[1], report
    monkeypatch.setattr(feature_paths, "generation_precision", functools.partial(chosen, native_bf16=True))
    quick = condition_features(bundle, video, 53, quantize="int8")
    assert bundle._extractor.precision == "bf16" and _cosines(quick, plain).min() >= COSINE_BOUND["bf16"]
    bf16 = _resnet_bundle({**fp32, "precision": "bf16"})
    condition_features(bf16, video, 53, quantize="int8")
    assert bf16._extractor.precision == "bf16" and "bf16 autocast" in speed_report(bf16, GenerateOptions())[1]


def test_cli_verbose_prints_the_cpu_and_the_paths_that_ran(tmp_path, vgs):
    from test_generate import build_models, make_video

    models = build_models(tmp_path / "models")  # EfficientNet-Lite0 (fp32-trained): no int8 path, fp32 kept
    video = make_video(tmp_path / "v.mp4", 2.0)
    proc = vgs("generate", str(video), "-o", str(tmp_path / "out.wav"), "--model", str(models),
               "--quantize", "int8", "--verbose")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("cpu: ") and "torch " in line for line in lines), proc.stdout
    assert "visual features: efficientnet_lite0 fp32 (batch norm folded, eager)" in lines, proc.stdout
    assert any(line.startswith("transformer: int8 weights") for line in lines), proc.stdout
    quiet = vgs("generate", str(video), "-o", str(tmp_path / "out2.wav"), "--model", str(models))
    assert quiet.returncode == 0 and "cpu: " not in quiet.stdout
