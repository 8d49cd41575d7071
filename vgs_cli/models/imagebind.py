"""ImageBind-huge's vision and audio paths (Girdhar et al. 2023), the two the IB-score uses.

    model = ImageBind(ImageBindConfig())                  # published sizes: vision 632.8 M, audio 86.2 M parameters
    v = model.embed_vision(clips)                         # [N, 3, 2, 224, 224] (C, T, H, W) -> [N, 1024], unit norm
    a = model.embed_audio(mels)                           # [N, 1, 128, 204] fbanks -> [N, 1024], norm 20
    out = model(vision=[B, S, 3, 2, H, W], audio=[B, S, 1, 128, 204])   # per item the mean over its S clips

Names follow the published `imagebind_huge.pth` (ImageBind's `imagebind_huge()`), so the file loads strictly
once the four other modalities' keys (`OTHER_MODALITIES`, dropped by name in loading/metric_nets_av.py) are
set aside:
- `modality_preprocessors.vision`: a 2-frame clip (an image is repeated to 2 frames, ImageBind's PadIm2Video)
  -> Conv3d kernel = stride (2, 14, 14), no bias (`rgbt_stem.proj.1`) -> 256 patches, a CLS token, learned
  position embedding (`pos_embedding_helper.pos_embed`, 1 + 256 positions).
- `modality_preprocessors.audio`: a 128 x 204 fbank -> Conv2d kernel 16 stride 10, no bias (`rgbt_stem.proj`)
  -> 12 x 19 = 228 patches, LayerNorm (`rgbt_stem.norm_layer`, eps 1e-5), CLS, position embedding.
- `modality_trunks.*`: pre-norm ViT blocks (`norm_1`, `attn`, `norm_2`, `mlp.fc1/fc2`, LayerNorm eps 1e-6, GELU,
  MLP ratio 4) with nn.MultiheadAttention's parameter names (`in_proj_weight/bias`, `out_proj`); the audio
  trunk's attention appends learned key/value tokens (`bias_k`, `bias_v`); the vision trunk has a LayerNorm
  before the blocks (`pre_transformer_layer.0`). Drop path (audio 0.1) only acts in training: absent here.
- `modality_heads.*`: LayerNorm (eps 1e-6) on the CLS token, Linear to 1024 without bias (indices 0 and 2).
- `modality_postprocessors`: L2 normalisation; audio then x exp(log_logit_scale) (the buffer
  `modality_postprocessors.audio.1.log_logit_scale` = log 20, capped at 100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# the modalities of the published file that the IB-score does not use: their keys are dropped on load
OTHER_MODALITIES = ("text", "depth", "thermal", "imu")
MODULE_GROUPS = ("preprocessors", "trunks", "heads", "postprocessors")


def dropped_prefixes() -> tuple[str, ...]:
    """`modality_<group>.<modality>.` for the modalities not built here (16 prefixes)."""
    return tuple(f"modality_{g}.{m}." for g in MODULE_GROUPS for m in OTHER_MODALITIES)


@dataclass(frozen=True)
class ImageBindConfig:
    """ImageBind-huge's sizes by default; tests build smaller widths and depths with the same geometry."""

    out_dim: int = 1024
    vision_dim: int = 1280
    vision_depth: int = 32
    vision_heads: int = 16
    image_size: int = 224
    patch: int = 14
    frames: int = 2  # a clip: two frames, one temporal patch (kernel 2)
    audio_dim: int = 768
    audio_depth: int = 12
    audio_heads: int = 12
    mel_bins: int = 128
    mel_frames: int = 204
    audio_kernel: int = 16
    audio_stride: int = 10
    audio_logit_scale: float = 20.0
    max_logit_scale: float = 100.0

    @property
    def vision_patches(self) -> int:
        return (self.frames // 2) * (self.image_size // self.patch) ** 2

    @property
    def audio_patches(self) -> int:
        k, s = self.audio_kernel, self.audio_stride
        return ((self.mel_bins - k) // s + 1) * ((self.mel_frames - k) // s + 1)


class MultiheadSelfAttention(nn.Module):
    """Self-attention with nn.MultiheadAttention's parameters; optional learned key/value tokens appended after
    the input projection (`add_bias_kv`). `[B, L, D] -> [B, L, D]`."""

    def __init__(self, dim: int, heads: int, bias_kv: bool) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        if bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None:
            k = torch.cat((k, self.bias_k.expand(b, 1, dim)), dim=1)
            v = torch.cat((v, self.bias_v.expand(b, 1, dim)), dim=1)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(y.transpose(1, 2).reshape(b, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, bias_kv: bool) -> None:
        super().__init__()
        self.attn = MultiheadSelfAttention(dim, heads, bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x))
        return x + self.mlp(self.norm_2(x))


class Trunk(nn.Module):
    """`[B, L, D] -> [B, L, D]`: optional LayerNorm, then the blocks."""

    def __init__(self, dim: int, depth: int, heads: int, pre_norm: bool, bias_kv: bool) -> None:
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-6) if pre_norm else nn.Identity())
        self.blocks = nn.Sequential(*(Block(dim, heads, bias_kv) for _ in range(depth)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pre_transformer_layer(tokens))


class RepeatToClip(nn.Module):
    """ImageBind's PadIm2Video(repeat, 2): `[B, C, H, W]` or `[B, C, 1, H, W]` -> `[B, C, 2, H, W]`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        return x.repeat(1, 1, 2, 1, 1) if x.shape[2] == 1 else x


class Stem(nn.Module):
    """Patch embedding: `proj` then flatten to `[B, patches, D]`, optional `norm_layer`."""

    def __init__(self, proj: nn.Module, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj
        self.norm_layer = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm_layer(x) if self.norm_layer is not None else x


class PosEmbedding(nn.Module):
    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * dim ** -0.5)


class Preprocessor(nn.Module):
    """Stem + CLS token + position embedding: input -> `[B, 1 + patches, D]`."""

    def __init__(self, stem: Stem, patches: int, dim: int) -> None:
        super().__init__()
        self.rgbt_stem = stem
        self.pos_embedding_helper = PosEmbedding(1 + patches, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * dim ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        if tokens.shape[1] != self.pos_embedding_helper.pos_embed.shape[1]:
            # ImageBind would interpolate the position embedding; the IB-score's inputs never need it
            raise ValueError(f"expected {self.pos_embedding_helper.pos_embed.shape[1]} tokens, got {tokens.shape[1]}")
        return tokens + self.pos_embedding_helper.pos_embed


class SelectCLS(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1, p=2)


class LogitScaling(nn.Module):
    """`x * min(exp(log_logit_scale), max_scale)`; the scale is a fixed buffer in the audio path."""

    def __init__(self, scale: float, max_scale: float) -> None:
        super().__init__()
        self.max_scale = max_scale
        self.register_buffer("log_logit_scale", torch.tensor(math.log(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=self.max_scale) * x


def _head(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim, eps=1e-6), SelectCLS(), nn.Linear(dim, out_dim, bias=False))


class ImageBind(nn.Module):
    """The vision and audio paths of ImageBind (see the module docstring)."""

    def __init__(self, cfg: ImageBindConfig) -> None:
        super().__init__()
        self.cfg = cfg
        vd, ad = cfg.vision_dim, cfg.audio_dim
        kernel = (2, cfg.patch, cfg.patch)
        vision_stem = Stem(nn.Sequential(RepeatToClip(), nn.Conv3d(3, vd, kernel, stride=kernel, bias=False)))
        audio_stem = Stem(nn.Conv2d(1, ad, cfg.audio_kernel, stride=cfg.audio_stride, bias=False), nn.LayerNorm(ad))
        self.modality_preprocessors = nn.ModuleDict({
            "vision": Preprocessor(vision_stem, cfg.vision_patches, vd),
            "audio": Preprocessor(audio_stem, cfg.audio_patches, ad)})
        self.modality_trunks = nn.ModuleDict({
            "vision": Trunk(vd, cfg.vision_depth, cfg.vision_heads, pre_norm=True, bias_kv=False),
            "audio": Trunk(ad, cfg.audio_depth, cfg.audio_heads, pre_norm=False, bias_kv=True)})
        self.modality_heads = nn.ModuleDict({"vision": _head(vd, cfg.out_dim), "audio": _head(ad, cfg.out_dim)})
        self.modality_postprocessors = nn.ModuleDict({
            "vision": Normalize(),
            "audio": nn.Sequential(Normalize(), LogitScaling(cfg.audio_logit_scale, cfg.max_logit_scale))})

    def _embed(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        x = self.modality_trunks[modality](self.modality_preprocessors[modality](x))
        return self.modality_postprocessors[modality](self.modality_heads[modality](x))

    def embed_vision(self, clips: torch.Tensor) -> torch.Tensor:
        """`[N, 3, 2, H, W]` clips (or `[N, 3, H, W]` images), CLIP-normalised -> `[N, out_dim]` of unit norm."""
        return self._embed("vision", clips)

    def embed_audio(self, mels: torch.Tensor) -> torch.Tensor:
        """`[N, 1, 128, 204]` normalised fbanks -> `[N, out_dim]` of norm 20 (the audio logit scale)."""
        return self._embed("audio", mels)

    def forward(self, vision: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """ImageBind's forward for lists of clips: `vision [B, S, 3, 2, H, W]`, `audio [B, S, 1, 128, 204]`
        -> `{"vision": [B, out_dim], "audio": [B, out_dim]}`, each the mean over the S clips' embeddings."""
        out = {}
        for name, x, fn in (("vision", vision, self.embed_vision), ("audio", audio, self.embed_audio)):
            if x is not None:
                b, s = x.shape[:2]
                out[name] = fn(x.flatten(0, 1)).reshape(b, s, -1).mean(dim=1)
        return out
