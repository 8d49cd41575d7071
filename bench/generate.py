"""Generation speed at paper size (random weights: timing does not depend on values), for 10 s of audio.

Components in-process: ResNet-50 features for 215 frames, GPT sampling (24 x 1024, vocab 1024, 212-frame
condition) with the KV cache, codebook decoding, MelGAN vocoding; then the whole `vgs generate` CLI run
on a 10 s video with paper-size checkpoints written to bench_out/, timed and with its peak memory (RSS).
Sampling without the cache (the reference's way) is timed on the first tokens and extrapolated.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.timing import seconds

OUT = Path("bench_out/generate")


def _timed(fn, repeat: int = 1) -> float:
    return seconds(fn, repeats=repeat, warmup=False, best=True)


def _paper_models():
    from vgs_cli.config.codebook import PRESETS as CB
    from vgs_cli.config.transformer import PRESETS as TR
    from vgs_cli.config.vocoder import PRESETS as VO
    from vgs_cli.models.gpt import GPT
    from vgs_cli.models.melgan import Generator, fold_weight_norm
    from vgs_cli.models.vqgan import VQGAN

    torch.manual_seed(0)
    cb_cfg, t_cfg, v_cfg = CB["vggsound"], TR["vggsound"], VO["vggsound"]
    return (cb_cfg, VQGAN(cb_cfg.model).eval()), (t_cfg, GPT(t_cfg.model).eval()), \
        (v_cfg, Generator(v_cfg.model).eval(), fold_weight_norm)


def _component_rows(models) -> list[tuple[str, float, str]]:
    from vgs_cli.loading.extractors import FeatureExtractor, extractor_settings
    from vgs_cli.models import sampling

    (_, vq), (_, gpt), (_, gen, fold) = models
    from vgs_cli.loading.quantize import quantize_gpt

    settings, _ = extractor_settings("resnet50", random_weights=True)
    eager = FeatureExtractor("resnet50", settings, None, fast=False)
    ext = FeatureExtractor("resnet50", settings, None, fast=True)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (215, 256, 341, 3), dtype=np.uint8)  # distinct frames: no dedup shortcut
    t_eager = _timed(lambda: eager(frames))
    t_feat = _timed(lambda: ext(frames))  # includes the one-off trace, as a `vgs generate` run pays it
    # what --quantize int8 gives a fp32-trained ResNet-50 transformer on THIS CPU (bf16 where it is native, else
    # int8): a fresh extractor each time, so int8's one-off calibration on the clip is included, as a run pays it
    from vgs_cli.loading.feature_paths import generation_precision

    quick = generation_precision("resnet50", settings, "int8")
    t_int8_feat = _timed(lambda: FeatureExtractor("resnet50", settings, None, precision=quick)(frames))
    a, b = torch.from_numpy(eager(frames[:16])), torch.from_numpy(ext(frames[:16]))
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).min().item()
    feats = torch.randn(1, 212, 2048)
    gen_t = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        q = quantize_gpt(gpt, "int8")
        t_int8 = _timed(lambda: sampling.sample(q, feats, generator=gen_t))
        t_sample = _timed(lambda: sampling.sample(gpt, feats, generator=gen_t))
        n_ref = 16
        t_ref = _timed(lambda: sampling.sample(gpt, feats, num_tokens=n_ref, generator=gen_t, use_cache=False))
        codes = torch.randint(0, vq.cfg.n_embed, (1, 5, 53))
        t_dec = _timed(lambda: vq.decode_indices(codes), repeat=2)
        folded = fold(gen)
        mel = torch.rand(1, 80, 860)
        t_voc = _timed(lambda: folded(mel), repeat=2)
    # the no-cache loop re-runs all previous positions: its cost per token grows linearly, so scale by the
    # mean sequence length (212 + 132) over that of the first n_ref tokens (212 + n_ref/2)
    t_ref_full = t_ref / n_ref * 265 * (212 + 132.5) / (212 + n_ref / 2)
    total = t_eager + t_sample + t_dec + t_voc
    fast_total = t_int8_feat + t_int8 + t_dec + t_voc  # --quantize int8: fast features and int8 sampling
    return [
        ("features: ResNet-50, 215 frames, eager fp32 (s)", t_eager, "s"),
        ("features: ResNet-50, 215 frames, fast path (channels-last, frozen graph, incl. its tracing; s)", t_feat, "s"),
        ("features: eager / fast path, frames/s", 215 / t_eager, f"/ {215 / t_feat:.1f} frames/s"),
        ("features: fast path vs eager, smallest cosine (16 frames)", cos, ""),
        (f"features: ResNet-50, 215 frames, --quantize int8's path here ({quick}"
         f"{', incl. its calibration on the clip' if quick == 'int8' else ''}; s)", t_int8_feat, "s"),
        ("sampling 265 codes with KV cache (s)", t_sample, "s"),
        ("sampling 265 codes with KV cache, int8 (s)", t_int8, "s"),
        (f"sampling without cache, as the reference (s, from {n_ref} tokens)", t_ref_full, "s"),
        ("speed-up of the KV cache", t_ref_full / t_sample, "x"),
        ("codebook decoding (s)", t_dec, "s"),
        ("MelGAN vocoding 10 s (s)", t_voc, "s"),
        ("total for 10 s of audio (s)", total, "s"),
        ("real-time factor (total / 10 s; < 1 = faster than real time)", total / 10.0, "x"),
        (f"total for 10 s with --quantize int8 ({quick} features + int8 sampling + decoding + MelGAN; s)",
         fast_total, "s"),
        ("compute real-time factor with --quantize int8 (target <= 1)", fast_total / 10.0, "x"),
    ]


def write_paper_checkpoints(models, out: Path) -> Path:
    """codebook.ckpt, transformer.ckpt (ResNet-50 features, random weights), vocoder.ckpt in `out`."""
    from vgs_cli.checkpoint import save_checkpoint
    from vgs_cli.fsutil import file_sha256
    from vgs_cli.loading.extractors import extractor_settings

    (cb_cfg, vq), (t_cfg, gpt), (v_cfg, gen, _) = models
    out.mkdir(parents=True, exist_ok=True)
    cb = save_checkpoint(out / "codebook.ckpt", stage="codebook", config=cb_cfg.to_dict(), state_dict=vq.state_dict())
    settings, _ = extractor_settings("resnet50", random_weights=True)
    extra = {"condition": "feats", "feat_frames": 212, "extractor": "resnet50", "extractor_settings": settings,
             "classes": [], "codebook_path": str(cb.resolve()), "codebook_sha256": file_sha256(cb)}
    save_checkpoint(out / "transformer.ckpt", stage="transformer", config=t_cfg.to_dict(),
                    state_dict=gpt.state_dict(), extra=extra)
    save_checkpoint(out / "vocoder.ckpt", stage="vocoder", config=v_cfg.to_dict(), state_dict=gen.state_dict())
    return out


def _cli_rows(models) -> list[tuple[str, float, str]]:
    from vgs_cli.data.video import write_video

    write_paper_checkpoints(models, OUT)
    rng = np.random.default_rng(1)
    video = OUT / "video10s.mp4"
    write_video(video, rng.integers(0, 255, (250, 240, 320, 3), dtype=np.uint8), 25.0)
    cmd = [sys.executable, "-m", "vgs_cli", "generate", str(video), "-o", str(OUT / "out.wav"), "--model", str(OUT)]
    out = _loading_rows()
    for extra_args, what in (([], "fp32"), (["--quantize", "int8"], "--quantize int8")):
        wall, peak_mb = _run(cmd + extra_args)
        out += [
            (f"`vgs generate` {what}, 10 s video, paper size, end to end incl. loading (s)", wall, "s"),
            (f"`vgs generate` {what}: real-time factor (end to end / 10 s)", wall / 10.0, "x"),
            (f"`vgs generate` {what}: peak memory (RSS)", peak_mb, "MiB"),
        ]
    return out


def _loading_rows() -> list[tuple[str, float, str]]:
    """What `vgs generate` spends before any compute, each part in a fresh interpreter (as the CLI pays it):
    its imports, loading the three paper-size checkpoints, and packing the GPT's int8 weights."""
    code = ("import time; t0 = time.perf_counter()\n"
            "from vgs_cli.cli import app\nfrom vgs_cli.generate.engine import load_bundle, resolve_models, sampling_gpt\n"
            "t1 = time.perf_counter(); b = load_bundle(resolve_models(%r)); t2 = time.perf_counter()\n"
            "sampling_gpt(b, 'int8'); t3 = time.perf_counter(); print(t1 - t0, t2 - t1, t3 - t2)" % str(OUT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imports, load, pack = (float(x) for x in proc.stdout.split())
    return [
        ("`vgs generate` loading: imports (torch and the CLI; s)", imports, "s"),
        ("`vgs generate` loading: codebook + transformer + vocoder checkpoints (s)", load, "s"),
        ("`vgs generate` loading: int8 weights of the GPT (quantize + pack; s)", pack, "s"),
    ]


def _run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of this child alone) of a command.

    The peak is the child's own VmHWM (/proc), polled until it exits. Not wait4's ru_maxrss: Linux starts a
    forked child's maximum at the RSS of the parent it was forked from, so every child of this process (which
    holds the paper-size models) reported this process's 6.8 GB."""
    log = OUT / "generate.log"
    peak_kb = 0
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError((log.read_text().strip().splitlines() or ["failed"])[-1])
    return wall, peak_kb / 1024


def _vm_hwm_kb(pid: int) -> int:
    """The high-water mark of a process's resident memory (kB), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rows() -> list[tuple[str, float, str]]:
    models = _paper_models()
    return _component_rows(models) + _cli_rows(models)


if __name__ == "__main__":
    for row in rows():
        print(row)
