"""Synchformer (Iashin et al. 2024): predicts the audio-visual time offset of a 4.8-s window, for DeSync.

    model = Synchformer(SynchformerConfig())             # the published net (237,460,245 parameters)
    logits = model(frames, mels)                         # [B, S, 16, 3, 224, 224], [B, S, 66, 128] -> [B, 21]
    offsets_s = OFFSET_GRID_S[logits.argmax(-1)]         # seconds, on -2.0, -1.8, ..., +2.0

Names follow the published `synchformer_state_dict.pth` (MMAudio v0.1; the 513 keys of
../shared/reference/checkpoint_keys/synchformer_state_dict.json), so it loads strictly: `vfeat_extractor.*`
(models/motionformer.py), `afeat_extractor.*` (models/ast_audio.py), `vproj`/`aproj` (768 -> 768) and
`transformer.*`, the GlobalTransformer: input LayerNorms per modality, the sequence
`[OFF, S*8 video tokens, MOD, S*6 audio tokens]` (1 + 112 + 1 + 84 = 198 for S = 14 segments) plus a learned
position embedding, 3 minGPT blocks (8 heads, no mask), `ln_f`, and `off_head` on the OFF token: 21 classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vgs_cli.models.ast_audio import ASTAudio
from vgs_cli.models.motionformer import MotionFormer, ViTSize

MAX_OFFSET_S = 2.0
N_OFFSET_CLASSES = 21
# class i predicts the offset OFFSET_GRID_S[i] (Synchformer's make_class_grid(-2, 2, 21): 0.2-s steps)
OFFSET_GRID_S = torch.linspace(-MAX_OFFSET_S, MAX_OFFSET_S, N_OFFSET_CLASSES)


@dataclass(frozen=True)
class SynchformerConfig:
    """Sizes of the published net by default; tests build smaller widths with the same geometry."""

    video: ViTSize = field(default_factory=ViTSize)
    audio: ViTSize = field(default_factory=ViTSize)
    dim: int = 768  # the GlobalTransformer's width (vproj/aproj map the branches to it)
    layers: int = 3
    heads: int = 8
    segments: int = 14  # per window: 14 segments of 16 frames, step 8 (4.8 s at 25 fps)
    frames: int = 16
    tubelet: int = 2
    img_size: int = 224
    n_mels: int = 128
    mel_frames: int = 66
    n_classes: int = N_OFFSET_CLASSES

    @property
    def video_tokens(self) -> int:  # per segment
        return self.frames // self.tubelet

    @property
    def audio_tokens(self) -> int:  # per segment: time patches of 16 with stride 10
        return (self.mel_frames - 16) // 10 + 1

    @property
    def sequence(self) -> int:
        return 2 + self.segments * (self.video_tokens + self.audio_tokens)


class SelfAttention(nn.Module):
    """minGPT attention without a mask. `[B, L, D] -> [B, L, D]`."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.key = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = (lin(x).view(b, length, self.heads, -1).transpose(1, 2) for lin in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(dim // self.heads))
        return self.proj(y.transpose(1, 2).reshape(b, length, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class _PosEmb(nn.Module):
    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.pos_emb = nn.Parameter(torch.randn(1, length, dim) * 0.02)


class GlobalTransformer(nn.Module):
    """`v [B, Sv, D], a [B, Sa, D] -> logits [B, n_classes]` (see the module docstring)."""

    def __init__(self, cfg: SynchformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.OFF_tok = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.MOD_tok = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.vis_in_lnorm = nn.LayerNorm(d)
        self.aud_in_lnorm = nn.LayerNorm(d)
        self.pos_emb_cfg = _PosEmb(cfg.sequence, d)
        self.blocks = nn.Sequential(*(Block(d, cfg.heads) for _ in range(cfg.layers)))
        self.ln_f = nn.LayerNorm(d)
        self.off_head = nn.Linear(d, cfg.n_classes)

    def forward(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b = v.shape[0]
        x = torch.cat((self.OFF_tok.expand(b, -1, -1), self.vis_in_lnorm(v),
                       self.MOD_tok.expand(b, -1, -1), self.aud_in_lnorm(a)), dim=1)
        x = self.ln_f(self.blocks(x + self.pos_emb_cfg.pos_emb))
        return self.off_head(x[:, 0])


class Synchformer(nn.Module):
    """The whole net; `features_video`/`features_audio` let callers cache the per-segment features of a file
    and run `offset_logits` per window (a window = `cfg.segments` consecutive segments)."""

    def __init__(self, cfg: SynchformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vfeat_extractor = MotionFormer(cfg.video, cfg.img_size, 16, cfg.frames, cfg.tubelet)
        self.afeat_extractor = ASTAudio(cfg.audio, cfg.n_mels, cfg.mel_frames)
        self.vproj = nn.Linear(cfg.video.dim, cfg.dim)
        self.aproj = nn.Linear(cfg.audio.dim, cfg.dim)
        self.transformer = GlobalTransformer(cfg)

    def features_video(self, frames: torch.Tensor) -> torch.Tensor:
        """`[B, S, 16, 3, 224, 224]` on [-1, 1] `-> [B, S, 8, D]` (MotionFormer output, before `vproj`)."""
        return self.vfeat_extractor(frames.permute(0, 1, 3, 2, 4, 5))

    def features_audio(self, mels: torch.Tensor) -> torch.Tensor:
        """`[B, S, 66, 128]` normalised log-mels (time, mel) `-> [B, S, 6, D]` (AST output, before `aproj`)."""
        return self.afeat_extractor(mels)

    def offset_logits(self, vfeats: torch.Tensor, afeats: torch.Tensor) -> torch.Tensor:
        """`[B, 14, 8, D], [B, 14, 6, D] -> [B, 21]` (one window of `cfg.segments` segments)."""
        v = self.vproj(vfeats).flatten(1, 2)
        a = self.aproj(afeats).flatten(1, 2)
        return self.transformer(v, a)

    def forward(self, frames: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        return self.offset_logits(self.features_video(frames), self.features_audio(mels))
