"""Vocoder speed: seconds to turn one 10 s mel (860 frames) into audio on this machine's CPU.

Paper-size MelGAN (4.27M parameters, random weights: speed does not depend on them), with the weight norm
folded (what `pipeline.vocode` uses) and unfolded; Griffin-Lim (32 iterations) for comparison. The paper
reports MelGAN vocoding a 10 s clip in a fraction of a second on a CPU.
"""

from __future__ import annotations

import statistics
import time

import torch

from vgs_cli.config.spec import SPEC
from vgs_cli.config.vocoder import MelGANConfig
from vgs_cli.models.melgan import Generator, fold_weight_norm
from vgs_cli.pipeline.vocode import GriffinLimVocoder, MelGANVocoder


def _seconds(fn, repeats: int = 3) -> float:
    fn()  # warm-up (allocator, kernels)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rows() -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    mel = torch.rand(1, SPEC.n_mels, SPEC.stored_frames)
    seconds_audio = SPEC.stored_frames * SPEC.hop_length / SPEC.sample_rate
    unfolded = MelGANVocoder(Generator(MelGANConfig()), device="cpu")
    t_unfolded = _seconds(lambda: unfolded.vocode(mel))
    folded = MelGANVocoder(Generator(MelGANConfig()), device="cpu")
    fold_weight_norm(folded.generator)
    t_folded = _seconds(lambda: folded.vocode(mel))
    t_gl = _seconds(lambda: GriffinLimVocoder(n_iter=32).vocode(mel), repeats=2)
    return [
        ("MelGAN (folded weight norm), 10 s clip / 860 frames", t_folded, "s"),
        ("MelGAN real-time factor (audio s per compute s)", seconds_audio / t_folded, "x"),
        ("MelGAN (weight norm unfolded), 10 s clip", t_unfolded, "s"),
        ("Griffin-Lim 32 iterations, 10 s clip", t_gl, "s"),
    ]


if __name__ == "__main__":
    for row in rows():
        print(row)
