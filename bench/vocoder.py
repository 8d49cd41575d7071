"""Vocoder speed: seconds to turn one 10 s mel (860 frames) into audio on this machine's CPU.

Paper-size MelGAN (4.27M parameters, random weights: speed does not depend on them), with the weight norm
folded (what `pipeline.vocode` uses) and unfolded; Griffin-Lim (32 iterations) for comparison. The paper
reports MelGAN vocoding a 10 s clip in a fraction of a second on a CPU.

Wall-clock numbers suffer on a shared machine, so the single-thread rows also give CPU seconds of this
process (`time.process_time`), which other processes' load barely changes.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from vgs_cli.config.spec import SPEC
from vgs_cli.config.vocoder import MelGANConfig
from vgs_cli.generate.vocode import GriffinLimVocoder, MelGANVocoder
from vgs_cli.models.melgan import Generator, fold_weight_norm


def _timed(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """Median (wall seconds, process CPU seconds) of `repeats` calls after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def rows() -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    mel = torch.rand(1, SPEC.n_mels, SPEC.stored_frames)
    seconds_audio = SPEC.stored_frames * SPEC.hop_length / SPEC.sample_rate
    unfolded = MelGANVocoder(Generator(MelGANConfig()), device="cpu")
    folded = MelGANVocoder(fold_weight_norm(Generator(MelGANConfig())), device="cpu")
    griffinlim = GriffinLimVocoder(n_iter=32)
    threads = torch.get_num_threads()
    t_folded, _ = _timed(lambda: folded.vocode(mel))
    t_unfolded, _ = _timed(lambda: unfolded.vocode(mel))
    t_gl, _ = _timed(lambda: griffinlim.vocode(mel), repeats=2)
    try:
        torch.set_num_threads(1)
        w1, c1 = _timed(lambda: folded.vocode(mel))
    finally:
        torch.set_num_threads(threads)
    return [
        (f"MelGAN folded, 10 s clip (860 frames), {threads} threads", t_folded, "s"),
        ("MelGAN folded, audio seconds per wall second", seconds_audio / t_folded, "x"),
        (f"MelGAN weight norm unfolded, 10 s clip, {threads} threads", t_unfolded, "s"),
        ("MelGAN folded, 10 s clip, 1 thread (wall)", w1, "s"),
        ("MelGAN folded, 10 s clip, 1 thread (CPU time)", c1, "s"),
        (f"Griffin-Lim 32 iterations, 10 s clip, {threads} threads", t_gl, "s"),
    ]


if __name__ == "__main__":
    for row in rows():
        print(row)
