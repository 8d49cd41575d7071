"""Evaluation speed on this machine's CPU: the classifier forward and the metric computations.

Paper-size Melception (25.2M parameters, random weights: speed does not depend on them) on 80 x 848 mels;
its stem keeps the full mel resolution (no early max-pools), so one clip is far more work than a 299 x 299
ImageNet image. FID on 2048-d features (the 2048 x 2048 matrix square root dominates), KID with the
paper's 100 subsets of 1000, ISc with 10 splits, MKL over 1000 pairs of 309 classes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from bench.timing import seconds
from vgs_cli.config.melception import PRESETS, MelceptionModelConfig
from vgs_cli.metrics.features import batched, extract
from vgs_cli.metrics.fid import fid
from vgs_cli.metrics.isc import inception_score
from vgs_cli.metrics.kid import kid
from vgs_cli.metrics.mkl import mean_kl
from vgs_cli.models.melception import Melception


def _timed(fn: Callable[[], object], repeats: int = 2, warmup: bool = True) -> float:
    return seconds(fn, repeats=repeats, warmup=warmup)


def rows() -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    out: list[tuple[str, float, str]] = []
    for label, cfg, batch in (("paper-size", MelceptionModelConfig(num_classes=309), 2),
                              ("tiny", PRESETS["tiny"].model.replace(num_classes=309), 8)):
        model = Melception(cfg).eval()
        mels = [torch.rand(80, 848) for _ in range(batch)]
        seconds = _timed(lambda m=model, x=mels, b=batch: extract(m, batched(x, b)), repeats=1)
        out.append((f"Melception {label} forward ({cfg.feature_dim}-d features), batch {batch}",
                    batch / seconds, "clips/s"))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2000, 2048)), rng.normal(size=(2000, 2048)) + 0.1
    # scipy's sqrtm of a 2048 x 2048 matrix takes tens of seconds here: one call each, no warm-up
    out.append(("FID, 2 x 2000 items of 2048-d", _timed(lambda: fid(a, b), repeats=1, warmup=False), "s"))
    out.append(("KID, 100 subsets of 1000 (2048-d)", _timed(lambda: kid(a, b), repeats=1, warmup=False), "s"))
    logits = rng.normal(size=(10_000, 309))
    out.append(("ISc, 10,000 items, 10 splits", _timed(lambda: inception_score(logits)), "s"))
    ids = [str(i) for i in range(1000)]
    out.append(("MKL, 1000 pairs of 309 classes",
                _timed(lambda: mean_kl(logits[:1000], ids, logits[1000:2000], ids)), "s"))
    return out + av_rows()


def av_rows(n_clips: int = 20) -> list[tuple[str, float, str]]:
    """The av-benchmark audio networks (random weights in the published layouts): seconds per 10-s clip each,
    and the whole audio protocol (FD/KL/IS with PaSST, PANNs, VGGish) on `n_clips` fakes against as many reals,
    with its linear scaling to 100 + 100 (the networks are per clip; measuring 200 clips here would take ~7 min
    of `make bench` for the same per-clip number)."""
    import tempfile
    from pathlib import Path

    import soundfile as sf

    from vgs_cli.loading.metric_nets import build, load_audio_net
    from vgs_cli.loading.weights import get_entry
    from vgs_cli.metrics import av_audio
    from vgs_cli.metrics.av_eval import AV_METRICS, AVSettings, evaluate_av

    out: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wdir = root / "weights"
        wdir.mkdir()
        for net, entry in (("passt", "passt"), ("panns", "panns_cnn14_16k"), ("vggish", "vggish")):
            state = {k.removeprefix("net."): v for k, v in build(net).state_dict().items()}
            torch.save({"model": state} if net == "panns" else state, wdir / get_entry(entry).filename)
        rng = np.random.default_rng(0)
        for side in ("real", "fake"):
            (root / side).mkdir()
            for i in range(n_clips):
                sf.write(root / side / f"clip_{i:04d}.wav", rng.normal(0, 0.1, 160000).astype(np.float32), 16000)
        clip = [av_audio.AudioSource("c", path=root / "real" / "clip_0000.wav")]
        for net in ("passt", "panns", "vggish"):
            model = load_audio_net(net, wdir)  # the published layout, through the strict loader
            sec = _timed(lambda m=model: av_audio.features(m, clip, audio_length=10.0, batch_size=1, device="cpu",
                                                          use_cache=False), repeats=2)
            out.append((f"av-benchmark {net} forward, one 10-s clip (CPU)", sec, "s/clip"))
        audio = tuple(m for m in AV_METRICS if m not in ("ib", "desync"))
        settings = AVSettings(metrics=audio, audio_length=10.0, use_cache=False)
        sec = _timed(lambda: evaluate_av(str(root / "real"), root / "fake", settings, weights_dir=wdir),
                     repeats=1, warmup=False)
        out.append((f"av-benchmark audio protocol, {n_clips} fakes vs {n_clips} reals (10 s, CPU)", sec, "s"))
        out.append(("  the same scaled to 100 fakes vs 100 reals (x 100 / n)", sec * 100 / n_clips, "s"))
    return out


if __name__ == "__main__":
    for row in rows():
        print(row)
