"""Issue 28: what this CPU offers, what each precision path gets out of it, and how far each stage is from it.

One `make bench` run prints, side by side (the header line names the CPU: `cpu.cpu_info().summary()`):
- the machine's measured peak: fp32 / bf16 GEMM FLOP/s (torch.mm, 2048^3), int8 GEMM ops/s (the faster of
  torch._int_mm and torch's oneDNN/fbgemm quantized Linear), memory bandwidth (a 512 MiB copy, read + write);
- ResNet-50 features, 215 frames at 224 px (random weights: the published ones cannot be downloaded here) on
  real VAS frames when ../shared/reference is present (else distinct random frames): fp32 (BN folded, eager),
  bf16, int8 seconds, speed-up over fp32, smallest per-frame cosine to fp32, int8's one-off calibration, and
  each path's FLOP bound (4.1 GFLOP per frame over that precision's peak);
- EfficientNet-Lite0 128 px (its real weights): fp32 vs bf16;
- the GPT's next-token KL when fed bf16 / int8 features instead of fp32 ones (paper-size VAS GPT, RANDOM
  init; teacher-forced on that clip's codes through a random paper-size codebook);
- `vgs prepare` with ResNet-50 at 224 px, fp32 / bf16 / int8 features: frames per second;
- bf16 autocast vs fp32 for codebook decoding, MelGAN (10 s), Melception scoring, the GPT's prefill;
- int8 GEMV kernels for one GPT Linear (1024 -> 4096, one row): the dynamic int8 Linear `--quantize int8`
  uses, torch._weight_int8pack_mm, int4 torch._weight_int4pack_mm_for_cpu, torchao (when installed);
- tiny-preset training steps fp32 vs bf16 autocast (codebook VQGAN reconstruction, GPT, MelGAN generator).
Paper-size models have random weights: timing does not depend on the values.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.timing import seconds

REFERENCE = Path(os.environ.get("VGS_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"))
RESNET50_GFLOP = 4.1  # multiply-adds x 2 per 224 px frame (torchvision's 4.09 GFLOPS)
Row = tuple[str, float, str]


def _best(fn, repeats: int = 3) -> float:
    return seconds(fn, repeats=repeats, warmup=True, best=True)


def _bf16(fn):
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fn()
    return run


# ------------------------------------------------------------------------------------------- machine peak
def peaks() -> dict[str, float]:
    """Measured ops/s: fp32, bf16, int8 GEMM; bytes/s: memory copy (read + write)."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = {"fp32": 2 * n**3 / _best(lambda: a @ b), "bf16": 0.0, "int8": 0.0}
    ab, bb = a.bfloat16(), b.bfloat16()
    out["bf16"] = 2 * n**3 / _best(lambda: ab @ bb)
    a8, b8 = torch.randint(-128, 127, (n, n), dtype=torch.int8), torch.randint(-128, 127, (n, n), dtype=torch.int8)
    try:
        out["int8"] = 2 * n**3 / _best(lambda: torch._int_mm(a8, b8))
    except RuntimeError:
        pass
    out["int8"] = max(out["int8"], 2 * n**3 / _best(_quantized_linear(n)))
    src = torch.empty(128 * 2**20, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    out["bandwidth"] = 2 * src.numel() * 4 / _best(lambda: dst.copy_(src))
    return out


def _quantized_linear(n: int):
    """A static int8 Linear [n, n] x [n, n] through torch's quantized engine (oneDNN/fbgemm, VNNI where present)."""
    import warnings

    from torch.ao.nn.quantized import Linear as QLinear

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = QLinear(n, n)
        w = torch.quantize_per_channel(torch.randn(n, n), torch.full((n,), 0.01, dtype=torch.double),
                                       torch.zeros(n, dtype=torch.long), 0, torch.qint8)
        q.set_weight_bias(w, None)
        x = torch.quantize_per_tensor(torch.rand(n, n), 0.01, 0, torch.quint8)
    return lambda: q(x)


# ------------------------------------------------------------------------------------------- features
def _frames(settings: dict, n: int = 215) -> tuple[np.ndarray, str]:
    from vgs_cli.data.video import read_frames

    videos = sorted((REFERENCE / "vas" / "videos").glob("*/*.mp4"))
    ten_s = [v for v in videos if "dog/video_02677" not in str(v) and "gun/video_00819" not in str(v)]
    if ten_s:
        frames = read_frames(ten_s[0], short_side=settings["resize_short"], frame_path=settings.get("frame_path", "ffmpeg"))
        frames = frames[np.arange(n) % len(frames)]
        return frames, f"real VAS frames ({ten_s[0].parent.name}/{ten_s[0].stem})"
    side = settings["resize_short"]
    return np.random.default_rng(0).integers(0, 255, (n, side, side + 85, 3), dtype=np.uint8), "random frames"


def feature_paths(peak: dict[str, float]) -> tuple[list[Row], dict[str, np.ndarray], np.ndarray]:
    from vgs_cli.loading.extractors import FeatureExtractor, extractor_settings
    from vgs_cli.loading.feature_paths import CALIBRATION_FRAMES

    settings, _ = extractor_settings("resnet50", 224, random_weights=True)
    frames, what = _frames(settings)
    rows: list[Row] = []
    feats, secs = {}, {}
    for precision in ("fp32", "bf16", "int8"):
        ext = FeatureExtractor("resnet50", settings, None, device="cpu", precision=precision)
        t0 = time.perf_counter()
        ext.calibrate(frames)  # int8: once per extractor (a `vgs generate` run pays it once)
        calib = time.perf_counter() - t0
        ext(frames[:4])  # warm-up (oneDNN primitives)
        t0 = time.perf_counter()
        feats[precision] = ext(frames)
        secs[precision] = time.perf_counter() - t0
        cos = F.cosine_similarity(torch.from_numpy(feats[precision]), torch.from_numpy(feats["fp32"]), dim=1).min()
        bound = 215 * RESNET50_GFLOP * 1e9 / max(peak.get(precision, 0.0), 1.0)
        rows += [
            (f"ResNet-50 {precision} ({ext.path.describe()}), 215 frames 224 px, {what}", secs[precision], "s"),
            (f"ResNet-50 {precision}: speed-up over fp32 / smallest cosine to fp32", secs["fp32"] / secs[precision],
             f"x / cos {cos.item():.6f}"),
            (f"ResNet-50 {precision}: FLOP bound at this machine's {precision} GEMM peak (measured / bound)", bound,
             f"s ({secs[precision] / bound:.1f}x the bound)"),
        ]
        if precision == "int8":
            rows.append((f"ResNet-50 int8: one-off calibration (trace, {CALIBRATION_FRAMES} fp32 frames observed, "
                         "convert)", calib, "s"))
    rows += _efficientnet_rows()
    return rows, feats, frames


def _efficientnet_rows() -> list[Row]:
    from vgs_cli.loading.extractors import FeatureExtractor, extractor_settings

    settings, path = extractor_settings("efficientnet_lite0", 128)
    frames, what = _frames(settings)
    out, ref, t_ref = [], None, 0.0
    for precision in ("fp32", "bf16"):
        ext = FeatureExtractor("efficientnet_lite0", settings, path, device="cpu", precision=precision)
        ext(frames[:4])
        t0 = time.perf_counter()
        got = ext(frames)
        dt = time.perf_counter() - t0
        ref, t_ref = (got, dt) if ref is None else (ref, t_ref)
        cos = F.cosine_similarity(torch.from_numpy(got), torch.from_numpy(ref), dim=1).min().item()
        out.append((f"EfficientNet-Lite0 {precision} 128 px (real weights), 215 {what}", dt,
                    f"s ({t_ref / dt:.2f}x fp32, cos {cos:.6f})"))
    return out


def feature_kl(feats: dict[str, np.ndarray]) -> list[Row]:
    """KL(fp32-features || other-features) of a random paper-size VAS GPT's next-token distributions."""
    from bench.quantize import compare, real_codes_and_feats
    from vgs_cli.config.codebook import PRESETS as CB
    from vgs_cli.config.transformer import PRESETS as TR
    from vgs_cli.data.condition import centre_start, condition_frames
    from vgs_cli.models.gpt import GPT
    from vgs_cli.models.vqgan import VQGAN

    torch.manual_seed(0)
    gpt = GPT(TR["vas"].model).eval()
    if (REFERENCE / "vas" / "mels").is_dir():
        codes = real_codes_and_feats(VQGAN(CB["vas"].model).eval())[0][:1]
    else:
        codes = torch.randint(0, gpt.cfg.vocab_size, (1, gpt.cfg.num_tokens))

    def cond(f: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(condition_frames(f, 212, 212, centre_start(len(f), 212)))[None]

    class _Fixed(torch.nn.Module):  # the same GPT, fed another kind of features
        def __init__(self, feats: torch.Tensor):
            super().__init__()
            self.feats = feats

        def forward(self, c, _f):
            return gpt(c, self.feats)

    out = []
    for precision in ("bf16", "int8"):
        r = compare(gpt, _Fixed(cond(feats[precision])), codes, cond(feats["fp32"]))
        out.append((f"GPT next-token KL(fp32 feats || {precision} feats), paper-size VAS GPT (RANDOM init), "
                    "1 clip x 265 codes", r["kl"], f"nats/token (argmax agrees {100 * r['agree']:.1f}%)"))
    return out


# ------------------------------------------------------------------------------------------- prepare
def prepare_rows(n_clips: int = 2) -> list[Row]:
    from vgs_cli.config.prepare import PRESETS
    from vgs_cli.data.video import write_video
    from vgs_cli.prepare.folder import prepare_folder

    out, base = [], 0.0
    with tempfile.TemporaryDirectory(prefix="vgs_bench_cpu_") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        # noise frames: no two alike, so every one of the 215 runs through the network (the synthetic dataset's
        # still pictures repeat, and repeated frames run once: its frames/s flattered the network)
        rng = np.random.default_rng(0)
        for i in range(n_clips):
            write_video(src / f"clip{i}.mp4", rng.integers(0, 255, (250, 240, 320, 3), dtype=np.uint8), 25.0,
                        wav=rng.standard_normal(220500).astype(np.float32) * 0.1)
        for precision in ("fp32", "bf16", "int8"):
            cfg = PRESETS["vas"].replace(feature_precision=precision)
            t0 = time.perf_counter()
            prepare_folder(src, Path(tmp) / precision, cfg, progress=False, random_visual_weights=True,
                           log=lambda m: None)
            fps = n_clips * 215 / (time.perf_counter() - t0)
            base = base or fps
            out.append((f"`vgs prepare` ResNet-50 224 px, --feature-precision {precision}, {n_clips} x 10 s clips, -j 1",
                        fps, f"frames/s ({fps / base:.2f}x fp32)"))
    return out


# ------------------------------------------------------------------------------------------- other stages
def bf16_stage_rows() -> list[Row]:
    from vgs_cli.config.codebook import PRESETS as CB
    from vgs_cli.config.melception import PRESETS as ME
    from vgs_cli.config.transformer import PRESETS as TR
    from vgs_cli.config.vocoder import PRESETS as VO
    from vgs_cli.models.gpt import GPT
    from vgs_cli.models.melception import Melception
    from vgs_cli.models.melgan import Generator, fold_weight_norm
    from vgs_cli.models.vqgan import VQGAN

    torch.manual_seed(0)
    vq = VQGAN(CB["vggsound"].model).eval()
    codes = torch.randint(0, vq.cfg.n_embed, (1, 5, 53))
    voc = fold_weight_norm(Generator(VO["vggsound"].model).eval())
    mel = torch.rand(1, 80, 860)
    mc = Melception(ME["vggsound"].model.replace(num_classes=309)).eval()
    mels = torch.rand(2, 80, 848)
    gpt = GPT(TR["vggsound"].model).eval()
    prefix = torch.randint(0, gpt.cfg.vocab_size, (1, 132))
    cond = torch.randn(1, gpt.cfg.feat_frames, gpt.cfg.feat_dim)
    stages = {"codebook decoding 53 columns": lambda: vq.decode_indices(codes),
              "MelGAN vocoding 10 s": lambda: voc(mel),
              "Melception scoring, 2 clips": lambda: mc(mels),
              "GPT prefill, 212 frames + 132 codes (paper size)": lambda: gpt(prefix, cond)}
    out = []
    with torch.inference_mode():
        for name, fn in stages.items():
            t32, t16 = _best(fn, 2), _best(_bf16(fn), 2)
            a, b = (_tensor(o).float() for o in (fn(), _bf16(fn)()))
            rel = ((a - b).norm() / a.norm()).item()  # random weights: a size of the error, not its audibility
            out.append((f"{name}: fp32 / bf16 autocast", t32,
                        f"s / {t16:.3f} s ({t32 / t16:.2f}x; relative L2 error {rel:.1e})"))
    return out


def _tensor(out) -> torch.Tensor:
    return out["logits"] if isinstance(out, dict) else out


def gemv_rows() -> list[Row]:
    """One GPT Linear (1024 -> 4096) for one row: the kernels sampling a token runs per layer."""
    import warnings

    from vgs_cli.loading.quantize import _int8_linear

    torch.manual_seed(0)
    lin = torch.nn.Linear(1024, 4096).eval()
    x = torch.randn(1, 1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dyn = _int8_linear(lin)
    w = lin.weight.detach()
    scale = w.abs().amax(1) / 127
    w8 = torch.round(w / scale[:, None]).to(torch.int8)
    rows = {"fp32 Linear": lambda: lin(x), "dynamic int8 Linear (--quantize int8)": lambda: dyn(x),
            "torch._weight_int8pack_mm": lambda: torch._weight_int8pack_mm(x, w8, scale)}
    try:
        w4 = torch.randint(0, 16, (4096, 1024), dtype=torch.int32)
        packed = torch._convert_weight_to_int4pack_for_cpu(w4, 1)
        sz = torch.rand(1024 // 32, 4096, 2).bfloat16()
        xb = x.bfloat16()
        rows["int4 torch._weight_int4pack_mm_for_cpu (group 32, bf16 activations)"] = \
            lambda: torch._weight_int4pack_mm_for_cpu(xb, packed, 32, sz)
    except (RuntimeError, AttributeError):
        pass
    out: list[Row] = []
    with torch.inference_mode():
        times = {name: _best(fn, 50) for name, fn in rows.items()}
    for name, t in times.items():
        out.append((f"GEMV 1024 -> 4096, 1 row: {name}", t * 1e6, f"us ({times['fp32 Linear'] / t:.2f}x fp32)"))
    try:
        import torchao  # noqa: F401
    except ImportError:
        out.append(("GEMV: torchao not installed (vgs uses torch's own kernels): skipped", float("nan"), ""))
    return out


def training_rows() -> list[Row]:
    """One tiny-preset optimiser step, fp32 vs bf16 autocast (what --precision bf16 does on the CPU)."""
    from vgs_cli.config.codebook import PRESETS as CB
    from vgs_cli.config.transformer import PRESETS as TR
    from vgs_cli.config.vocoder import PRESETS as VO
    from vgs_cli.models.gpt import GPT
    from vgs_cli.models.melgan import Generator
    from vgs_cli.models.vqgan import VQGAN

    torch.manual_seed(0)
    cb, tr, vo = CB["tiny"], TR["tiny"], VO["tiny"]
    vq, gpt, gen = VQGAN(cb.model), GPT(tr.model), Generator(vo.model)
    x = torch.rand(cb.train.batch_size, 1, 80, 848) * 2 - 1
    codes = torch.randint(0, gpt.cfg.vocab_size, (tr.train.batch_size, gpt.cfg.num_tokens))
    feats = torch.randn(tr.train.batch_size, gpt.cfg.feat_frames, gpt.cfg.feat_dim)
    mel, wav = torch.rand(vo.train.batch_size, 80, 32), torch.rand(vo.train.batch_size, 1, 8192)
    losses = {
        f"codebook VQGAN (tiny, batch {cb.train.batch_size}, reconstruction + VQ)":
            (vq, lambda: (lambda r: F.l1_loss(r[0].float(), x) + r[1].float())(vq(x))),
        f"transformer GPT (tiny, batch {tr.train.batch_size})":
            (gpt, lambda: F.cross_entropy(gpt(codes[:, :-1], feats).float().flatten(0, 1), codes.flatten())),
        f"vocoder MelGAN generator (tiny, batch {vo.train.batch_size}, 8192 samples)":
            (gen, lambda: F.l1_loss(gen(mel).float(), wav)),
    }
    out = []
    for name, (model, loss_fn) in losses.items():
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)

        def step(loss_fn=loss_fn, opt=opt) -> None:
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t32, t16 = _best(step, 2), _best(_bf16(step), 2)
        out.append((f"train step {name}: fp32 / bf16 autocast", t32, f"s / {t16:.3f} s ({t32 / t16:.2f}x)"))
    return out


def rows() -> list[Row]:
    from vgs_cli.cpu import cpu_info

    peak = peaks()
    out: list[Row] = [
        (f"CPU: {cpu_info().summary()}", float("nan"), ""),
        ("peak fp32 GEMM (torch.mm 2048^3)", peak["fp32"] / 1e9, "GFLOP/s"),
        ("peak bf16 GEMM (torch.mm 2048^3)", peak["bf16"] / 1e9, f"GFLOP/s ({peak['bf16'] / peak['fp32']:.1f}x fp32)"),
        ("peak int8 GEMM (best of torch._int_mm and quantized Linear)", peak["int8"] / 1e9,
         f"GOP/s ({peak['int8'] / peak['fp32']:.1f}x fp32)"),
        ("memory bandwidth (512 MiB copy, read + write)", peak["bandwidth"] / 1e9, "GB/s"),
    ]
    feat_rows, feats, _ = feature_paths(peak)
    out += feat_rows + feature_kl(feats) + prepare_rows() + bf16_stage_rows() + gemv_rows() + training_rows()
    return out


if __name__ == "__main__":
    for row in rows():
        print(*row, sep="\t")
