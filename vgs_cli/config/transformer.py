"""Config of the transformer stage: a GPT over codebook indices, primed by a visual/class condition.

Sizes follow the paper (24 layers, 16 heads, 1024 wide) and the official configs
(`configs/{vas,vggsound}_transformer.yaml`). The learning rates follow the reference's "scale_lr" rule,
lr = base_learning_rate x batch x GPUs (base 1e-6 for VAS, 5e-6 for VGGSound), written out for one process;
when training on N processes raise `train.lr` N-fold to match it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vgs_cli.config.base import Config
from vgs_cli.config.spec import SPEC
from vgs_cli.config.train import TrainConfig
from vgs_cli.errors import ConfigError

Condition = Literal["feats", "class", "feats+class", "none"]
CONDITIONS: tuple[str, ...] = ("feats", "class", "feats+class", "none")
FEAT_FRAMES: tuple[int, ...] = (1, 5, 212)


@dataclass(frozen=True)
class GPTConfig(Config):
    vocab_size: int = 1024  # codebook size (taken from the codebook checkpoint when training)
    n_layer: int = 24
    n_head: int = 16
    n_embd: int = 1024
    dropout: float = 0.0  # embedding, attention and residual dropout (the paper used 0)
    condition: Condition = "feats"
    feat_frames: int = 212  # visual frames in the condition (1, 5 or 212 in the paper)
    feat_dim: int = 2048  # per-frame feature size (from the shard manifest's extractor when training)
    num_classes: int = 309  # class-embedding rows (class / feats+class conditions)
    grid: tuple[int, int] = (5, 53)  # codebook grid: frequency rows x time columns
    # Not in the paper: also add each code's time-aligned visual features to its input embedding (see
    # models/gpt.py). Off for the paper presets so official weights load and behave as published.
    sync: bool = False

    @property
    def num_tokens(self) -> int:
        """Codes per clip: 5 x 53 = 265."""
        return self.grid[0] * self.grid[1]

    # Time geometry, derived from the grid (the codebook's) and the spectrogram/video timing (config/spec.py).
    # One code column covers `mel_frames_per_column` mel frames = `video_frames_per_column` video frames; the
    # condition is cut from a window of `feat_window` frames starting `feat_offset` frames into the clip.
    @property
    def mel_frames_per_column(self) -> int:
        """The codebook's time downsampling: 848 mel frames / 53 columns = 16."""
        return SPEC.model_frames // self.grid[1]

    @property
    def video_frames_per_column(self) -> int:
        """16 mel frames * 256 / 22050 s * 21.5 fps = 3.995 -> 4 (a codebook downsampling 8x: 2)."""
        return max(1, round(self.mel_frames_per_column * SPEC.video_frames_per_mel_frame))

    @property
    def feat_window(self) -> int:
        """Video frames seen by one window of codes: 4 * 53 = 212 (the reference's centre crop of 215)."""
        return self.video_frames_per_column * self.grid[1]

    @property
    def feat_offset(self) -> int:
        """First video frame of a 10 s clip's condition window: the centre crop's (215 - 212) // 2 = 1."""
        return max(0, (SPEC.num_video_frames - self.feat_window) // 2)

    @property
    def uses_feats(self) -> bool:
        return self.condition in ("feats", "feats+class")

    @property
    def uses_class(self) -> bool:
        return self.condition in ("class", "feats+class")

    @property
    def cond_len(self) -> int:
        """Condition positions before the first code.

        "none" is the paper's "No Feats" baseline: the reference fed one frame of random features through
        the usual feature embedder, so the layout is that of a 1-frame model (see models/gpt.py)."""
        if self.condition == "feats":
            return self.feat_frames
        if self.condition == "feats+class":
            return self.feat_frames + 1
        return 1

    @property
    def block_size(self) -> int:
        """Rows of `pos_emb`: condition + all codes, as the official files (477 / 270 / 266 / 478).

        The last code is never an input, so the last row is never used; it is kept so official weights
        load 1:1."""
        return self.cond_len + self.num_tokens

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        if self.feat_frames < 1:
            raise ConfigError(f"model.feat_frames must be >= 1, got {self.feat_frames}")
        if min(self.vocab_size, self.n_layer, self.feat_dim, self.num_classes, *self.grid) < 1:
            raise ConfigError("model sizes (vocab_size, n_layer, feat_dim, num_classes, grid) must be >= 1")
        if self.sync and not self.uses_feats:
            raise ConfigError(f"model.sync needs visual features, but the condition is {self.condition!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class FinetuneConfig(Config):
    """Partial fine-tuning (`vgs train transformer --init BASE`): LoRA adapters and/or frozen parameters."""

    lora_rank: int = 0  # 0 = no adapters; R = rank-R adapters on the `lora_targets` layers, base frozen
    lora_alpha: float = 0.0  # update scale alpha / rank; 0 = rank (scale 1)
    # module-name globs (models/lora.py): attention q/k/v/output projections and both MLP layers
    lora_targets: tuple[str, ...] = ("attn.query", "attn.key", "attn.value", "attn.proj", "mlp.0", "mlp.2")
    freeze: tuple[str, ...] = ()  # parameter-name globs kept frozen (plain partial fine-tuning)
    # the factor `--init` gave train.lr over the base's (LoRA's default 10x, train/init.py), kept so that a
    # checkpoint of this run used as a new base (merged, or --init) gets the base's rate back, not 10x again
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.lora_rank < 0 or self.lora_alpha < 0:
            raise ConfigError("finetune.lora_rank and finetune.lora_alpha must be >= 0")
        if self.lr_scale <= 0:
            raise ConfigError(f"finetune.lr_scale must be > 0, got {self.lr_scale}")

    @property
    def scale_alpha(self) -> float:
        return self.lora_alpha or float(self.lora_rank)


@dataclass(frozen=True)
class TransformerConfig(Config):
    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    extractor: str = ""  # visual features used (shard manifest name); "" = the only/first one
    codes_crop: Literal["center"] = "center"  # the reference trained the GPT on centre crops (random_crop: False)
    # sha256 of the codebook file whose codes the GPT learns; "" until training starts. A run (or a config
    # copied from one) with a recorded codebook refuses any other codebook file.
    codebook_sha256: str = ""

    RECORDS = {"finetune.lr_scale": "the factor LoRA's default learning rate applied; set train.lr instead"}


def _train(**kw) -> TrainConfig:
    # AdamW (0.9, 0.95) with decay 0.01 on Linear weights only, as the reference's configure_optimizers.
    base = dict(betas=(0.9, 0.95), weight_decay=0.01, eval_every=1000, log_every=50, keep_last=2)
    base.update(kw)
    return TrainConfig(**base)


PRESETS: dict[str, TransformerConfig] = {
    "vas": TransformerConfig(
        model=GPTConfig(vocab_size=128, num_classes=8),
        train=_train(steps=100_000, batch_size=16, lr=1.6e-5),  # 1e-6 x 16
    ),
    "vggsound": TransformerConfig(
        model=GPTConfig(vocab_size=1024, num_classes=309),
        train=_train(steps=300_000, batch_size=16, lr=8e-5),  # 5e-6 x 16
    ),
    "tiny": TransformerConfig(
        model=GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=64, feat_frames=5, feat_dim=32,
                        num_classes=4),
        # 200 steps: on `make demo`'s 140 training clips the paper-layout and unconditioned models bottom out
        # at 200-330 steps (then overfit); a --sync model keeps improving to ~400, so the demo passes --steps 400
        train=_train(steps=200, batch_size=8, lr=3e-3, eval_every=50, log_every=10, keep_last=1),
    ),
}
