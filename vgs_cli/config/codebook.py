"""The spectrogram codebook (VQGAN) and its training stage (`vgs train codebook`).

Paper settings (SpecVQGAN `configs/{vas,vggsound}_codebook.yaml`): ch 128, ch_mult 1,1,2,2,4, 2 residual
blocks per encoder level (the decoder has one more), attention at the 53-frame level and in the middle,
z_channels = embed_dim = 256, 128 (VAS) or 1024 (VGGSound) codes; an 80x848 mel becomes a 5x53 grid.
Loss: L1 + LPAPS (weight 1.0) + hinge PatchGAN from step 2001 (VAS) / 30001 (VGGSound) with weight 0.8
(the reference's "adaptive" weight was clamped to [1, 1], i.e. the constant 0.8), codebook loss weight 1.0.
Optimiser: Adam betas (0.5, 0.9) for both the autoencoder and the discriminator, lr = base_lr * batch
(reference: base_lr 1e-6 VAS / 4.5e-6 VGGSound, batch 3, scaled further by #GPUs x accumulation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from vgs_cli.config.base import Config
from vgs_cli.config.spec import SPEC
from vgs_cli.config.train import TrainConfig
from vgs_cli.errors import ConfigError


@dataclass(frozen=True)
class VQGANConfig(Config):
    n_mels: int = SPEC.n_mels  # input height
    frames: int = SPEC.model_frames  # nominal input width (the reference's `resolution`); others work too
    in_channels: int = 1
    out_channels: int = 1
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2  # per encoder level; the decoder uses num_res_blocks + 1 (taming layout)
    attn_resolutions: tuple[int, ...] = (53,)  # widths (in frames) of the levels that get self-attention
    dropout: float = 0.0
    z_channels: int = 256
    n_embed: int = 128
    embed_dim: int = 256
    norm_groups: int = 32  # GroupNorm groups (32 at paper size; tiny widths need fewer)
    beta: float = 0.25
    # Where beta sits. The reference (taming VectorQuantizer) computes
    #   mean((sg[zq] - z)^2) + beta * mean((zq - sg[z])^2)
    # i.e. beta scales the *codebook* term and the commitment term has weight 1 ("codebook" = paper parity);
    # "commitment" is the VQ-VAE paper's  mean((sg[z] - zq)^2) + beta * mean((z - sg[zq])^2).
    beta_on: Literal["codebook", "commitment"] = "codebook"

    def __post_init__(self) -> None:
        if self.n_mels % self.downsample or self.frames % self.downsample:
            raise ConfigError(
                f"codebook: input {self.n_mels}x{self.frames} is not divisible by the downsampling factor "
                f"{self.downsample}"
            )
        for c in {self.ch * m for m in self.ch_mult} | {self.ch}:
            if c % self.norm_groups:
                raise ConfigError(f"codebook: {c} channels are not divisible by norm_groups={self.norm_groups}")
        if self.n_embed < 2:
            raise ConfigError("codebook: n_embed must be at least 2")

    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)

    @property
    def downsample(self) -> int:
        """Frames (and mel bins) per token along each axis: 2^(levels - 1) = 16 at paper size."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows = frequency, columns = time) of a nominal input: (5, 53)."""
        return self.n_mels // self.downsample, self.frames // self.downsample

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def attn_levels(self) -> tuple[int, ...]:
        """Levels whose width (nominal input) is in attn_resolutions; fixed, so other widths use the same net."""
        return tuple(i for i in range(self.num_levels) if self.frames // 2**i in self.attn_resolutions)

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.n_embed)


@dataclass(frozen=True)
class CodebookLossConfig(Config):
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0  # LPAPS; ignored (0) when training with `--lpaps none`
    codebook_weight: float = 1.0
    disc_start: int = 2001  # optimiser step at which the PatchGAN terms switch on
    disc_weight: float = 0.8
    # "constant": g_loss weight = disc_weight (what the reference effectively did: its adaptive weight was
    # clamped to [min_adapt_weight, max_adapt_weight] = [1, 1]); "adaptive": taming's
    # ||grad nll|| / ||grad g_loss|| at the decoder's last layer, clamped to [0, 1e4], times disc_weight.
    disc_weight_mode: Literal["adaptive", "constant"] = "constant"
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    disc_layers: int = 3
    disc_ndf: int = 64


@dataclass(frozen=True)
class CodebookConfig(Config):
    model: VQGANConfig = field(default_factory=VQGANConfig)
    loss: CodebookLossConfig = field(default_factory=CodebookLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # VGGish-ish checkpoint behind the perceptual loss, or "none". `--lpaps` sets it; it is kept in the run's
    # config.json so that resuming without `--lpaps` keeps the same loss instead of silently dropping it.
    lpaps: str = "none"
    train_frames: int = SPEC.model_frames  # width of the random training crop (valid: centre 848)
    random_crop: bool = False  # the reference trained on the centre crop (`random_crop: False`)
    dead_code_window: int = 200  # steps over which code usage is counted for the "dead" statistic/restart
    restart_dead_codes: bool = False  # re-seed unused codes from random encoder outputs after each window
    sync_batchnorm: bool = True  # PatchGAN BatchNorm as SyncBatchNorm under multi-GPU DDP (reference: true)
    num_plots: int = 4  # reconstruction spectrograms written to run_dir/samples at each validation

    def __post_init__(self) -> None:
        if self.train_frames % self.model.downsample or not 0 < self.train_frames <= SPEC.model_frames:
            raise ConfigError(
                f"codebook: train_frames={self.train_frames} must be a multiple of {self.model.downsample} "
                f"in 1..{SPEC.model_frames}"
            )


def _paper_train(steps: int, lr: float, disc_eval: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=3, lr=lr, betas=(0.5, 0.9), eval_every=disc_eval,
                       log_every=50, ckpt_every=disc_eval * 5)


PRESETS: dict[str, CodebookConfig] = {
    "vas": CodebookConfig(
        model=VQGANConfig(n_embed=128),
        loss=CodebookLossConfig(disc_start=2001),
        train=_paper_train(steps=100_000, lr=1e-6 * 3, disc_eval=2000),
    ),
    "vggsound": CodebookConfig(
        model=VQGANConfig(n_embed=1024),
        loss=CodebookLossConfig(disc_start=30001),
        train=_paper_train(steps=400_000, lr=4.5e-6 * 3, disc_eval=5000),
    ),
    # CPU smoke run (~1 minute on one core): same 5x53 grid, 8x narrower, 256-frame random crops, a larger
    # lr, the PatchGAN on for the last third at a small weight (a GAN this young only adds noise), and
    # dead-code restarts so that a small codebook trained briefly still uses its codes.
    "tiny": CodebookConfig(
        model=VQGANConfig(ch=16, z_channels=32, embed_dim=32, n_embed=64, norm_groups=8),
        # Measured on `vgs prepare synthetic --clips 150` (make demo): 1000 steps at lr 2e-3 reconstruct the
        # events (valid L1 0.074, perplexity 35 of 64; reconstruction MKL 0.54); 120 steps at 1e-3 only
        # learned the background, and switching the PatchGAN on at step 500 collapsed the code usage (0.27)
        # within 100 steps at this size. So within the default budget the GAN stays off: it starts at step
        # 1000, i.e. when a run is extended with --steps.
        loss=CodebookLossConfig(disc_start=1000, disc_weight=0.1, disc_ndf=16),
        train=TrainConfig(steps=1000, batch_size=4, lr=2e-3, betas=(0.5, 0.9), eval_every=200, log_every=20,
                          eval_batches=2),
        train_frames=256,
        random_crop=True,
        dead_code_window=20,
        restart_dead_codes=True,
    ),
}
